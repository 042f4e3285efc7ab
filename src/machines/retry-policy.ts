/**
 * When to try a failed delivery step again, as pure functions (no clock, no `Math.random`).
 *
 * Two lanes, because the two failure modes need opposite things:
 *
 * - Fast lane, for blips (a dropped connection, a 503 during a CRM deploy): retries after
 *   0.1, 0.25, 0.5, 1, 2 and 4 s, each ±20 % jitter. Most blips (a keep-alive socket the CRM
 *   closed, one refused request) are over at once, so the first retry comes after a tenth of a
 *   second (the AWS SDKs' base delay) and a run of failures costs seconds, not tens of them:
 *   with 30 % of requests failing, one call in sixty needs four retries in one of its steps, 1.85 s
 *   of waits here (it was 3.75 s when the lane began at 0.25 s, which put the end → CRM p99
 *   at 6.1 s against 4.5 s now, `npm run bench:side-by-side`). The doubling still covers a blip
 *   of almost 8 s (a CRM deploy) before the slow lane. Seven attempts whose waits add up to at
 *   most 9.4 s, so a blip still lands inside the 30 s delivery target next to the egress wait
 *   (p95 ≤ 10 s) and the call-data POST (< 2 s).
 * - Slow lane, for outages: 1 min, 5 min, 30 min, 2 h, 5 h, then 10 h six times, each ±10 %.
 *   That is Svix's schedule (5 s, 5 m, 30 m, 2 h, 5 h, 10 h, 10 h, about 27.5 h in all) bridged
 *   from our fast lane with one 1-minute step and stretched to Stripe's "up to three days": the
 *   last attempt comes about 2.8 days after the first, enough to outlast a CRM outage over a
 *   weekend night. Then the step fails and the call waits, `failed`, for a RETRY (dead letter).
 *   Past about 24 h a CRM may have pruned its idempotency keys (Stripe prunes after 24 h, Svix
 *   caches 12 h); harmless here, as those attempts were never acknowledged.
 *
 * `Retry-After` (429/503) is honoured: the wait is never shorter than the server asked, capped at
 * the longest slow-lane step so a broken header cannot park a call for weeks. Non-retryable
 * errors (4xx other than 408/429) fail at once; that decision belongs to whoever built the error
 * (`CallsyncError.retryable`), never to this module.
 *
 * Jitter spreads retries of many calls that failed together. It needs no randomness at all:
 * `jitterSample(key, attempt)` hashes the step's idempotency key, so every call gets its own
 * offset while a restored actor recomputes exactly the same schedule.
 */

export type RetryLane = 'fast' | 'slow';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** Waits after failed attempts 1…6. */
export const FAST_LANE_DELAYS_MS: readonly number[] = [100, 250, 500, 1 * SECOND, 2 * SECOND, 4 * SECOND];
/** Waits after failed attempts 7…17. */
export const SLOW_LANE_DELAYS_MS: readonly number[] = [
  1 * MINUTE,
  5 * MINUTE,
  30 * MINUTE,
  2 * HOUR,
  5 * HOUR,
  10 * HOUR,
  10 * HOUR,
  10 * HOUR,
  10 * HOUR,
  10 * HOUR,
  10 * HOUR,
];
/** ±20 % in the fast lane, ±10 % in the slow lane. */
export const FAST_LANE_JITTER = 0.2;
export const SLOW_LANE_JITTER = 0.1;
/** Attempts in all: the first one plus one per scheduled wait. */
export const MAX_ATTEMPTS = 1 + FAST_LANE_DELAYS_MS.length + SLOW_LANE_DELAYS_MS.length;
/** Ceiling for a server's `Retry-After`. */
export const MAX_RETRY_AFTER_MS = 10 * HOUR;

/** The lane the wait after failed attempt `attempt` (1-based) belongs to. */
export function laneOf(attempt: number): RetryLane {
  return attempt <= FAST_LANE_DELAYS_MS.length ? 'fast' : 'slow';
}

export interface RetryDelayOptions {
  /** The attempt that just failed, 1-based. */
  attempt: number;
  /** The server's `Retry-After`, in milliseconds, when it sent one. */
  retryAfterMs?: number | undefined;
  /** A sample in [0, 1); 0.5 means no jitter. See `jitterSample`. */
  random: number;
}

/**
 * The wait, in milliseconds, between failed attempt `attempt` and the next one. Past the end of
 * the schedule the last step repeats (whether to go on is `shouldGiveUp`'s decision).
 */
export function retryDelayMs({ attempt, retryAfterMs, random }: RetryDelayOptions): number {
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`attempt must be ≥ 1, got ${attempt}`);
  const lane = laneOf(attempt);
  const base =
    lane === 'fast'
      ? FAST_LANE_DELAYS_MS[attempt - 1]!
      : (SLOW_LANE_DELAYS_MS[attempt - 1 - FAST_LANE_DELAYS_MS.length] ?? SLOW_LANE_DELAYS_MS.at(-1)!);
  const spread = lane === 'fast' ? FAST_LANE_JITTER : SLOW_LANE_JITTER;
  const sample = Number.isFinite(random) ? Math.min(Math.max(random, 0), 1) : 0.5;
  const jittered = Math.round(base * (1 - spread + 2 * spread * sample));
  const asked =
    retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs > 0
      ? Math.min(Math.ceil(retryAfterMs), MAX_RETRY_AFTER_MS)
      : 0;
  return Math.max(jittered, asked);
}

export interface GiveUpOptions {
  /** The attempt that just failed, 1-based. */
  attempt: number;
  retryable: boolean;
  maxAttempts?: number | undefined;
}

/** True when the step must fail now: a non-retryable error, or the last attempt failed. */
export function shouldGiveUp({ attempt, retryable, maxAttempts = MAX_ATTEMPTS }: GiveUpOptions): boolean {
  return !retryable || attempt >= maxAttempts;
}

/**
 * A deterministic sample in [0, 1) for `(key, attempt)`: FNV-1a over the UTF-16 code units,
 * finished with a murmur-style avalanche so consecutive attempts differ widely.
 */
export function jitterSample(key: string, attempt: number): number {
  let hash = 0x811c9dc5;
  const text = `${key}#${attempt}`;
  for (let index = 0; index < text.length; index += 1) {
    hash ^= text.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return (hash >>> 0) / 0x1_0000_0000;
}

export interface RetryPlan {
  delayMs: number;
  lane: RetryLane;
}

export interface PlanRetryOptions {
  /** The attempt that just failed, 1-based. */
  attempt: number;
  error: { retryable: boolean; retryAfterMs?: number | undefined };
  /** Seeds the jitter (the step's idempotency key). */
  key: string;
  maxAttempts?: number | undefined;
}

/** `null` when the step must fail now, otherwise how long to wait and in which lane. */
export function planRetry({ attempt, error, key, maxAttempts }: PlanRetryOptions): RetryPlan | null {
  if (shouldGiveUp({ attempt, retryable: error.retryable, maxAttempts })) return null;
  return {
    delayMs: retryDelayMs({ attempt, retryAfterMs: error.retryAfterMs, random: jitterSample(key, attempt) }),
    lane: laneOf(attempt),
  };
}
