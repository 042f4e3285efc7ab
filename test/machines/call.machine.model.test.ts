/**
 * Model-based tests of the call machine: every path the model yields is driven through a real
 * actor (real machine, real upload child, real timers on a SimulatedClock, fake effects), and
 * after every step the actor must agree with the model and keep the invariants:
 *
 * - state and context projection equal to the model's snapshot for that step;
 * - the LiveKit client lives exactly as long as the call: every state but `done` and `failed` is
 *   tagged `livekit`, and exactly one client is open while the actor is in a `livekit` state,
 *   none otherwise; every open is closed exactly once (a new one per RETRY and per restore into
 *   a `livekit` state); no effect ever used a closed client;
 * - no CRM step sent after its acknowledgement, none acknowledged twice, right idempotency keys;
 * - the last persisted snapshot is the actor's current one; no error reached the error observer.
 *
 * Path families: every shortest path (one per model state), every simple path to `done` along
 * the main line, and an edge tour that drives every remaining model edge. Each family runs
 * twice: as is, and with a crash before every step (persist → JSON → stop → downtime → restore).
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { AnyStateMachine } from 'xstate';
import { getAdjacencyMap } from 'xstate/graph';
import { callMachine } from '../../src/machines/call.machine.ts';
import {
  callModelEvents,
  callModelKey,
  callProjection,
  callShortestPaths,
  callSimplePaths,
  describePath,
  driveCallStep,
  dueTimeOf,
  expectedSnapshots,
  type CallPath,
  type CallSnapshot,
  type ModelEvent,
} from './call.model.ts';
import { Coverage } from './coverage.ts';
import { armedTimerDues, restartTime } from './crash.ts';
import { createUploadLogic } from '../../src/machines/call.effects.ts';
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

const shortestPaths = callShortestPaths();
const simplePaths = callSimplePaths();

function edgeId(from: string, event: ModelEvent): string {
  return `${from} -- ${JSON.stringify(event)}`;
}

/** All model edges (state key × enabled event) of the full alphabet. */
type Adjacency = Record<
  string,
  { state: CallSnapshot; transitions: Record<string, { event: ModelEvent; state: CallSnapshot }> }
>;
const adjacency = getAdjacencyMap(
  callMachine as AnyStateMachine,
  {
    input: makeCallInput(),
    events: callModelEvents,
    serializeState: callModelKey,
    filterEvents: (snapshot: CallSnapshot, event: ModelEvent) =>
      snapshot.status === 'active' && snapshot.can(event as never),
  } as never,
) as unknown as Adjacency;
const allEdges = new Map<string, { from: string; event: ModelEvent }>();
for (const [from, { transitions }] of Object.entries(adjacency)) {
  for (const { event } of Object.values(transitions)) allEdges.set(edgeId(from, event), { from, event });
}

function edgesOf(path: CallPath): string[] {
  return path.steps.slice(1).map((step, index) => edgeId(callModelKey(path.steps[index]!.state), step.event));
}

/**
 * Paths that drive every model edge the other families leave out: to each uncovered edge's
 * source by its shortest path, take the edge, then keep taking uncovered edges from wherever
 * that leads (a greedy tour), so one path covers many edges.
 */
function edgeTour(covered: Set<string>): CallPath[] {
  const shortestTo = new Map(shortestPaths.map((path) => [callModelKey(path.state), path]));
  const tour: CallPath[] = [];
  for (const [id, edge] of allEdges) {
    if (covered.has(id)) continue;
    const prefix = shortestTo.get(edge.from);
    if (prefix === undefined) throw new Error(`no path to ${edge.from}`);
    const steps = [...prefix.steps];
    let from = edge.from;
    let next: { id: string; event: ModelEvent } | undefined = { id, event: edge.event };
    while (next !== undefined) {
      covered.add(next.id);
      const target = adjacency[from]!.transitions[JSON.stringify(next.event)]!.state;
      steps.push({ event: next.event, state: target });
      from = callModelKey(target);
      next = undefined;
      for (const { event } of Object.values(adjacency[from]?.transitions ?? {})) {
        const candidate = edgeId(from, event);
        if (!covered.has(candidate)) {
          next = { id: candidate, event };
          break;
        }
      }
    }
    tour.push({ state: steps.at(-1)!.state, steps, weight: steps.length - 1 });
  }
  return tour;
}

