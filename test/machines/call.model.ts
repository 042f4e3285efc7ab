/**
 * The call machine as a test model: which events can happen in each state (`callModelEvents`),
 * which states count as the same (`callModelKey`), what to compare between the model's snapshot
 * and the real actor's (`callProjection`), the paths the tests drive (`callGraph`, `callMainLinePaths`), how to make
 * each model event happen to a real actor (`driveCallStep`) and a whole path (`runCallPath`).
 *
 * The model is the real machine, traversed with `xstate/graph` (pure `machine.transition`). Its
 * alphabet includes XState's internal events (effect results, the upload child's progress) so
 * that every outcome of every effect is a step. Payloads are realistic and the alphabet only
 * offers what can really happen next: a timer only when it is the earliest one armed in that
 * state, an upload result only while the upload child has an attempt in flight.
 */
import { expect } from 'vitest';
import type { AnyMachineSnapshot, AnyStateMachine, SnapshotFrom } from 'xstate';
import { getAdjacencyMap, getShortestPaths, getSimplePaths, type StatePath } from 'xstate/graph';
import type { CallEvent } from '../../src/machines/call.machine.ts';
import { callMachine } from '../../src/machines/call.machine.ts';
import type { CallContext, DeliveryStep, EgressOutcome } from '../../src/machines/call.types.ts';
import type { UploadContext, UploadOutput } from '../../src/machines/upload.machine.ts';
import type { Coverage } from './coverage.ts';
import { armedTimerDues, restartTime } from './crash.ts';
import {
  CALL_ID,
  CallHarness,
  DELIVERED_RECORDING,
  EGRESS_ID,
  RECORDING_FILE,
  REFERENCE_TIMESTAMP,
  fatalError,
  flush,
  iso,
  makeCallInput,
  retryableError,
} from './harness.ts';
import {
  ModelReplay,
  edgeTour,
  eventsOf,
  expectEqual,
  modelEdges,
  type Adjacency,
  type ModelEvent,
  type ModelEvents,
} from './model-paths.ts';

export type { ModelEvent };
export type CallSnapshot = SnapshotFrom<typeof callMachine>;
export type CallPath = StatePath<CallSnapshot, ModelEvent>;

const T0 = REFERENCE_TIMESTAMP;
/** The model's events carry a fixed time; the driver stamps real ones from the clock. */
const AT = T0;
const MAX_MODELLED_DELIVERY_FAILURES = 2;

const transcriptItem = (id: string, offsetMs: number, role: 'user' | 'assistant', content: string) => ({
  id,
  role,
  content,
  timestamp: iso(T0 + offsetMs),
  transcriptConfidence: role === 'user' ? 0.93 : null,
});

/** Two batches: out of timestamp order, then one repeating an id (with other content). */
const TRANSCRIPT_BATCHES = [
  [
    transcriptItem('t2', 20_000, 'assistant', 'How can I help?'),
    transcriptItem('t1', 10_000, 'user', 'Hello'),
  ],
  [
    transcriptItem('t1', 10_000, 'user', 'Hello (again)'),
    transcriptItem('t3', 30_000, 'user', 'Book a visit'),
  ],
];
const LEADS = [
  { leadId: 'lead-1', data: { name: 'Ada', interest: 'visit' } },
  { leadId: 'lead-1', data: { name: 'Ada Lovelace', interest: 'visit' } },
];

const stamped = (result: unknown) => ({ result, at: AT });
const failure = (code: string, retryable: boolean) => ({
  info: { code, message: code, retryable },
  at: AT,
});
const done = (id: string, output: unknown): ModelEvent => ({
  type: `xstate.done.actor.${id}`,
  actorId: id,
  output,
});
const error = (id: string, err: unknown): ModelEvent => ({
  type: `xstate.error.actor.${id}`,
  actorId: id,
  error: err,
});
const timer = (type: string): ModelEvent => ({ type, at: AT });
const webhook = (
  type: 'livekit.egress_ended' | 'livekit.egress_updated',
  egressId: string,
  outcome: EgressOutcome,
) => ({ type, egressId, outcome, at: AT }) satisfies CallEvent;

