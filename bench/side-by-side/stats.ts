/** Nearest-rank percentiles, as GET /v1/status computes its own (src/supervisor). */
import { percentileOf } from '../../src/supervisor/call-status.ts';

/** The `p`-th percentile (0 < p ≤ 100) of `values` by nearest rank; null for none. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  return percentileOf(
    [...values].sort((a, b) => a - b),
    p,
  );
}

/** What an event loop's delay looked like over a window, in milliseconds. */
export interface LoopDelay {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}
