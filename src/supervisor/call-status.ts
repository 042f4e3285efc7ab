/**
 * `GET /v1/status`: the operator's 30-second answer (the CLI's `callsync status`, the status
 * page). Built from the store, so every instance of a fleet answers the same.
 *
 * The within-target share follows the delivery SLO (`metrics/slo.ts`): a call finished in a
 * window when its call data was acknowledged in it (delivered or partial; within target when
 * `callDataAcknowledgedAt − end.endedAtMs` is at most the target) or when it failed in it (a
 * bad event, never within target; a failed call that an operator dismissed later still counts
 * where it failed). A failed call retried and delivered since counts once, by its delivery.
 */
import type { FinishedCallTimes } from '../store/call-store.ts';

export interface DeliveryWindow {
  finished: number;
  withinTarget: number;
  /** `withinTarget / finished`; null when nothing finished. */
  share: number | null;
  /**
   * Call end → CRM acknowledged the call data, over the calls delivered (or partial) in the
   * window, in seconds (nearest rank); null when none was.
   */
  latencySeconds: { p50: number; p95: number; p99: number } | null;
}

/** The nearest-rank percentile `p` (0–100) of ascending `sorted` (0 when it is empty). */
export function percentileOf(sorted: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1] ?? 0;
}

/** The shape the status page and the CLI read: change it only with both. */
export interface CallsyncStatus {
  targetSeconds: number;
  delivery: { lastHour: DeliveryWindow; lastDay: DeliveryWindow };
  callsByState: Record<string, number>;
  failedWaiting: number;
}

export const STATUS_HOUR_MS = 60 * 60 * 1_000;
export const STATUS_DAY_MS = 24 * STATUS_HOUR_MS;
/**
 * The most final calls one status reads for a window (a few numbers each, read out of the
 * snapshots by the store): some 70 calls a minute for a whole day. A busier day is counted over
 * its most recent calls.
 */
export const STATUS_WINDOW_CALLS_MAX = 100_000;

/** Counts the calls of `times` whose final outcome came at or after `sinceMs`. */
export function deliveryWindowOf(
  times: readonly FinishedCallTimes[],
  sinceMs: number,
  targetMs: number,
): DeliveryWindow {
  let finished = 0;
  let withinTarget = 0;
  const latenciesMs: number[] = [];
  for (const call of times) {
    if (call.callDataAcknowledgedAtMs !== null) {
      if (call.callDataAcknowledgedAtMs < sinceMs) continue;
      finished += 1;
      if (call.endedAtMs !== null) latenciesMs.push(call.callDataAcknowledgedAtMs - call.endedAtMs);
      if (call.endedAtMs !== null && call.callDataAcknowledgedAtMs - call.endedAtMs <= targetMs) {
        withinTarget += 1;
      }
    } else if (call.failedAtMs !== null && call.failedAtMs >= sinceMs) {
      finished += 1;
    }
  }
  latenciesMs.sort((a, b) => a - b);
  const seconds = (p: number) => percentileOf(latenciesMs, p) / 1000;
  return {
    finished,
    withinTarget,
    share: finished === 0 ? null : withinTarget / finished,
    latencySeconds:
      latenciesMs.length === 0 ? null : { p50: seconds(50), p95: seconds(95), p99: seconds(99) },
  };
}