const COMPLETE: EgressOutcome = { status: 'complete', file: RECORDING_FILE };
const LIMIT_REACHED: EgressOutcome = { status: 'limit_reached', file: RECORDING_FILE };
const FAILED: EgressOutcome = { status: 'failed', error: 'pipeline failed' };
const ABORTED: EgressOutcome = { status: 'aborted', error: 'aborted' };
const COMPLETE_NO_FILE: EgressOutcome = { status: 'complete', file: null };
const ACTIVE: EgressOutcome = { status: 'active' };

function uploadInvokeId(step: DeliveryStep): string {
  return step === 'recording' ? 'recordingUpload' : 'callDataPost';
}

/** The fake child context the root sees in `xstate.snapshot.<id>` (only what it reads). */
function childProgress(step: DeliveryStep, attempt: number, failures: number): Partial<UploadContext> {
  return {
    request: { step } as UploadContext['request'],
    attempt,
    failures,
    attemptStartedAt: AT,
    lastFailure:
      failures === 0
        ? null
        : {
            attempt: failures,
            error: { code: 'CRM_UNAVAILABLE', message: 'CRM_UNAVAILABLE', retryable: true },
            at: AT,
            nextAttemptAt: AT + 500,
            lane: 'fast',
          },
  };
}

function deliveryEvents(context: CallContext): ModelEvent[] {
  const delivery = context.delivery;
  if (delivery === null) return [];
  const id = uploadInvokeId(delivery.step);
  const snapshotEvent = (attempt: number, failures: number): ModelEvent => ({
    type: `xstate.snapshot.${id}`,
    snapshot: { status: 'active', context: childProgress(delivery.step, attempt, failures) },
  });
  if (delivery.failures >= delivery.attempt) {
    // Backing off: the only thing that can happen is the next attempt beginning.
    return [snapshotEvent(delivery.attempt + 1, delivery.failures)];
  }
  const succeeded: UploadOutput = {
    status: 'succeeded',
    step: delivery.step,
    ack:
      delivery.step === 'recording'
        ? { step: 'recording', recording: DELIVERED_RECORDING }
        : { step: 'call-data', status: 201 },
    attempts: delivery.attempt,
    at: AT,
  };
  const rejected: UploadOutput = {
    status: 'failed',
    step: delivery.step,
    error: { code: 'CRM_REJECTED', message: 'CRM_REJECTED', retryable: false },
    attempts: delivery.attempt,
    at: AT,
  };
  return [
    ...(delivery.failures < MAX_MODELLED_DELIVERY_FAILURES
      ? [snapshotEvent(delivery.attempt, delivery.failures + 1)]
      : []),
    done(id, succeeded),
    done(id, rejected),
  ];
}

