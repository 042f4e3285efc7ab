import { describe, expect, it } from 'vitest';
import { EGRESS_START_MAX_ATTEMPTS } from '../../src/machines/egress-wait-policy.ts';
import {
  FAST_LANE_DELAYS_MS,
  FAST_LANE_JITTER,
  MAX_ATTEMPTS,
  MAX_RETRY_AFTER_MS,
  SLOW_LANE_DELAYS_MS,
  SLOW_LANE_JITTER,
  jitterSample,
  laneOf,
  planRetry,
  retryDelayMs,
  shouldGiveUp,
} from '../../src/machines/retry-policy.ts';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
/** The largest sample below 1: the top of the jitter range. */
const ALMOST_ONE = 1 - Number.EPSILON;

describe('retryDelayMs', () => {
  // random 0.5 is the unjittered midpoint; 0 and just under 1 are the jitter bounds.
  it.each([
    { attempt: 1, random: 0.5, expected: 100, lane: 'fast' },
    { attempt: 2, random: 0.5, expected: 250, lane: 'fast' },
    { attempt: 3, random: 0.5, expected: 500, lane: 'fast' },
    { attempt: 4, random: 0.5, expected: 1 * SECOND, lane: 'fast' },
    { attempt: 5, random: 0.5, expected: 2 * SECOND, lane: 'fast' },
    { attempt: 6, random: 0.5, expected: 4 * SECOND, lane: 'fast' },
    { attempt: 7, random: 0.5, expected: 1 * MINUTE, lane: 'slow' },
    { attempt: 8, random: 0.5, expected: 5 * MINUTE, lane: 'slow' },
    { attempt: 9, random: 0.5, expected: 30 * MINUTE, lane: 'slow' },
    { attempt: 10, random: 0.5, expected: 2 * HOUR, lane: 'slow' },
    { attempt: 11, random: 0.5, expected: 5 * HOUR, lane: 'slow' },
    { attempt: 12, random: 0.5, expected: 10 * HOUR, lane: 'slow' },
    { attempt: 17, random: 0.5, expected: 10 * HOUR, lane: 'slow' },
    { attempt: 40, random: 0.5, expected: 10 * HOUR, lane: 'slow' },
    { attempt: 1, random: 0, expected: 80, lane: 'fast' },
    { attempt: 1, random: ALMOST_ONE, expected: 120, lane: 'fast' },
    { attempt: 6, random: 0, expected: 3_200, lane: 'fast' },
    { attempt: 6, random: ALMOST_ONE, expected: 4_800, lane: 'fast' },
    { attempt: 7, random: 0, expected: 54 * SECOND, lane: 'slow' },
    { attempt: 12, random: ALMOST_ONE, expected: 11 * HOUR, lane: 'slow' },
  ])('attempt $attempt, random $random → $expected ms ($lane)', ({ attempt, random, expected, lane }) => {
    expect(retryDelayMs({ attempt, random })).toBe(expected);
    expect(laneOf(attempt)).toBe(lane);
  });

  it.each([
    {
      attempt: 1,
      retryAfterMs: 30 * SECOND,
      expected: 30 * SECOND,
      why: 'longer than the schedule: wait as asked',
    },
    { attempt: 1, retryAfterMs: 50, expected: 100, why: 'shorter than the schedule: the schedule wins' },
    { attempt: 8, retryAfterMs: 1 * HOUR, expected: 1 * HOUR, why: 'in the slow lane too' },
    { attempt: 1, retryAfterMs: 7 * 24 * HOUR, expected: MAX_RETRY_AFTER_MS, why: 'capped' },
    { attempt: 1, retryAfterMs: 1_500.2, expected: 1_501, why: 'rounded up, never early' },
    { attempt: 1, retryAfterMs: -5, expected: 100, why: 'nonsense is ignored' },
    { attempt: 1, retryAfterMs: Number.NaN, expected: 100, why: 'NaN is ignored' },
  ])(
    'Retry-After $retryAfterMs on attempt $attempt → $expected ms ($why)',
    ({ attempt, retryAfterMs, expected }) => {
      expect(retryDelayMs({ attempt, retryAfterMs, random: 0.5 })).toBe(expected);
    },
  );

  it('stays within the jitter bounds of every step', () => {
    const schedule = [...FAST_LANE_DELAYS_MS, ...SLOW_LANE_DELAYS_MS];
    schedule.forEach((base, index) => {
      const attempt = index + 1;
      const spread = laneOf(attempt) === 'fast' ? FAST_LANE_JITTER : SLOW_LANE_JITTER;
      for (let sample = 0; sample < 1; sample += 0.01) {
        const delay = retryDelayMs({ attempt, random: sample });
        expect(delay).toBeGreaterThanOrEqual(Math.floor(base * (1 - spread)));
        expect(delay).toBeLessThanOrEqual(Math.ceil(base * (1 + spread)));
      }
    });
  });

  it('clamps a random sample outside [0, 1) and treats a non-number as no jitter', () => {
    expect(retryDelayMs({ attempt: 1, random: -3 })).toBe(80);
    expect(retryDelayMs({ attempt: 1, random: 7 })).toBe(120);
    expect(retryDelayMs({ attempt: 1, random: Number.NaN })).toBe(100);
  });

  it('rejects an attempt number that is not a positive integer', () => {
    for (const attempt of [0, -1, 1.5, Number.NaN]) {
      expect(() => retryDelayMs({ attempt, random: 0.5 })).toThrow(RangeError);
    }
  });
});

