/**
 * The configurable defaults against the README's environment table (`CALLSYNC_UPLOAD_TARGET_SECONDS`
 * 30, `CALLSYNC_MAX_CALL_DURATION_SECONDS` 14400, `CALLSYNC_EGRESS_DEADLINE_SECONDS` 120) and the
 * machine's limits built from them, in milliseconds.
 */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_CALL_LIMITS,
  DELIVERY_TARGET_SECONDS_DEFAULT,
  EGRESS_DEADLINE_SECONDS_DEFAULT,
  MAX_CALL_DURATION_SECONDS_DEFAULT,
} from '../../src/machines/defaults.ts';

describe('defaults', () => {
  it.each([
    { variable: 'CALLSYNC_UPLOAD_TARGET_SECONDS', value: DELIVERY_TARGET_SECONDS_DEFAULT, expected: 30 },
    {
      variable: 'CALLSYNC_MAX_CALL_DURATION_SECONDS',
      value: MAX_CALL_DURATION_SECONDS_DEFAULT,
      expected: 14_400,
    },
    { variable: 'CALLSYNC_EGRESS_DEADLINE_SECONDS', value: EGRESS_DEADLINE_SECONDS_DEFAULT, expected: 120 },
  ])('$variable defaults to $expected', ({ value, expected }) => {
    expect(value).toBe(expected);
  });

  it('gives the call machine the same limits, in milliseconds', () => {
    expect(DEFAULT_CALL_LIMITS).toEqual({
      maxCallDurationMs: 14_400_000,
      egressDeadlineMs: 120_000,
      deliveryTargetMs: 30_000,
      egressPollIntervalMs: 1_000,
      egressStartTimeoutMs: 10_000,
      uploadAttemptTimeoutMs: 60_000,
      postAttemptTimeoutMs: 10_000,
    });
    expect(Object.isFrozen(DEFAULT_CALL_LIMITS)).toBe(true);
  });
});