/** Every event that can happen next in `snapshot`. */
export function callModelEvents(snapshot: CallSnapshot): ModelEvent[] {
  const { context } = snapshot;
  const events: ModelEvent[] = [];
  const at = (path: object | string) => snapshot.matches(path as never);
  if (snapshot.hasTag('collecting')) {
    for (const items of TRANSCRIPT_BATCHES) events.push({ type: 'call.transcript', items, at: AT });
    for (const lead of LEADS) events.push({ type: 'call.lead', ...lead, at: AT });
  }
  const endEvents: ModelEvent[] = [
    { type: 'call.end', endedAt: iso(T0 + 60_000), status: 'completed', reason: 'caller hung up', at: AT },
    { type: 'livekit.room_finished', at: AT },
  ];
  if (at({ active: { live: { recording: 'starting' } } })) {
    events.push(
      done('startEgress', stamped({ egressId: EGRESS_ID })),
      error('startEgress', failure('LIVEKIT_UNAVAILABLE', true)),
      error('startEgress', failure('EGRESS_FORBIDDEN', false)),
      timer('timer.egress_start_timeout'),
      ...endEvents,
    );
  }
  if (at({ active: { live: { recording: 'backoff' } } }))
    events.push(timer('timer.egress_start_retry'), ...endEvents);
  if (at({ active: { live: 'inConversation' } })) {
    events.push(
      ...endEvents,
      timer('timer.max_call_duration'),
      webhook('livekit.egress_ended', EGRESS_ID, FAILED),
      webhook('livekit.egress_ended', EGRESS_ID, LIMIT_REACHED),
      webhook('livekit.egress_updated', EGRESS_ID, ACTIVE),
      webhook('livekit.egress_updated', EGRESS_ID, ABORTED),
      webhook('livekit.egress_ended', 'EG_OTHER', COMPLETE),
    );
  }
  if (at({ active: { live: 'awaitingEgress' } })) {
    events.push(
      webhook('livekit.egress_ended', EGRESS_ID, COMPLETE),
      webhook('livekit.egress_ended', EGRESS_ID, ABORTED),
      webhook('livekit.egress_updated', EGRESS_ID, ACTIVE),
      webhook('livekit.egress_updated', EGRESS_ID, FAILED),
      webhook('livekit.egress_ended', 'EG_OTHER', COMPLETE),
    );
  }
  if (at({ active: { live: { awaitingEgress: 'stopping' } } })) {
    events.push(
      done('stopEgress', stamped({ alreadyEnded: false })),
      done('stopEgress', stamped({ alreadyEnded: true })),
      error('stopEgress', failure('LIVEKIT_UNAVAILABLE', true)),
      timer('timer.egress_deadline'),
    );
  }
  if (at({ active: { live: { awaitingEgress: 'polling' } } })) {
    for (const outcome of [ACTIVE, COMPLETE, LIMIT_REACHED, FAILED, ABORTED, COMPLETE_NO_FILE]) {
      events.push(done('checkEgress', stamped(outcome)));
    }
    events.push(error('checkEgress', failure('LIVEKIT_UNAVAILABLE', true)), timer('timer.egress_deadline'));
  }
  if (at({ active: { live: { awaitingEgress: 'waiting' } } })) events.push(timer('timer.egress_poll'));
  if (at({ active: 'uploadingRecording' }) || at({ active: 'postingData' }))
    events.push(...deliveryEvents(context));
  if (at('failed')) events.push({ type: 'call.retry', at: AT });
  return events;
}

/**
 * States the model treats as one: the state value plus the context that decides what can happen
 * next. Transcript, leads, poll counts and times are left out (their events are self-loops).
 */
export function callModelKey(snapshot: AnyMachineSnapshot): string {
  let key = modelKeys.get(snapshot);
  if (key === undefined) {
    key = modelKeyOf(snapshot);
    modelKeys.set(snapshot, key);
  }
  return key;
}

/** Snapshots are immutable, and the traversals ask for the key of the same one many times. */
const modelKeys = new WeakMap<AnyMachineSnapshot, string>();

function modelKeyOf(snapshot: AnyMachineSnapshot): string {
  const context = (snapshot as CallSnapshot).context;
  const { egress } = context;
  return JSON.stringify({
    status: snapshot.status,
    value: snapshot.value as unknown,
    egress: {
      id: egress.id !== null,
      startAttempts: egress.startAttempts,
      unavailable: egress.unavailable,
      reported: egress.reported?.status ?? null,
      settled:
        egress.settlement === null ? null : `${egress.settlement.status}:${egress.settlement.file !== null}`,
    },
    ended: context.end !== null,
    recording: context.recording !== null,
    delivery: context.delivery === null ? null : [context.delivery.attempt, context.delivery.failures],
    failure: context.failure?.step ?? null,
  });
}

