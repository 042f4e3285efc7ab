/**
 * How long the reporter waits before repeating a request the supervisor did not take, as a pure
 * function (the caller supplies the random sample).
 *
 * The supervisor runs next to the agents (same host or network), so an outage is a restart or a
 * deploy: seconds, rarely a minute. Waits start at 0.25 s and double up to 5 s (±20 % jitter so
 * a fleet of jobs that lost the supervisor together does not come back in lockstep): a restart
 * is noticed within a few seconds of the supervisor being back, and an unreachable supervisor
 * costs a job at most one connection attempt every 5 s. There is no attempt limit: the reporter
 * retries while it is open, and its close deadline (`FLUSH_DEADLINE_MS`) is what bounds it.
 *
 * `Retry-After` (429, 503 while draining) is honoured, capped at 30 s so a wrong header cannot
 * park a report past the job's lifetime.
 */

export const REPORTER_RETRY_BASE_MS = 250;
export const REPORTER_RETRY_MAX_MS = 5_000;
/** ±20 %. */
export const REPORTER_RETRY_JITTER = 0.2;
export const REPORTER_RETRY_AFTER_MAX_MS = 30_000;

export interface ReporterRetryDelayOptions {
  /** The attempt that just failed, 1-based. */
  attempt: number;
  /** A sample in [0, 1); 0.5 means no jitter. */
  random: number;
  /** The supervisor's `Retry-After`, in milliseconds, when it sent one. */
  retryAfterMs?: number | undefined;
  baseMs?: number | undefined;
  maxMs?: number | undefined;
}

/** The wait, in milliseconds, after failed attempt `attempt` before the next one. */
export function reporterRetryDelayMs(options: ReporterRetryDelayOptions): number {
  const { attempt, random } = options;
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`attempt must be ≥ 1, got ${attempt}`);
  const baseMs = options.baseMs ?? REPORTER_RETRY_BASE_MS;
  const maxMs = Math.max(options.maxMs ?? REPORTER_RETRY_MAX_MS, baseMs);
  // 2 ** 30 is far past any cap; the clamp keeps the exponent from overflowing to Infinity.
  const exponential = Math.min(baseMs * 2 ** Math.min(attempt - 1, 30), maxMs);
  const sample = Number.isFinite(random) ? Math.min(Math.max(random, 0), 1) : 0.5;
  const jittered = Math.round(exponential * (1 - REPORTER_RETRY_JITTER + 2 * REPORTER_RETRY_JITTER * sample));
  const asked =
    options.retryAfterMs !== undefined && Number.isFinite(options.retryAfterMs) && options.retryAfterMs > 0
      ? Math.min(Math.ceil(options.retryAfterMs), REPORTER_RETRY_AFTER_MAX_MS)
      : 0;
  return Math.max(jittered, asked);
}

/** `Retry-After` as delay-seconds or an HTTP-date, in milliseconds; shared with the CRM client. */
export { parseRetryAfterMs as retryAfterToMs } from '../services/retry-after.ts';
