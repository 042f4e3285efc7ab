/**
 * What the call machine tells the supervisor on the way (its emitted events, which become the
 * journal, the logs and the metrics) in the paths the main-line test does not take: StartEgress
 * refused and timing out, the maximum call length in either state before the end, a step that
 * fails and its RETRY, a recording whose source never gives it. The expected values come from
 * the README (journal kinds, the recording policy, the retry lanes) and the policies' documented
 * numbers (`egress-wait-policy.ts`, `defaults.ts`), not from running the machine.
 */
import { describe, expect, it } from 'vitest';
import type { CallEmitted } from '../../src/machines/call.events.ts';
import { DEFAULT_CALL_LIMITS } from '../../src/machines/defaults.ts';
import { EGRESS_START_TIMEOUT_MS } from '../../src/machines/egress-wait-policy.ts';
import {
  CallHarness,
  DELIVERED_RECORDING,
  EGRESS_ID,
  RECORDING_FILE,
  REFERENCE_TIMESTAMP,
  fatalError,
  iso,
  retryableError,
} from './harness.ts';

/** Emitted types, a state entry written `→state`. */
const typesOf = (emitted: readonly CallEmitted[]) =>
  emitted.map((event) => (event.type === 'call.state_entered' ? `→${event.state}` : event.type));

const ofType = <T extends CallEmitted['type']>(emitted: readonly CallEmitted[], type: T) =>
  emitted.filter((event): event is Extract<CallEmitted, { type: T }> => event.type === type);

async function endAndSettle(h: CallHarness): Promise<void> {
  h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
  await h.resolve('stopEgress', { alreadyEnded: false });
  // The first poll comes one interval after the stop's answer.
  await h.advanceTo(h.context.egress.nextPollAt!);
  await h.resolve('checkEgress', { status: 'complete', file: RECORDING_FILE });
}

describe('StartEgress', () => {
  it('refused once: says so with the next attempt, then starts', async () => {
    const h = new CallHarness();
    await h.reject('startEgress', retryableError('LIVEKIT_UNAVAILABLE'));
    const [failed] = ofType(h.emitted, 'call.egress_start_failed');
    expect(failed).toMatchObject({ attempt: 1, error: { code: 'LIVEKIT_UNAVAILABLE' } });
    expect(failed!.nextAttemptAt).toBeGreaterThan(REFERENCE_TIMESTAMP);
    await h.advanceTo(failed!.nextAttemptAt!);
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    expect(ofType(h.emitted, 'call.egress_started')).toMatchObject([{ egressId: EGRESS_ID, attempts: 2 }]);
    expect(h.snapshot.hasTag('inConversation')).toBe(true);
  });

  it('unanswered for its 10 s timeout: counted as a failed attempt and tried again', async () => {
    const h = new CallHarness();
    await h.advanceTo(REFERENCE_TIMESTAMP + EGRESS_START_TIMEOUT_MS);
    const [timedOut] = ofType(h.emitted, 'call.egress_start_failed');
    expect(timedOut).toMatchObject({ attempt: 1, at: REFERENCE_TIMESTAMP + EGRESS_START_TIMEOUT_MS });
    expect(timedOut!.nextAttemptAt).not.toBeNull();
  });

  it('refused as not retryable: gives up at once, and the call goes on without a recording', async () => {
    const h = new CallHarness();
    await h.reject('startEgress', fatalError('LIVEKIT_PERMISSION_DENIED'));
    expect(ofType(h.emitted, 'call.egress_start_failed')).toMatchObject([
      { attempt: 1, nextAttemptAt: null },
    ]);
    h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
    await h.resolve('postCallData', { status: 201 });
    expect(ofType(h.emitted, 'call.recording_missing')).toMatchObject([{ reason: 'egress_not_started' }]);
    expect(h.context.outcome).toBe('partial');
  });
});

describe('the maximum call length (4 h by default)', () => {
  it('ends a call still starting its recording', async () => {
    const h = new CallHarness();
    await h.advanceTo(REFERENCE_TIMESTAMP + DEFAULT_CALL_LIMITS.maxCallDurationMs);
    expect(ofType(h.emitted, 'call.ended')).toMatchObject([{ reason: 'max_duration' }]);
  });

  it('ends a call in conversation', async () => {
    const h = new CallHarness();
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    await h.advanceTo(REFERENCE_TIMESTAMP + DEFAULT_CALL_LIMITS.maxCallDurationMs);
    expect(ofType(h.emitted, 'call.ended')).toMatchObject([
      { reason: 'max_duration', endedAt: iso(REFERENCE_TIMESTAMP + DEFAULT_CALL_LIMITS.maxCallDurationMs) },
    ]);
    expect(h.snapshot.hasTag('awaitingEgress')).toBe(true);
  });
});

describe('a step that fails, and its RETRY', () => {
  it('journals the refused attempt, the step and the call failing, the retry, and the delivery', async () => {
    const h = new CallHarness();
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    await endAndSettle(h);
    await h.resolve('uploadRecording', DELIVERED_RECORDING);
    const before = h.emitted.length;
    await h.reject('postCallData', fatalError('CRM_REJECTED'));
    expect(typesOf(h.emitted.slice(before))).toEqual([
      'upload.attempt_failed',
      'upload.failed',
      '→failed',
      'call.failed',
    ]);
    expect(ofType(h.emitted, 'upload.failed')).toMatchObject([
      { step: 'call-data', attempts: 1, error: { code: 'CRM_REJECTED' } },
    ]);
    expect(ofType(h.emitted, 'call.failed')).toMatchObject([
      { step: 'call-data', attempts: 1, reason: { code: 'CRM_REJECTED' } },
    ]);

    h.send({ type: 'call.retry', at: h.clock.now() });
    await h.resolve('postCallData', { status: 201 });
    expect(ofType(h.emitted, 'call.retried')).toMatchObject([{ step: 'call-data', retries: 1 }]);
    expect(h.context.attempts).toEqual({ recording: 1, 'call-data': 2 });
    expect(h.emitted.at(-1)).toMatchObject({ type: 'call.delivered', outcome: 'delivered' });
  });
});

describe("a recording whose source never gives it (the recording policy's fast lane only)", () => {
  it('journals each of its 7 attempts, then posts the call data without it as file_missing', async () => {
    const h = new CallHarness();
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    await endAndSettle(h);
    for (let attempt = 1; attempt <= 7; attempt += 1) {
      await h.reject('uploadRecording', retryableError('RECORDING_NOT_FOUND'));
      const next = h.context.delivery?.nextAttemptAt;
      if (next) await h.advanceTo(next);
    }
    const failures = ofType(h.emitted, 'upload.attempt_failed');
    expect(failures.map((event) => [event.step, event.attempt])).toEqual([
      ['recording', 1],
      ['recording', 2],
      ['recording', 3],
      ['recording', 4],
      ['recording', 5],
      ['recording', 6],
      ['recording', 7],
    ]);
    expect(failures.at(-1)!.nextAttemptAt).toBeNull();
    expect(ofType(h.emitted, 'call.recording_missing')).toMatchObject([
      { reason: 'file_missing', error: { code: 'RECORDING_NOT_FOUND' } },
    ]);
    await h.resolve('postCallData', { status: 201 });
    expect(h.context).toMatchObject({ outcome: 'partial', attempts: { recording: 7, 'call-data': 1 } });
  });
});