/** What must agree between the model's snapshot and the real actor's at every step. */
export function callProjection(snapshot: AnyMachineSnapshot) {
  const context = (snapshot as CallSnapshot).context;
  const { egress } = context;
  return {
    status: snapshot.status,
    value: snapshot.value as unknown,
    egress: {
      id: egress.id,
      startAttempts: egress.startAttempts,
      unavailable: egress.unavailable,
      lastError: egress.lastError?.code ?? null,
      reported: egress.reported?.status ?? null,
      stopError: egress.stopError?.code ?? null,
      polls: egress.polls,
      settlement:
        egress.settlement === null
          ? null
          : { status: egress.settlement.status, via: egress.settlement.via, file: egress.settlement.file },
    },
    end: context.end === null ? null : { reason: context.end.reason, status: context.end.status },
    transcript: context.transcript.map((item) => `${item.id}:${item.content}`),
    leads: context.leads,
    recording: context.recording,
    delivery:
      context.delivery === null
        ? null
        : {
            step: context.delivery.step,
            attempt: context.delivery.attempt,
            failures: context.delivery.failures,
            lastError: context.delivery.lastError?.code ?? null,
          },
    failure:
      context.failure === null
        ? null
        : {
            step: context.failure.step,
            code: context.failure.error.code,
            attempts: context.failure.attempts,
          },
    outcome: context.outcome,
    retries: context.retries,
  };
}

const traversal = {
  input: makeCallInput(),
  events: callModelEvents,
  serializeState: callModelKey,
  filterEvents: (snapshot: CallSnapshot, event: ModelEvent) =>
    snapshot.status === 'active' && snapshot.can(event as unknown as CallEvent),
};

/** `getShortestPaths` on the real machine: one path to every model state. */
function callShortestPaths(): CallPath[] {
  return getShortestPaths(callMachine, traversal as never) as unknown as CallPath[];
}

/**
 * The main line of a call: one representative event per structurally different outcome (no
 * transcript or lead self-loops; `room_finished`/maximum duration behave as `call.end`; a
 * StartEgress timeout as a retryable error; one failed attempt at most per CRM step).
 */
function isMainLine(event: ModelEvent): boolean {
  switch (event.type) {
    case 'call.transcript':
    case 'call.lead':
    case 'livekit.room_finished':
    case 'timer.max_call_duration':
    case 'timer.egress_start_timeout':
    case 'livekit.egress_updated':
      return false;
    case 'livekit.egress_ended':
      return event.egressId === EGRESS_ID && (event.outcome as EgressOutcome).status !== 'aborted';
    case 'xstate.done.actor.stopEgress':
      return !(event.output as { result: { alreadyEnded: boolean } }).result.alreadyEnded;
    case 'xstate.done.actor.checkEgress': {
      const { status, file } = (event.output as { result: EgressOutcome }).result;
      return status === 'active' || (status === 'complete' && file !== null) || status === 'failed';
    }
    default:
      if (event.type.startsWith('xstate.snapshot.')) {
        return (event.snapshot as { context: UploadContext }).context.failures <= 1;
      }
      return true;
  }
}

/**
 * `getSimplePaths` on the real machine, bounded to the main line (`isMainLine`): every path
 * that reaches `done` without visiting a model state twice.
 */
function callSimplePaths(): CallPath[] {
  return getSimplePaths(callMachine, {
    ...traversal,
    events: (snapshot: CallSnapshot) => callModelEvents(snapshot).filter(isMainLine),
    toState: (snapshot: CallSnapshot) => snapshot.status === 'done',
  } as never) as unknown as CallPath[];
}

export type CallProjection = ReturnType<typeof callProjection>;

/** The model graph and the paths through it the tests drive that come from it. */
export interface CallGraph {
  /** Every model state (its key) and every model edge (`edgeId`) of the full alphabet. */
  readonly states: ReadonlySet<string>;
  readonly edges: ReadonlySet<string>;
  /** A shortest path to every model state. */
  readonly shortestPaths: readonly ModelEvents[];
  /** Paths that together take every model edge. */
  readonly tour: readonly ModelEvents[];
}