const familyEdges = new Set([...shortestPaths, ...simplePaths].flatMap(edgesOf));
const tourPaths = edgeTour(new Set(familyEdges));

const coverage = new Coverage();
const drivenEdges = new Set<string>();
const drivenStates = new Set<string>();
let drivenSteps = 0;

/** Crashes and restores `h`; true when the restored actor opened a LiveKit client of its own. */
async function crashBefore(h: CallHarness, next: ModelEvent | null): Promise<boolean> {
  expect(h.persistedIsCurrent, 'the persisted snapshot lags behind').toBe(true);
  const before = callProjection(h.snapshot);
  const now = h.clock.now();
  const target = restartTime(now, armedTimerDues(JSON.parse(h.persistedJson)), next && dueTimeOf(h, next));
  await h.crash(target - now);
  expect(callProjection(h.snapshot)).toEqual(before);
  expect(h.problems()).toEqual([]);
  return h.snapshot.hasTag('livekit');
}

async function runPath(path: CallPath, crash: boolean): Promise<void> {
  const h = new CallHarness({ coverage });
  const [initial, ...expected] = expectedSnapshots(path);
  expect(callProjection(h.snapshot)).toEqual(callProjection(initial!));
  let from = callModelKey(initial!);
  drivenStates.add(from);
  // One client for the call, one more per restore into a `livekit` state and per RETRY (in the
  // model a RETRY always settles in `uploadingRecording` or `postingData`).
  let expectedOpens = 1;
  for (const [index, step] of path.steps.slice(1).entries()) {
    if (crash && (await crashBefore(h, step.event))) expectedOpens += 1;
    if (step.event.type === 'call.retry') expectedOpens += 1;
    await driveCallStep(h, step.event);
    expect(callProjection(h.snapshot), `after ${step.event.type}`).toEqual(callProjection(expected[index]!));
    expect(h.problems(), `after ${step.event.type}`).toEqual([]);
    drivenEdges.add(edgeId(from, step.event));
    from = callModelKey(expected[index]!);
    drivenStates.add(from);
    drivenSteps += 1;
  }
  if (crash && h.snapshot.status === 'active' && (await crashBefore(h, null))) expectedOpens += 1;

  // Across crashes, the once-only events were emitted once (restores replay no actions).
  const count = (type: string) => h.emitted.filter((event) => event.type === type).length;
  if (h.snapshot.status === 'done') {
    expect(count('call.delivered')).toBe(1);
    expect(h.snapshot.output?.outcome).toBe(h.context.recording === null ? 'partial' : 'delivered');
    expect(h.effects.crmAcks.get('call-1:call-data')).toBe(1);
  }
  expect(count('call.egress_started')).toBeLessThanOrEqual(1);
  expect(count('call.ended')).toBeLessThanOrEqual(1);

  h.actor.stop();
  expect(h.effects.openClientCount).toBe(0);
  expect(h.effects.opens).toBe(expectedOpens);
  expect(h.effects.closes).toBe(expectedOpens);
  expect(h.effects.violations).toEqual([]);
}

const families: Array<[string, CallPath[]]> = [
  ['shortest paths', shortestPaths],
  ['simple paths to done (main line)', simplePaths],
  ['edge tour', tourPaths],
];

for (const crash of [false, true]) {
  describe(crash ? 'call machine with a crash before every step' : 'call machine', () => {
    for (const [family, paths] of families) {
      describe(family, () => {
        for (const path of paths) {
          it(describePath(path) || '(initial state)', () => runPath(path, crash));
        }
      });
    }
  });
}

