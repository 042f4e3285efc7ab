/**
 * Model-based tests of the call machine: model paths driven through a real actor, which after
 * every step must agree with the model and keep the invariants (`runCallPath` in call.model.ts),
 * each path as is and with a crash before every step (persist → JSON → stop → downtime →
 * restore). Here: every shortest path (one per model state) and an edge tour that takes every
 * model edge; every simple path to `done` along the main line runs in
 * call.machine.main-line.model.test.ts, so the two halves run side by side.
 *
 * Also here: the faults the model cannot reach, and the coverage tests, which drive what they
 * count themselves and so pass alone and in any order.
 */
import { describe, expect, it } from 'vitest';
import { callMachine } from '../../src/machines/call.machine.ts';
import { createUploadLogic } from '../../src/machines/call.actors.ts';
import { callGraph, callReplay, describePath, runCallPath } from './call.model.ts';
import { Coverage } from './coverage.ts';
import {
  brokenTimers,
  CallHarness,
  DELIVERED_RECORDING,
  EGRESS_ID,
  flush,
  iso,
  makeCallInput,
  RECORDING_FILE,
  REFERENCE_TIMESTAMP,
  retryableError,
} from './harness.ts';

for (const crash of [false, true]) {
  describe(crash ? 'call machine with a crash before every step' : 'call machine', () => {
    const { shortestPaths, tour } = callGraph();
    for (const [family, paths] of [
      ['shortest paths', shortestPaths],
      ['edge tour', tour],
    ] as const) {
      describe(family, () => {
        for (const events of paths) {
          it(describePath(events) || '(initial state)', () => runCallPath(events, crash));
        }
      });
    }
  });
}

/** The README's `CALLSYNC_MAX_CALL_DURATION_SECONDS` default, `14400`: the machine's default too. */
const MAX_CALL_DURATION_MS = 14_400 * 1_000;

const endNow = (h: CallHarness) =>
  h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
const faults = (h: CallHarness) => h.emitted.filter((event) => event.type === 'call.fault');

async function deliverWithoutRecording(h: CallHarness) {
  await h.resolve('postCallData', { status: 201 });
  expect(h.snapshot.status).toBe('done');
  expect(h.snapshot.output?.outcome).toBe('partial');
}

/**
 * What the model cannot reach: effects that break in ways no CRM or LiveKit answer produces
 * (a timer or the client failing to start, the upload machine itself failing), a call whose
 * maximum duration passes while its egress is still starting, and call data that cannot be
 * built. Each must leave the actor alive and the call deliverable or visibly failed. Each
 * scenario records coverage when given a `Coverage` (the coverage test runs them too).
 */
