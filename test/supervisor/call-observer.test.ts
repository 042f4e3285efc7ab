/**
 * The journal an operator reads and the finish counter the SLO divides by (the observer's
 * policy): entries carry the state after their event, kinds tell a step failing from the call
 * failing, times inside `detail` are ISO-8601, and a call counts as finished once.
 */
import pino from 'pino';
import { Registry } from 'prom-client';
import { beforeEach, describe, expect, it } from 'vitest';
import type { CallContext } from '../../src/machines/call.types.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { createMetricsRecorder } from '../../src/metrics/metrics.recorder.ts';
import type { JournalEntry } from '../../src/store/call-store.ts';
import { createCallObserver, type ObservedCall } from '../../src/supervisor/call-observer.ts';

const T0 = Date.UTC(2026, 0, 1, 10, 0, 0);
const CRM_422 = { code: 'CRM_REJECTED', message: 'refused', retryable: false, status: 422 };

let registry: Registry;
let journal: JournalEntry[];
let observer: ReturnType<typeof createCallObserver>;
let call: ObservedCall & { state: ObservedCall['state'] };

beforeEach(() => {
  registry = new Registry();
  journal = [];
  observer = createCallObserver({
    logger: pino({ level: 'silent' }),
    metrics: createMetricsRecorder(createMetrics({ registry, processMetrics: false })),
    time: { now: () => T0 },
    journal: (_callId, entry) => journal.push(entry),
    finished: () => undefined,
  });
  call = {
    callId: 'CALL-1',
    roomName: 'room-1',
    log: pino({ level: 'silent' }),
    state: 'recording',
    enteredStateAt: T0,
  };
});

const context = (retries: number) => ({ retries, recording: null }) as unknown as CallContext;

/** The machine's `call.delivered`, `deliveryMs` after an end at T0. */
const delivered = (deliveryMs: number) =>
  ({
    type: 'call.delivered',
    callId: 'CALL-1',
    outcome: 'delivered',
    endedAt: new Date(T0).toISOString(),
    acknowledgedAt: T0 + deliveryMs,
    deliveryMs,
    withinTarget: deliveryMs <= 30_000,
  }) as const;

async function finishedTotal(outcome: string): Promise<number> {
  const metric = await registry.getSingleMetric('callsync_calls_finished_total')?.get();
  return metric?.values.find((value) => value.labels.outcome === outcome)?.value ?? 0;
}

describe('call observer: the journal', () => {
  it('journals an event with the state its transition settled in', () => {
    observer.emitted(
      call,
      { type: 'call.state_entered', callId: 'CALL-1', state: 'inConversation', at: T0 },
      context(0),
    );
    expect(journal).toEqual([]); // not before the transition has settled
    call.state = 'inConversation';
    observer.settled(call);
    expect(journal).toEqual([
      {
        at: new Date(T0).toISOString(),
        kind: 'state_entered',
        state: 'inConversation',
        detail: { state: 'inConversation' },
      },
    ]);
  });

  it('tells a step failing from the call failing, with ISO-8601 times inside detail', () => {
    observer.emitted(
      call,
      {
        type: 'upload.attempt_failed',
        callId: 'CALL-1',
        step: 'call-data',
        attempt: 1,
        error: CRM_422,
        nextAttemptAt: T0 + 500,
        lane: null,
        at: T0,
      },
      context(0),
    );
    observer.emitted(
      call,
      { type: 'upload.failed', callId: 'CALL-1', step: 'call-data', attempts: 1, error: CRM_422, at: T0 },
      context(0),
    );
    observer.emitted(
      call,
      { type: 'call.failed', callId: 'CALL-1', step: 'call-data', reason: CRM_422, attempts: 1, at: T0 },
      context(0),
    );
    call.state = 'failed';
    observer.settled(call);
    expect(journal.map((entry) => entry.kind)).toEqual(['attempt_failed', 'step_failed', 'call_failed']);
    expect(journal.every((entry) => entry.state === 'failed')).toBe(true);
    expect(journal[0]?.detail).toMatchObject({
      nextAttemptAt: new Date(T0 + 500).toISOString(),
      at: new Date(T0).toISOString(),
    });
  });
});

describe('call observer: callsync_calls_finished_total', () => {
  it('counts a call once: a failed call re-driven and then delivered is not a second finish', async () => {
    observer.emitted(
      call,
      { type: 'call.failed', callId: 'CALL-1', step: 'call-data', reason: CRM_422, attempts: 1, at: T0 },
      context(0),
    );
    expect(await finishedTotal('failed')).toBe(1);
    observer.emitted(call, delivered(60_000), context(1));
    expect(await finishedTotal('failed')).toBe(1);
    expect(await finishedTotal('delivered')).toBe(0);
  });

  it('counts a call delivered the first time', async () => {
    observer.emitted(call, delivered(2_000), context(0));
    expect(await finishedTotal('delivered')).toBe(1);
  });
});
