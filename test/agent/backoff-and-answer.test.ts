import { describe, expect, it } from 'vitest';
import { outcomeOfAnswer, outcomeOfTransportError } from '../../src/agent/answer.ts';
import {
  REPORTER_RETRY_AFTER_MAX_MS,
  REPORTER_RETRY_MAX_MS,
  reporterRetryDelayMs,
  retryAfterToMs,
} from '../../src/agent/backoff.ts';
import { REFERENCE_MS } from '../helpers/agent-fixtures.ts';

describe('reporterRetryDelayMs', () => {
  it.each([
    { attempt: 1, random: 0.5, expected: 250 },
    { attempt: 2, random: 0.5, expected: 500 },
    { attempt: 3, random: 0.5, expected: 1_000 },
    { attempt: 5, random: 0.5, expected: 4_000 },
    { attempt: 6, random: 0.5, expected: REPORTER_RETRY_MAX_MS },
    { attempt: 500, random: 0.5, expected: REPORTER_RETRY_MAX_MS },
    { attempt: 1, random: 0, expected: 200 },
    { attempt: 1, random: 1, expected: 300 },
    { attempt: 1, random: Number.NaN, expected: 250 },
  ])('attempt $attempt, sample $random → $expected ms', ({ attempt, random, expected }) => {
    expect(reporterRetryDelayMs({ attempt, random })).toBe(expected);
  });

  it('honours Retry-After, capped, and never waits less than the backoff', () => {
    expect(reporterRetryDelayMs({ attempt: 1, random: 0.5, retryAfterMs: 3_000 })).toBe(3_000);
    expect(reporterRetryDelayMs({ attempt: 1, random: 0.5, retryAfterMs: 3_600_000 })).toBe(
      REPORTER_RETRY_AFTER_MAX_MS,
    );
    expect(reporterRetryDelayMs({ attempt: 3, random: 0.5, retryAfterMs: 10 })).toBe(1_000);
  });

  it('takes its base and ceiling from options', () => {
    expect(reporterRetryDelayMs({ attempt: 4, random: 0.5, baseMs: 5, maxMs: 20 })).toBe(20);
  });

  it('refuses an attempt below 1', () => {
    expect(() => reporterRetryDelayMs({ attempt: 0, random: 0.5 })).toThrow(RangeError);
  });
});

describe('retryAfterToMs', () => {
  it.each([
    { value: '2', expected: 2_000 },
    { value: 'Wed, 29 Oct 2025 10:00:05 GMT', expected: 5_000 },
    { value: 'Wed, 29 Oct 2025 09:00:00 GMT', expected: 0 },
    { value: '1.5', expected: undefined },
    { value: 'later', expected: undefined },
    { value: null, expected: undefined },
  ])('$value → $expected', ({ value, expected }) => {
    expect(retryAfterToMs(value, REFERENCE_MS)).toBe(expected);
  });
});

describe('outcomeOfAnswer', () => {
  const body = (error: string) => JSON.stringify({ error, message: `${error} happened` });

  it.each([
    { status: 201, type: 'delivered' },
    { status: 200, type: 'delivered' },
    { status: 202, type: 'delivered' },
    { status: 408, type: 'retry' },
    { status: 429, type: 'retry' },
    { status: 500, type: 'retry' },
    { status: 503, type: 'retry' },
    { status: 400, type: 'rejected' },
    { status: 401, type: 'rejected' },
    { status: 404, type: 'rejected' },
    { status: 409, type: 'rejected' },
    { status: 413, type: 'rejected' },
    { status: 302, type: 'rejected' },
  ])('HTTP $status → $type', ({ status, type }) => {
    expect(outcomeOfAnswer({ status, body: body('SOME_CODE'), retryAfter: null }).type).toBe(type);
  });

  it("keeps the supervisor's error code and message, and Retry-After", () => {
    expect(outcomeOfAnswer({ status: 503, body: body('DRAINING'), retryAfter: '3' })).toEqual({
      type: 'retry',
      code: 'DRAINING',
      message: 'DRAINING happened',
      status: 503,
      retryAfterMs: 3_000,
    });
    expect(
      outcomeOfAnswer({ status: 502, body: '<html>bad gateway</html>', retryAfter: null }),
    ).toMatchObject({
      code: 'HTTP_502',
      message: '<html>bad gateway</html>',
    });
  });

  it('parses a delivered answer', () => {
    expect(
      outcomeOfAnswer({ status: 201, body: '{"callId":"c1","state":"active"}', retryAfter: null }),
    ).toEqual({
      type: 'delivered',
      status: 201,
      body: { callId: 'c1', state: 'active' },
    });
  });

  it('cuts a long message', () => {
    const outcome = outcomeOfAnswer({ status: 400, body: 'x'.repeat(10_000), retryAfter: null });
    expect(outcome.type === 'rejected' && outcome.message.length).toBeLessThan(400);
  });
});

describe('outcomeOfTransportError', () => {
  it('is always worth repeating', () => {
    expect(
      outcomeOfTransportError(
        Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
        false,
      ),
    ).toMatchObject({ type: 'retry', code: 'NETWORK_ERROR', message: 'ECONNREFUSED: connect ECONNREFUSED' });
    expect(outcomeOfTransportError(new Error('aborted'), true)).toMatchObject({
      type: 'retry',
      code: 'TIMEOUT',
    });
  });
});