/**
 * What the model cannot reach: effects that break in ways no CRM or LiveKit answer produces
 * (a timer or the client failing to start, the upload machine itself failing), a call whose
 * maximum duration passes while its egress is still starting, and call data that cannot be
 * built. Each must leave the actor alive and the call deliverable or visibly failed.
 */
describe('call machine faults', () => {
  const endNow = (h: CallHarness) =>
    h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
  const faults = (h: CallHarness) => h.emitted.filter((event) => event.type === 'call.fault');

  async function deliverWithoutRecording(h: CallHarness) {
    await h.resolve('postCallData', { status: 201 });
    expect(h.snapshot.status).toBe('done');
    expect(h.snapshot.output?.outcome).toBe('partial');
  }

  it('a LiveKit client that cannot be opened: no recording, delivered partially', async () => {
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
  });

  it('broken call timers are reported and the call still completes', async () => {
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
  });

  it('a broken retry timer retries at once; a broken poll timer waits for the webhook', async () => {
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
    await h.resolve('stopEgress', { alreadyEnded: false });
    await h.resolve('checkEgress', { status: 'active' });
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
  });

  it('the maximum duration passing while the egress is starting ends the call once it started', async () => {
    const startedAt = REFERENCE_TIMESTAMP - 2 * 60 * 60_000 + 5_000; // 5 s left
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
  });

  it('the maximum duration passing while backing off ends the call without a recording', async () => {
    const startedAt = REFERENCE_TIMESTAMP - 2 * 60 * 60_000 + 300; // due before the first retry
    const h = new CallHarness({
      coverage,
      input: makeCallInput({ call: { ...makeCallInput().call, startedAt: iso(startedAt) } }),
    });
    await h.reject('startEgress', retryableError('LIVEKIT_UNAVAILABLE'));
    expect(h.snapshot.value).toEqual({ active: { live: { recording: 'backoff' } } });
    await h.advanceTo(REFERENCE_TIMESTAMP + 300);
    expect(h.context.end).toMatchObject({ reason: 'max_duration' });
    expect(h.context.egress.settlement).toMatchObject({ status: 'not_started' });
    expect(h.snapshot.value).toEqual({ active: 'postingData' });
    await deliverWithoutRecording(h);
    expect(h.problems()).toEqual([]);
  });

  it('an upload machine that breaks: the call data goes without the recording; a broken call-data step fails the call', async () => {
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
  });

  it('call data that cannot be built fails the call with CALL_DATA_INVALID; RETRY rebuilds it', async () => {
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
  });
});

describe('call machine coverage', () => {
  it('covers every state node and every transition of the machine', () => {
    const report = coverage.report(callMachine);
    expect(report.uncoveredNodes).toEqual([]);
    expect(report.uncoveredTransitions).toEqual([]);
    expect(report.nodes.covered).toBe(report.nodes.total);
    expect(report.transitions.covered).toBe(report.transitions.total);
  });

  it('drives every model state and every model edge', () => {
    const modelStates = new Set(Object.keys(adjacency));
    expect({ states: drivenStates.size, edges: drivenEdges.size }).toEqual({
      states: modelStates.size,
      edges: allEdges.size,
    });
    expect([...modelStates].filter((key) => !drivenStates.has(key))).toEqual([]);
  });

  afterAll(() => {
    const report = coverage.report(callMachine);
    console.info(
      [
        `call machine model: ${shortestPaths.length} shortest + ${simplePaths.length} simple + ${tourPaths.length} tour paths, ` +
          `${drivenSteps} steps driven in all (plain and crash runs)`,
        `model states ${drivenStates.size}/${Object.keys(adjacency).length}, model edges ${drivenEdges.size}/${allEdges.size}`,
        `machine state nodes ${report.nodes.covered}/${report.nodes.total}, ` +
          `transitions ${report.transitions.covered}/${report.transitions.total}`,
        `transitions not covered: ${report.uncoveredTransitions.join('; ') || 'none'}`,
      ].join('\n'),
    );
  });
});

export { coverage as callModelCoverage };