const faultScenarios: Array<[name: string, run: (coverage?: Coverage) => Promise<void>]> = [
  [
    'a LiveKit client that cannot be opened: no recording, delivered partially',
    async (coverage) => {
      const h = new CallHarness({ coverage, failFirstOpen: true });
      await flush();
      expect(faults(h)).toMatchObject([{ source: 'liveKitClient' }]);
      expect(h.context.egress).toMatchObject({
        unavailable: true,
        lastError: { code: 'LIVEKIT_CLIENT_CLOSED' },
      });
      expect(h.snapshot.value).toEqual({ active: { live: 'inConversation' } });
      endNow(h);
      await flush();
      expect(h.context.egress.settlement).toMatchObject({ status: 'not_started', via: 'none' });
      await deliverWithoutRecording(h);
      expect(h.errors).toEqual([]);
      expect(h.effects.opens).toBe(0);
    },
  ],

  [
    'broken call timers are reported and the call still completes',
    async (coverage) => {
      const broken = new Set([
        'timer.max_call_duration',
        'timer.egress_start_timeout',
        'timer.egress_deadline',
      ]);
      const h = new CallHarness({
        coverage,
        adapt: (logic, _effects, clock) => logic.provide({ actors: { timer: brokenTimers(clock, broken) } }),
      });
      await h.resolve('startEgress', { egressId: EGRESS_ID });
      endNow(h);
      await flush();
      await h.resolve('stopEgress', { alreadyEnded: false });
      await h.advanceTo(h.context.egress.nextPollAt!);
      await h.resolve('checkEgress', { status: 'complete', file: RECORDING_FILE });
      await h.resolve('uploadRecording', DELIVERED_RECORDING);
      await h.resolve('postCallData', { status: 201 });
      expect(h.snapshot.output?.outcome).toBe('delivered');
      expect(faults(h).map((event) => 'source' in event && event.source)).toEqual([
        'maxCallTimer',
        'egressStartTimeout',
        'maxCallTimer',
        'egressDeadline',
      ]);
      expect(h.problems()).toEqual([]);
    },
  ],

  [
    'a broken retry timer retries at once; a broken poll timer waits for the webhook',
    async (coverage) => {
      const broken = new Set(['timer.egress_start_retry', 'timer.egress_poll']);
      const h = new CallHarness({
        coverage,
        adapt: (logic, _effects, clock) => logic.provide({ actors: { timer: brokenTimers(clock, broken) } }),
      });
      await h.reject('startEgress', retryableError('LIVEKIT_UNAVAILABLE'));
      expect(h.snapshot.value).toEqual({ active: { live: { recording: 'starting' } } });
      expect(h.context.egress.startAttempts).toBe(2);
      await h.resolve('startEgress', { egressId: EGRESS_ID });
      endNow(h);
      await flush();
      // Stopped: the first poll waits for the (broken) poll timer.
      await h.resolve('stopEgress', { alreadyEnded: false });
      expect(h.snapshot.value).toEqual({ active: { live: { awaitingEgress: 'waiting' } } });
      h.send({
        type: 'livekit.egress_ended',
        egressId: EGRESS_ID,
        outcome: { status: 'failed' },
        at: h.clock.now(),
      });
      await flush();
      await deliverWithoutRecording(h);
      expect(faults(h).map((event) => 'source' in event && event.source)).toEqual([
        'egressStartRetry',
        'egressPoll',
      ]);
      expect(h.problems()).toEqual([]);
    },
  ],

  [
    'the maximum duration passing while the egress is starting ends the call once it started',
    async (coverage) => {
      const startedAt = REFERENCE_TIMESTAMP - MAX_CALL_DURATION_MS + 5_000; // 5 s left
      const h = new CallHarness({
        coverage,
        input: makeCallInput({ call: { ...makeCallInput().call, startedAt: iso(startedAt) } }),
      });
      await h.advanceTo(REFERENCE_TIMESTAMP + 5_000);
      expect(h.context.end).toMatchObject({ reason: 'max_duration' });
      expect(h.snapshot.value).toEqual({ active: { live: { recording: 'starting' } } });
      await h.resolve('startEgress', { egressId: EGRESS_ID });
      expect(h.snapshot.value).toEqual({ active: { live: { awaitingEgress: 'stopping' } } });
      expect(h.effects.inFlight('stopEgress')?.input).toMatchObject({ egressId: EGRESS_ID });
      expect(h.problems()).toEqual([]);
    },
  ],

  [
    'the maximum duration passing while backing off ends the call without a recording',
    async (coverage) => {
      const startedAt = REFERENCE_TIMESTAMP - MAX_CALL_DURATION_MS + 50; // due before the first retry (≥ 80 ms)
      const h = new CallHarness({
        coverage,
        input: makeCallInput({ call: { ...makeCallInput().call, startedAt: iso(startedAt) } }),
      });
      await h.reject('startEgress', retryableError('LIVEKIT_UNAVAILABLE'));
      expect(h.snapshot.value).toEqual({ active: { live: { recording: 'backoff' } } });
      await h.advanceTo(REFERENCE_TIMESTAMP + 50);
      expect(h.context.end).toMatchObject({ reason: 'max_duration' });
      expect(h.context.egress.settlement).toMatchObject({ status: 'not_started' });
      expect(h.snapshot.value).toEqual({ active: 'postingData' });
      await deliverWithoutRecording(h);
      expect(h.problems()).toEqual([]);
    },
  ],

  [
    'an upload machine that breaks: the call data goes without the recording; a broken call-data step fails the call',
    async (coverage) => {
      const brokenUpload = () =>
        new CallHarness({
          coverage,
          adapt: (logic, effects, clock) =>
            logic.provide({
              actors: {
                delivery: createUploadLogic({ crm: effects.crm, time: clock }).provide({
                  actions: {
                    recordAck: () => {
                      throw new Error('bug in recordAck');
                    },
                  },
                }),
              },
            }),
        });
      for (const egress of [{ status: 'complete', file: RECORDING_FILE }, { status: 'failed' }] as const) {
        const h = brokenUpload();
        await h.resolve('startEgress', { egressId: EGRESS_ID });
        h.send({ type: 'livekit.egress_ended', egressId: EGRESS_ID, outcome: egress, at: h.clock.now() });
        endNow(h);
        await flush();
        if (egress.status === 'complete') {
          await h.resolve('uploadRecording', DELIVERED_RECORDING);
          expect(h.snapshot.value).toEqual({ active: 'postingData' });
          expect(h.context.recordingMissing).toMatchObject({
            reason: 'internal_error',
            error: { code: 'UNEXPECTED_ERROR', message: 'bug in recordAck' },
          });
          expect(h.context.recording).toBeNull();
        }
        await h.resolve('postCallData', { status: 201 });
        expect(h.snapshot.value).toBe('failed');
        expect(h.context.failure).toMatchObject({
          step: 'call-data',
          error: { code: 'UNEXPECTED_ERROR', message: 'bug in recordAck' },
        });
        expect(h.errors).toEqual([]);
      }
    },
  ],

  [
    'call data that cannot be built fails the call with CALL_DATA_INVALID; RETRY rebuilds it',
    async (coverage) => {
      const h = new CallHarness({ coverage });
      await h.resolve('startEgress', { egressId: EGRESS_ID });
      h.send({
        type: 'call.transcript',
        items: [{ id: 'bad', role: 'user', content: 'x', timestamp: 'not a time' }],
        at: h.clock.now(),
      });
      h.send({
        type: 'livekit.egress_ended',
        egressId: EGRESS_ID,
        outcome: { status: 'failed' },
        at: h.clock.now(),
      });
      endNow(h);
      await flush();
      expect(h.snapshot.value).toBe('failed');
      expect(h.context.failure).toMatchObject({
        step: 'call-data',
        error: { code: 'CALL_DATA_INVALID', retryable: false },
      });
      h.send({ type: 'call.retry', at: h.clock.now() });
      await flush();
      expect(h.snapshot.value).toBe('failed');
      expect(h.context.retries).toBe(1);
      expect(h.effects.count('postCallData')).toBe(0);
      expect(h.problems()).toEqual([]);
    },
  ],
];

