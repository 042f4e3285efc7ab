/**
 * The egress-wait policy against its documented rules (the policy's header, the README's
 * `CALLSYNC_EGRESS_DEADLINE_SECONDS` default of 120): the expected numbers are written out here,
 * not read from the module.
 */
import { describe, expect, it } from 'vitest';
import type { EgressFile, EgressOutcome } from '../../src/machines/call.types.ts';
import {
  EGRESS_DEADLINE_MS,
  EGRESS_POLL_INTERVAL_MS,
  EGRESS_START_MAX_ATTEMPTS,
  EGRESS_START_TIMEOUT_MS,
  egressDeadlineAt,
  egressStartDeadlineAt,
  nextEgressPollAt,
  nextEgressStartAt,
  settlementOf,
  settlementWithoutWaiting,
  timedOutSettlement,
} from '../../src/machines/egress-wait-policy.ts';

const T = Date.UTC(2025, 0, 1, 12, 0, 0);
const FILE: EgressFile = {
  filename: 'calls/room-1.ogg',
  location: '/recordings/calls/room-1.ogg',
  sizeBytes: 4096,
};
/** A FAILED egress names its planned file from the start; only an upload fills location or size. */
const PLANNED: EgressFile = { filename: 'calls/room-1.ogg', location: '' };

describe('egress-wait numbers', () => {
  it.each([
    { name: 'StartEgress attempts', value: EGRESS_START_MAX_ATTEMPTS, expected: 3 },
    { name: 'one StartEgress attempt, ms', value: EGRESS_START_TIMEOUT_MS, expected: 10_000 },
    { name: 'ListEgress poll interval, ms', value: EGRESS_POLL_INTERVAL_MS, expected: 1_000 },
    { name: 'egress deadline after call end, ms', value: EGRESS_DEADLINE_MS, expected: 120_000 },
  ])('$name is $expected', ({ value, expected }) => {
    expect(value).toBe(expected);
  });
});

describe('nextEgressStartAt', () => {
  const failure = { callId: 'call-1', retryable: true, at: T, callEnded: false };

  // The fast lane: 0.1 s after the first failure, 0.25 s after the second, each ±20 %.
  it.each([
    { attempt: 1, low: 80, high: 120 },
    { attempt: 2, low: 200, high: 300 },
  ])('retries after failed attempt $attempt within [$low, $high] ms', ({ attempt, low, high }) => {
    const next = nextEgressStartAt({ ...failure, attempt });
    expect(next).not.toBeNull();
    expect(next! - T).toBeGreaterThanOrEqual(low);
    expect(next! - T).toBeLessThanOrEqual(high);
  });

  it.each([
    { why: 'the third attempt was the last', attempt: 3, retryable: true, callEnded: false },
    { why: 'past the last attempt', attempt: 4, retryable: true, callEnded: false },
    { why: 'a non-retryable error', attempt: 1, retryable: false, callEnded: false },
    { why: 'the call has ended', attempt: 1, retryable: true, callEnded: true },
  ])('goes on without a recording: $why', ({ attempt, retryable, callEnded }) => {
    expect(nextEgressStartAt({ ...failure, attempt, retryable, callEnded })).toBeNull();
  });

  it.each([
    { retryAfterMs: 5_000, low: 5_000, high: 5_000, why: 'longer than the schedule: wait as asked' },
    { retryAfterMs: 10, low: 80, high: 120, why: 'shorter than the schedule: the schedule wins' },
  ])('honours Retry-After $retryAfterMs ms ($why)', ({ retryAfterMs, low, high }) => {
    const next = nextEgressStartAt({ ...failure, attempt: 1, retryAfterMs });
    expect(next! - T).toBeGreaterThanOrEqual(low);
    expect(next! - T).toBeLessThanOrEqual(high);
  });

  it('is the same for the same call and attempt (a restored actor agrees), and spread across calls', () => {
    const at = (callId: string) => nextEgressStartAt({ ...failure, callId, attempt: 1 });
    expect(at('call-1')).toBe(at('call-1'));
    const spread = new Set(Array.from({ length: 20 }, (_, index) => at(`call-${index}`)));
    expect(spread.size).toBeGreaterThan(10);
  });
});

describe('deadlines and polls', () => {
  it.each([
    {
      what: 'a StartEgress attempt is abandoned',
      at: egressStartDeadlineAt(T, 10_000),
      expected: T + 10_000,
    },
    { what: 'the wait ends at the latest', at: egressDeadlineAt(T, 120_000), expected: T + 120_000 },
    { what: 'a shorter configured deadline', at: egressDeadlineAt(T, 30_000), expected: T + 30_000 },
    { what: 'the next ListEgress poll', at: nextEgressPollAt(T, 1_000), expected: T + 1_000 },
  ])('$what', ({ at, expected }) => {
    expect(at).toBe(expected);
  });
});

describe('settlementOf', () => {
  it.each<{ outcome: EgressOutcome; status: string; file: EgressFile | null }>([
    { outcome: { status: 'complete', file: FILE }, status: 'complete', file: FILE },
    { outcome: { status: 'limit_reached', file: FILE }, status: 'limit_reached', file: FILE },
    { outcome: { status: 'complete', file: null }, status: 'complete', file: null },
    { outcome: { status: 'complete', file: { ...FILE, filename: '' } }, status: 'complete', file: null },
    { outcome: { status: 'failed', file: FILE }, status: 'failed', file: FILE },
    { outcome: { status: 'failed', file: PLANNED }, status: 'failed', file: null },
    {
      outcome: { status: 'failed', file: { ...PLANNED, sizeBytes: 10 } },
      status: 'failed',
      file: { ...PLANNED, sizeBytes: 10 },
    },
    { outcome: { status: 'aborted', file: FILE }, status: 'aborted', file: null },
    { outcome: { status: 'active', file: FILE }, status: 'timed_out', file: null },
  ])('$outcome.status with $outcome.file.location → $status', ({ outcome, status, file }) => {
    expect(settlementOf(outcome, 'poll', T)).toEqual({ status, file, via: 'poll', at: T });
    expect(settlementOf(outcome, 'webhook', T).via).toBe('webhook');
  });

  it('a deadline settles with no status and no file', () => {
    expect(timedOutSettlement(T)).toEqual({ status: 'timed_out', file: null, via: 'deadline', at: T });
  });
});

describe('settlementWithoutWaiting', () => {
  it.each<{ reported: EgressOutcome | null; expected: object }>([
    { reported: null, expected: { status: 'not_started', file: null, via: 'none', at: T } },
    {
      reported: { status: 'limit_reached', file: FILE },
      expected: { status: 'limit_reached', file: FILE, via: 'webhook', at: T },
    },
    {
      reported: { status: 'aborted', file: null, error: 'Start signal not received' },
      expected: { status: 'aborted', file: null, via: 'webhook', at: T },
    },
  ])('reported $reported.status → $expected.status', ({ reported, expected }) => {
    expect(settlementWithoutWaiting(reported, T)).toEqual(expected);
  });
});