let graph: CallGraph | undefined;
let simplePaths: readonly ModelEvents[] | undefined;
let replay: ModelReplay<CallProjection> | undefined;

/** The call model's graph and paths, built once per module instance (traversals take a while). */
export function callGraph(): CallGraph {
  if (graph !== undefined) return graph;
  const shortestPaths = callShortestPaths();
  const adjacency = getAdjacencyMap(
    callMachine as AnyStateMachine,
    traversal as never,
  ) as unknown as Adjacency<CallSnapshot>;
  graph = {
    states: new Set(Object.keys(adjacency)),
    edges: new Set(modelEdges(adjacency).keys()),
    shortestPaths: shortestPaths.map(eventsOf),
    tour: edgeTour(adjacency, shortestPaths, callModelKey),
  };
  return graph;
}

/** Every simple path to `done` along the main line, built once per module instance. */
export function callMainLinePaths(): readonly ModelEvents[] {
  simplePaths ??= callSimplePaths().map(eventsOf);
  return simplePaths;
}

/**
 * The model's exact states along a path. The snapshots `xstate/graph` stores in a path are one
 * representative per model state, so context the key leaves out (transcript, polls…) may come
 * from another path; replaying the path's events through the pure machine gives its own.
 */
export function callReplay(): ModelReplay<CallProjection> {
  replay ??= new ModelReplay(callMachine as AnyStateMachine, makeCallInput(), callProjection, callModelKey);
  return replay;
}

export function describePath(events: ModelEvents): string {
  return events
    .map((event) => {
      const suffix =
        'output' in event && typeof event.output === 'object' && event.output !== null
          ? `(${JSON.stringify((event.output as { result?: unknown; status?: unknown }).result ?? (event.output as { status?: unknown }).status)})`
          : 'error' in event
            ? `(${(event.error as { info: { code: string } }).info.code})`
            : 'outcome' in event
              ? `(${(event.outcome as EgressOutcome).status})`
              : '';
      return `${event.type.replace('xstate.', '')}${suffix}`;
    })
    .join(' → ');
}

// ---------------------------------------------------------------------------------------------
// Driving a real actor

function timerDue(context: CallContext, type: string): number {
  const due = {
    'timer.max_call_duration': context.maxCallEndsAt,
    'timer.egress_start_timeout': context.egress.startDeadlineAt,
    'timer.egress_start_retry': context.egress.nextStartAt,
    'timer.egress_deadline': context.egressDeadlineAt,
    'timer.egress_poll': context.egress.nextPollAt,
  }[type];
  if (due === undefined || due === null) throw new Error(`no due time for ${type}`);
  return due;
}

/** When the step's event is a timer (or the upload child's retry timer), its due time. */
export function dueTimeOf(h: CallHarness, event: ModelEvent): number | null {
  if (event.type.startsWith('timer.')) return timerDue(h.context, event.type);
  if (event.type.startsWith('xstate.snapshot.')) {
    const child = (event.snapshot as { context: UploadContext }).context;
    const delivery = h.context.delivery;
    if (delivery !== null && child.attempt > delivery.attempt) return delivery.nextAttemptAt;
  }
  return null;
}

const EFFECT_OF: Record<string, 'startEgress' | 'stopEgress' | 'checkEgress'> = {
  startEgress: 'startEgress',
  stopEgress: 'stopEgress',
  checkEgress: 'checkEgress',
};

function asError(info: { code: string; retryable: boolean }): Error {
  return info.retryable ? retryableError(info.code) : fatalError(info.code);
}