describe('call machine faults', () => {
  for (const [name, run] of faultScenarios) it(name, () => run());
});

describe('call machine coverage', () => {
  it('covers every state node and every transition of the machine', async () => {
    // The fault scenarios, then edge-tour paths until nothing is left uncovered: the tour takes
    // every model edge, the scenarios reach what the model cannot.
    const coverage = new Coverage();
    for (const [, run] of faultScenarios) await run(coverage);
    const { tour } = callGraph();
    let driven = 0;
    for (const events of tour) {
      const { uncoveredNodes, uncoveredTransitions } = coverage.report(callMachine);
      if (uncoveredNodes.length === 0 && uncoveredTransitions.length === 0) break;
      await runCallPath(events, false, coverage);
      driven += 1;
    }
    const report = coverage.report(callMachine);
    console.info(
      `call machine: ${faultScenarios.length} fault scenarios and ${driven} of ${tour.length} edge-tour paths ` +
        `cover state nodes ${report.nodes.covered}/${report.nodes.total}, ` +
        `transitions ${report.transitions.covered}/${report.transitions.total}`,
    );
    expect(report.uncoveredNodes).toEqual([]);
    expect(report.uncoveredTransitions).toEqual([]);
  });

  it('the shortest paths reach every model state; the edge tour takes every model edge', () => {
    const { states, edges, shortestPaths, tour } = callGraph();
    const reached = new Set(shortestPaths.flatMap((events) => callReplay().visits(events).states));
    const taken = new Set(tour.flatMap((events) => callReplay().visits(events).edges));
    expect([...states].filter((state) => !reached.has(state))).toEqual([]);
    expect([...reached].filter((state) => !states.has(state))).toEqual([]);
    expect([...edges].filter((edge) => !taken.has(edge))).toEqual([]);
  });
});
