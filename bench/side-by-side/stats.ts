/** Nearest-rank percentiles, as GET /v1/status computes its own (src/supervisor). */

/** The `p`-th percentile (0 < p ≤ 100) of `values` by nearest rank; null for none. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] ?? null;
}

/** What an event loop's delay looked like over a window, in milliseconds. */
export interface LoopDelay {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}