describe('the schedule as a whole', () => {
  const worstCase = (delays: readonly number[], spread: number) =>
    delays.reduce((sum, delay) => sum + delay * (1 + spread), 0);

  it('retries a blip within 0.12 s and four times within 2.22 s, even at the top of the jitter', () => {
    expect(worstCase(FAST_LANE_DELAYS_MS.slice(0, 1), FAST_LANE_JITTER)).toBeLessThanOrEqual(120);
    expect(worstCase(FAST_LANE_DELAYS_MS.slice(0, 4), FAST_LANE_JITTER)).toBeLessThanOrEqual(2.22 * SECOND);
  });

  it('fits the fast lane inside the 30 s delivery target, even at the top of the jitter', () => {
    expect(FAST_LANE_DELAYS_MS).toHaveLength(6);
    expect(worstCase(FAST_LANE_DELAYS_MS, FAST_LANE_JITTER)).toBeLessThanOrEqual(9.42 * SECOND);
  });

  it('keeps the slow lane going for days, like Stripe (up to 3 days), and then gives up', () => {
    const slowest = worstCase(SLOW_LANE_DELAYS_MS, SLOW_LANE_JITTER);
    const fastest = SLOW_LANE_DELAYS_MS.reduce((sum, delay) => sum + delay * (1 - SLOW_LANE_JITTER), 0);
    expect(fastest).toBeGreaterThan(2 * 24 * HOUR);
    expect(slowest).toBeLessThan(3.5 * 24 * HOUR);
    expect(Math.max(...SLOW_LANE_DELAYS_MS)).toBe(10 * HOUR); // Svix's longest interval
    expect(MAX_ATTEMPTS).toBe(1 + FAST_LANE_DELAYS_MS.length + SLOW_LANE_DELAYS_MS.length);
  });
});

describe('shouldGiveUp', () => {
  it.each([
    { attempt: 1, retryable: false, expected: true },
    { attempt: 1, retryable: true, expected: false },
    { attempt: MAX_ATTEMPTS - 1, retryable: true, expected: false },
    { attempt: MAX_ATTEMPTS, retryable: true, expected: true },
    { attempt: 2, retryable: true, maxAttempts: 3, expected: false },
    { attempt: 3, retryable: true, maxAttempts: 3, expected: true },
    {
      attempt: EGRESS_START_MAX_ATTEMPTS,
      retryable: true,
      maxAttempts: EGRESS_START_MAX_ATTEMPTS,
      expected: true,
    },
  ])('attempt $attempt, retryable $retryable, max $maxAttempts → $expected', ({ expected, ...options }) => {
    expect(shouldGiveUp(options)).toBe(expected);
  });
});

describe('planRetry', () => {
  it('is null when giving up, else the delay and lane with the key’s jitter', () => {
    expect(planRetry({ attempt: 1, error: { retryable: false }, key: 'c:recording' })).toBeNull();
    expect(planRetry({ attempt: MAX_ATTEMPTS, error: { retryable: true }, key: 'c:recording' })).toBeNull();
    expect(planRetry({ attempt: 2, error: { retryable: true }, key: 'c:recording' })).toEqual({
      delayMs: retryDelayMs({ attempt: 2, random: jitterSample('c:recording', 2) }),
      lane: 'fast',
    });
    expect(planRetry({ attempt: 1, error: { retryable: true, retryAfterMs: 60_000 }, key: 'k' })).toEqual({
      delayMs: 60_000,
      lane: 'fast',
    });
  });
});

describe('jitterSample', () => {
  it('is deterministic, in [0, 1), and spreads calls and attempts apart', () => {
    expect(jitterSample('call-1:recording', 1)).toBe(jitterSample('call-1:recording', 1));
    const samples = Array.from({ length: 1_000 }, (_, index) => jitterSample(`call-${index}:recording`, 1));
    for (const sample of samples) {
      expect(sample).toBeGreaterThanOrEqual(0);
      expect(sample).toBeLessThan(1);
    }
    // Roughly uniform: every tenth of [0, 1) gets a fair share of 1,000 calls.
    const deciles = Array.from(
      { length: 10 },
      (_, decile) => samples.filter((s) => Math.floor(s * 10) === decile).length,
    );
    for (const count of deciles) expect(count).toBeGreaterThan(60);
    expect(new Set([1, 2, 3, 4].map((attempt) => jitterSample('call-1:recording', attempt))).size).toBe(4);
  });
});