/** Makes `event` happen to the real actor, the way it would in production. */
export async function driveCallStep(h: CallHarness, event: ModelEvent): Promise<void> {
  const { type } = event;
  if (type.startsWith('call.') || type.startsWith('livekit.')) {
    h.send({ ...(event as unknown as CallEvent), at: h.clock.now() });
    await flush();
    return;
  }
  if (type.startsWith('timer.')) {
    await h.advanceTo(timerDue(h.context, type));
    return;
  }
  // xstate.done.actor.<id>, xstate.error.actor.<id>, xstate.snapshot.<id>
  const [, kind] = type.split('.');
  const id = type.split('.').at(-1) ?? '';
  const effect = EFFECT_OF[id];
  if (effect !== undefined) {
    if (kind === 'done') await h.resolve(effect, (event.output as { result: unknown }).result);
    else
      await h.reject(effect, asError((event.error as { info: { code: string; retryable: boolean } }).info));
    return;
  }
  const crmEffect = id === 'recordingUpload' ? 'uploadRecording' : 'postCallData';
  if (kind === 'snapshot') {
    const child = (event.snapshot as { context: UploadContext }).context;
    const delivery = h.context.delivery!;
    if (child.failures > delivery.failures) await h.reject(crmEffect, retryableError('CRM_UNAVAILABLE'));
    else await h.advanceTo(delivery.nextAttemptAt ?? h.clock.now());
    return;
  }
  const output = event.output as UploadOutput;
  if (output.status === 'succeeded') {
    await h.resolve(crmEffect, crmEffect === 'uploadRecording' ? DELIVERED_RECORDING : { status: 201 });
  } else {
    await h.reject(crmEffect, fatalError(output.error.code));
  }
}

// ---------------------------------------------------------------------------------------------
// Driving a model path

/** Crashes and restores `h`; true when the restored actor opened a LiveKit client of its own. */
async function crashBefore(h: CallHarness, next: ModelEvent | null): Promise<boolean> {
  expect(h.persistedIsCurrent, 'the persisted snapshot lags behind').toBe(true);
  const before = callProjection(h.snapshot);
  const now = h.clock.now();
  const target = restartTime(now, armedTimerDues(JSON.parse(h.persistedJson)), next && dueTimeOf(h, next));
  await h.crash(target - now);
  expectEqual(callProjection(h.snapshot), before);
  expectEqual(h.problems(), []);
  return h.snapshot.hasTag('livekit');
}

/**
 * Drives a model path through a real actor (real machine, real upload child, real timers on a
 * SimulatedClock, fake effects), with a crash before every step when `crash` is set (persist →
 * JSON → stop → downtime → restore). After every step the actor must agree with the model and
 * keep the invariants:
 *
 * - state and context projection equal to the model's for that step;
 * - the LiveKit client lives exactly as long as the call: every state but `done` and `failed` is
 *   tagged `livekit`, and exactly one client is open while the actor is in a `livekit` state,
 *   none otherwise; every open is closed exactly once (a new one per RETRY and per restore into
 *   a `livekit` state); no effect ever used a closed client;
 * - no CRM step sent after its acknowledgement, none acknowledged twice, right idempotency keys;
 * - the last persisted snapshot is the actor's current one; no error reached the error observer.
 */
export async function runCallPath(events: ModelEvents, crash: boolean, coverage?: Coverage): Promise<void> {
  const h = new CallHarness({ coverage });
  const [initial, ...expected] = callReplay().along(events);
  expectEqual(callProjection(h.snapshot), initial!.projection);
  // One client for the call, one more per restore into a `livekit` state and per RETRY (in the
  // model a RETRY always settles in `uploadingRecording` or `postingData`).
  let expectedOpens = 1;
  for (const [index, event] of events.entries()) {
    if (crash && (await crashBefore(h, event))) expectedOpens += 1;
    if (event.type === 'call.retry') expectedOpens += 1;
    await driveCallStep(h, event);
    expectEqual(callProjection(h.snapshot), expected[index]!.projection, `after ${event.type}`);
    expectEqual(h.problems(), [], `after ${event.type}`);
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

export { CALL_ID };
