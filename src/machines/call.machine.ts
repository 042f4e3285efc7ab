/**
 * One call, from the first second of the conversation to the CRM's acknowledgement.
 *
 *   active (owns the LiveKit client: opened on entry, closed on exit or actor stop)
 *   ├─ live
 *   │  ├─ recording ─ starting ⇄ backoff  start the egress (3 attempts, then go on without;
 *   │  │                                  `egress-wait-policy.ts` has the numbers and why)
 *   │  ├─ inConversation                  collect transcript items and leads
 *   │  ├─ callEnded (transient)           `call.end`, `room_finished` or the maximum duration
 *   │  └─ awaitingEgress                  stop it, then webhook or ListEgress poll, up to a deadline
 *   │                                     (`egress-wait-policy.ts`)
 *   │     ├─ stopping → polling ⇄ waiting
 *   ├─ egressSettled (transient)          a file → upload it; otherwise post without a recording
 *   ├─ uploadingRecording                 upload machine, step `recording`; giving up on it
 *   │                                     posts without a recording (`recording-policy.ts`)
 *   ├─ preparingData (transient)          build the CRM document (`buildCallData`)
 *   └─ postingData                        upload machine, step `call-data`
 *   done (final)                          `delivered` (with recording) or `partial`
 *   failed                                the call data refused (non-retryable) or its retries
 *                                         exhausted; RETRY posts it again
 *
 * Each state is tagged with the design card's state it belongs to (`ROLE_TAGS` below says which
 * tags are not card states): the short steps `callEnded` and `egressSettled` belong to
 * `awaitingEgress`, `preparingData` to `postingData`; `active` and `live` wrap card states and
 * have none of their own.
 *
 * The LiveKit client is an invoked actor on `active` (tagged `livekit`), so the actor owns it for
 * exactly the call's lifetime: it is opened when the actor starts (entering `active`), stays open
 * through every egress effect (all invoked inside `active.live`) and the CRM steps, and is closed
 * exactly once on reaching `done` or `failed`, or when the actor stops. A RETRY of a failed call
 * re-enters `active` and so opens a new client, closed again on `done` or `failed`. (A RETRY
 * whose call data still cannot be built passes through `active` within one macrostep, so XState
 * never starts the client at all.)
 *
 * Durable by construction (see `timer.actor.ts`): every deadline and backoff is an invoked timer
 * with an absolute time; context is JSON-safe and holds no secrets; restoring restarts the
 * effect in flight, and every effect is idempotent: the egress id is in context on the very
 * transition that learns it, and StartEgress only ever runs while it is unknown, so a restarted
 * StartEgress must find the room's active egress rather than start another; CRM steps carry
 * `<callId>:recording` / `<callId>:call-data`; an acknowledged step is recorded in context on the
 * transition that receives it and is never started again.
 *
 * Pure logic: effects are named actors with placeholders, supplied through `provide()`
 * (`call.actors.ts` builds them from plain functions). Time enters only through events.
 * Change anything here or in `upload.machine.ts` → bump `CALL_MACHINE_VERSION`.
 */
import {
  assign,
  emit,
  enqueueActions,
  fromCallback,
  fromPromise,
  setup,
  type DoneActorEvent,
  type ErrorActorEvent,
  type EventObject,
  type SnapshotEvent,
  type SnapshotFrom,
} from 'xstate';
import { toErrorInfo, type ErrorInfo } from '../errors.ts';
import { buildCallData, type CallData, type TranscriptItem } from '../payload/call-data.ts';
import type {
  CallEmitted,
  CallExternalEvent,
  CallStateName,
  CallTimerEventType,
  EgressEndedEvent,
  EgressUpdatedEvent,
  EndEvent,
  LeadEvent,
  RoomFinishedEvent,
  TranscriptEvent,
} from './call.events.ts';
import {
  failureOf,
  idempotencyKeyOf,
  isFinalEgressStatus,
  NO_DELIVERY_ATTEMPTS,
  type CallContext,
  type CallEnd,
  type CallMachineInput,
  type CallOutput,
  type CheckEgressInput,
  type DeliveryAttempts,
  type DeliveryProgress,
  type DeliveryStep,
  type EgressOutcome,
  type EgressSettlement,
  type LiveKitClientInput,
  type Stamped,
  type StampedFailure,
  type StartEgressInput,
  type StartEgressResult,
  type StopEgressInput,
  type StopEgressResult,
} from './call.types.ts';
import {
  hasUsableFile,
  missingReasonOfError,
  missingReasonOfSettlement,
  recordingAttemptTimeoutMs,
  type MissingRecordingReason,
} from './recording-policy.ts';
import { DEFAULT_CALL_LIMITS } from './defaults.ts';
import {
  egressDeadlineAt,
  egressStartDeadlineAt,
  nextEgressPollAt,
  nextEgressStartAt,
  settlementOf,
  settlementWithoutWaiting,
  timedOutSettlement,
} from './egress-wait-policy.ts';
import type { TimerFired, TimerInput, TimerLogic } from './timer.actor.ts';
import { uploadMachine, type UploadContext, type UploadInput, type UploadOutput } from './upload.machine.ts';

/**
 * Stored with every persisted snapshot; a snapshot of another version is not restored as is (the
 * supervisor leaves such rows alone and logs them). 2: the call's states moved under `active`,
 * which owns the LiveKit client until `done` or `failed`; version 1 snapshots do not fit it.
 * 3: an unusable recording ends the call `partial` (`recordingMissing`), never `failed`.
 */
export const CALL_MACHINE_VERSION = 3;

/**
 * State tags. A card tag names the design card's state a node belongs to (`CallStateName`): every
 * leaf has exactly one, on itself or an ancestor, and `call.states.ts` derives the state names
 * and `callStateOf` from them. Role tags say what a state does: `livekit` (the client is open),
 * `collecting` (transcript items and leads are taken).
 */
export const ROLE_TAGS = ['livekit', 'collecting'] as const;
export type CallTag = CallStateName | (typeof ROLE_TAGS)[number];

type CallTimerEvent = { [K in CallTimerEventType]: TimerFired<K> }[CallTimerEventType];
export type CallEvent = CallExternalEvent | CallTimerEvent;
type EndTrigger = EndEvent | RoomFinishedEvent | TimerFired<'timer.max_call_duration'>;

// ---------------------------------------------------------------------------------------------
// Pure helpers

/**
 * The time an event happened, whatever carried it (see `Stamped`, `TimerFired`,
 * `CallExternalEvent`); undefined for XState's own events (its start), whose callers fall back to
 * the call's creation time.
 */
function eventTime(event: EventObject): number | undefined {
  const candidate = event as { at?: unknown; output?: unknown; error?: unknown };
  if (typeof candidate.at === 'number') return candidate.at;
  for (const carrier of [candidate.output, candidate.error]) {
    if (
      typeof carrier === 'object' &&
      carrier !== null &&
      typeof (carrier as { at?: unknown }).at === 'number'
    ) {
      return (carrier as { at: number }).at;
    }
  }
  return undefined;
}

function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

function endOf(context: CallContext, event: EndTrigger): CallEnd {
  switch (event.type) {
    case 'call.end': {
      const parsed = Date.parse(event.endedAt);
      const endedAtMs = Number.isNaN(parsed) ? event.at : parsed;
      return {
        endedAt: isoOf(endedAtMs),
        endedAtMs,
        status: event.status,
        reason: 'agent_end',
        detail: event.reason ?? null,
        at: event.at,
      };
    }
    case 'livekit.room_finished':
      return {
        endedAt: isoOf(event.at),
        endedAtMs: event.at,
        status: 'completed',
        reason: 'room_finished',
        detail: null,
        at: event.at,
      };
    case 'timer.max_call_duration':
      return {
        endedAt: isoOf(event.at),
        endedAtMs: event.at,
        status: 'completed',
        reason: 'max_duration',
        detail: `maximum call duration (${context.limits.maxCallDurationMs} ms) reached`,
        at: event.at,
      };
  }
}

/** Transcript items deduplicated by id (first wins), in timestamp order, arrival order for ties. */
export function mergeTranscript(existing: readonly TranscriptItem[], incoming: readonly TranscriptItem[]) {
  const seen = new Set(existing.map((item) => item.id));
  const added: TranscriptItem[] = [];
  for (const item of incoming) {
    if (seen.has(item.id)) continue;
    seen.add(item.id);
    added.push({ ...item });
  }
  if (added.length === 0) return existing as TranscriptItem[];
  const sortKey = (item: TranscriptItem) => {
    const ms = Date.parse(item.timestamp);
    return Number.isNaN(ms) ? Number.POSITIVE_INFINITY : ms;
  };
  // Array.prototype.sort is stable, so equal timestamps keep arrival order.
  return [...existing, ...added].sort((a, b) => sortKey(a) - sortKey(b));
}

function egressStartFailure(context: CallContext, event: EventObject): StampedFailure {
  if (event.type === 'timer.egress_start_timeout') {
    return {
      info: {
        code: 'EGRESS_START_TIMEOUT',
        message: `StartEgress attempt ${context.egress.startAttempts} took over ${context.limits.egressStartTimeoutMs} ms`,
        retryable: true,
      },
      at: (event as TimerFired).at,
    };
  }
  return failureOf(
    (event as { error?: unknown }).error,
    context.egress.startedAttemptAt ?? context.createdAt,
  );
}

/** A failed StartEgress attempt as the egress-wait policy reads it. */
function egressStartFailureOf(context: CallContext, failure: StampedFailure) {
  return {
    callId: context.call.callId,
    attempt: context.egress.startAttempts,
    retryable: failure.info.retryable,
    retryAfterMs: failure.info.retryAfterMs,
    at: failure.at,
    callEnded: context.end !== null,
  };
}

function hasRecordingFile(settlement: EgressSettlement | null): boolean {
  return settlement !== null && hasUsableFile(settlement.status, settlement.file);
}

type CallDataBuild = { ok: true; document: CallData } | { ok: false; error: ErrorInfo };

/** Builds the CRM document from what the call collected; never throws. */
export function callDataOf(context: CallContext): CallDataBuild {
  try {
    const settlement = context.egress.settlement;
    const document = buildCallData({
      ...context.call,
      endedAt: context.end?.endedAt ?? context.call.startedAt,
      status: context.end?.status ?? 'completed',
      transcript: context.transcript,
      leads: context.leads,
      recording: context.recording,
      metadata: {
        egress_id: context.egress.id,
        egress_status: settlement?.status ?? null,
        end_reason: context.end?.reason ?? null,
        recording_missing_reason: context.recordingMissing?.reason ?? null,
      },
    });
    return { ok: true, document };
  } catch (error) {
    const info = toErrorInfo(error);
    return { ok: false, error: { code: 'CALL_DATA_INVALID', message: info.message, retryable: false } };
  }
}

function deliveryInput(context: CallContext, step: DeliveryStep, now: number): UploadInput {
  const { callId } = context.call;
  const idempotencyKey = idempotencyKeyOf(callId, step);
  if (step === 'recording') {
    const file = context.egress.settlement?.file ?? { filename: '', location: '' };
    return {
      request: { step, callId, idempotencyKey, file },
      now,
      attemptTimeoutMs: recordingAttemptTimeoutMs(context.limits.uploadAttemptTimeoutMs, file.sizeBytes),
    };
  }
  const built = callDataOf(context);
  return {
    request: {
      step,
      callId,
      idempotencyKey,
      // `preparingData` lets only buildable contexts through, so the fallback is unreachable.
      document: built.ok ? built.document : ({} as CallData),
    },
    now,
    attemptTimeoutMs: context.limits.postAttemptTimeoutMs,
  };
}

function initialContext(input: CallMachineInput): CallContext {
  const limits = { ...DEFAULT_CALL_LIMITS, ...input.limits };
  const startedMs = Date.parse(input.call.startedAt);
  const callStartMs = Number.isNaN(startedMs) ? input.now : startedMs;
  return {
    machineVersion: CALL_MACHINE_VERSION,
    call: { ...input.call },
    limits,
    createdAt: input.now,
    maxCallEndsAt: callStartMs + limits.maxCallDurationMs,
    transcript: [],
    leads: [],
    egress: {
      id: null,
      roomSid: null,
      startAttempts: 1,
      startedAttemptAt: input.now,
      startDeadlineAt: egressStartDeadlineAt(input.now, limits.egressStartTimeoutMs),
      nextStartAt: null,
      unavailable: false,
      lastError: null,
      reported: null,
      stopError: null,
      polls: 0,
      nextPollAt: null,
      settlement: null,
    },
    end: null,
    egressDeadlineAt: null,
    deliverBy: null,
    recording: null,
    recordingMissing: null,
    recordingAcknowledgedAt: null,
    callDataAcknowledgedAt: null,
    delivery: null,
    attempts: { ...NO_DELIVERY_ATTEMPTS },
    failure: null,
    outcome: null,
    retries: 0,
    restoredAt: null,
  };
}

/** The call's attempts with one more finished attempt of `step`. */
function withAttempt(context: CallContext, step: DeliveryStep): DeliveryAttempts {
  return { ...context.attempts, [step]: context.attempts[step] + 1 };
}

function egressRef(context: CallContext): StopEgressInput & CheckEgressInput {
  return { callId: context.call.callId, roomName: context.call.roomName, egressId: context.egress.id ?? '' };
}

const unknownError: ErrorInfo = { code: 'UNKNOWN', message: 'unknown failure', retryable: false };

const notProvided = (name: string) =>
  new Error(`callMachine: effect "${name}" was not provided (use callMachine.provide or createCallLogic)`);

// ---------------------------------------------------------------------------------------------
// Parameter mappers and transitions used in several places. Mappers take the widest event type
// and are attached only to the events they understand.

interface MapperArgs {
  context: CallContext;
  event: EventObject;
}

const enteredParams =
  (state: CallStateName) =>
  ({ event }: MapperArgs) => ({ state, at: eventTime(event) });
const startFailureParams = ({ context, event }: MapperArgs) => ({
  failure: egressStartFailure(context, event),
});
const endParams = ({ event }: MapperArgs) => ({ trigger: event as EndTrigger });
const webhookParams = ({ event }: MapperArgs) => {
  const report = event as EgressEndedEvent | EgressUpdatedEvent;
  return { egressId: report.egressId, outcome: report.outcome };
};
const webhookSettlementParams = ({ event }: MapperArgs) => {
  const report = event as EgressEndedEvent | EgressUpdatedEvent;
  return { settlement: settlementOf(report.outcome, 'webhook', report.at) };
};
const uploadOutputParams = ({ event }: MapperArgs) => ({
  output: (event as DoneActorEvent<UploadOutput>).output,
});
const uploadChildParams = ({ event }: MapperArgs) => ({
  child: (event as SnapshotEvent<SnapshotFrom<typeof uploadMachine>>).snapshot.context,
});

/** An invoke whose failure costs nothing but a bound or a convenience: report it and stay. */
const reportFault = (source: string) =>
  ({
    actions: {
      type: 'reportFault',
      params: ({ event }: MapperArgs) => ({ source, error: (event as ErrorActorEvent).error }),
    },
  }) as const;

/** A StartEgress attempt failed (rejected, or timed out): back off, or go on without a recording. */
const egressStartAttemptFailed = [
  {
    guard: { type: 'willRetryEgressStart', params: startFailureParams },
    target: 'backoff',
    actions: { type: 'egressStartAttemptFailed', params: startFailureParams },
  },
  {
    guard: 'hasEnded',
    target: '#call.active.live.callEnded',
    actions: { type: 'egressStartGaveUp', params: startFailureParams },
  },
  {
    target: '#call.active.live.inConversation',
    actions: { type: 'egressStartGaveUp', params: startFailureParams },
  },
] as const;

/** The call ended (`call.end`, `room_finished`, maximum duration) from a state that can leave. */
const callEndedFrom = (alsoGiveUpEgressStart: boolean) =>
  ({
    target: '#call.active.live.callEnded',
    actions: [
      { type: 'endCall', params: endParams },
      ...(alsoGiveUpEgressStart ? [{ type: 'egressStartGaveUp', params: { failure: null } } as const] : []),
    ],
  }) as const;

/** The egress reported its final status by webhook while we wait for it. */
const egressReportedFinal = {
  guard: { type: 'isOwnFinalEgressReport', params: webhookParams },
  target: '#call.active.egressSettled',
  actions: { type: 'settleEgress', params: webhookSettlementParams },
} as const;

const collecting = {
  'call.transcript': {
    actions: {
      type: 'collectTranscript',
      params: ({ event }: MapperArgs) => ({ items: (event as TranscriptEvent).items }),
    },
  },
  'call.lead': {
    actions: {
      type: 'collectLead',
      params: ({ event }: MapperArgs) => {
        const lead = event as LeadEvent;
        return { leadId: lead.leadId, data: lead.data };
      },
    },
  },
} as const;

/** The egress's next poll, one interval after `at`; `polled` polls more made than counted so far. */
const nextPoll = (context: CallContext, at: number, polled: 0 | 1) => ({
  egress: {
    ...context.egress,
    polls: context.egress.polls + polled,
    nextPollAt: nextEgressPollAt(at, context.limits.egressPollIntervalMs),
  },
});

/** A step that gave up after its attempts: the last one's number, its error and its time. */
const gaveUpOutputOf = ({ event }: MapperArgs) => {
  const { output } = event as DoneActorEvent<UploadOutput>;
  return {
    step: output.step,
    attempts: output.attempts,
    error: output.status === 'failed' ? output.error : unknownError,
    at: output.at,
  };
};

/** That last attempt, counted and journaled, before the step's own outcome. */
const lastAttemptFailed = { type: 'lastAttemptFailed', params: gaveUpOutputOf } as const;

/**
 * The recording step gave up (its error, or the upload machine broke): the call data goes
 * without it (recording policy), so the call ends `partial`, never `failed`, for a recording.
 */
const recordingGaveUp = (
  error: (args: MapperArgs) => ErrorInfo,
  before: readonly [] | readonly [typeof lastAttemptFailed] = [],
) =>
  ({
    target: '#call.active.preparingData',
    actions: [
      ...before,
      {
        type: 'recordingMissing',
        params: (args: MapperArgs) => {
          const info = error(args);
          return {
            reason: missingReasonOfError(info),
            error: info,
            at: eventTime(args.event) ?? args.context.createdAt,
          };
        },
      },
    ],
  }) as const;

const recordingStepOutcome = {
  onDone: [
    {
      guard: { type: 'deliverySucceeded', params: uploadOutputParams },
      target: '#call.active.preparingData',
      actions: { type: 'deliveryAcknowledged', params: uploadOutputParams },
    },
    recordingGaveUp((args) => gaveUpOutputOf(args).error, [lastAttemptFailed]),
  ],
  onError: recordingGaveUp(({ event }) => toErrorInfo((event as ErrorActorEvent).error)),
} as const;

/** One CRM step through the upload machine; `next` is where an acknowledgement leads. */
const deliveryInvoke = (id: string, step: DeliveryStep, next: '#call.active.preparingData' | '#call.done') =>
  ({
    id,
    src: 'delivery',
    input: ({ context, event }: MapperArgs) =>
      deliveryInput(context, step, eventTime(event) ?? context.createdAt),
    // Mirrors the child's progress into this actor's context, so the supervisor persists it (a
    // child's own transitions do not change this actor's snapshot) and reports failed attempts.
    onSnapshot: {
      guard: { type: 'deliveryProgressed', params: uploadChildParams },
      actions: { type: 'deliveryProgressed', params: uploadChildParams },
    },
    onDone: [
      {
        guard: { type: 'deliverySucceeded', params: uploadOutputParams },
        target: next,
        actions: { type: 'deliveryAcknowledged', params: uploadOutputParams },
      },
      {
        target: '#call.failed',
        actions: [lastAttemptFailed, { type: 'deliveryFailed', params: gaveUpOutputOf }],
      },
    ],
    // The upload machine itself broke (a bug, not a CRM answer): fail visibly, RETRY-able.
    onError: {
      target: '#call.failed',
      actions: {
        type: 'deliveryFailed',
        params: ({ context, event }: MapperArgs) => ({
          step,
          error: toErrorInfo((event as ErrorActorEvent).error),
          attempts: context.delivery?.attempt ?? 0,
          at: context.egress.settlement?.at ?? context.createdAt,
        }),
      },
    },
  }) as const;

// ---------------------------------------------------------------------------------------------
// The machine

export const callMachine = setup({
  types: {
    input: {} as CallMachineInput,
    context: {} as CallContext,
    events: {} as CallEvent,
    emitted: {} as CallEmitted,
    output: {} as CallOutput,
    tags: {} as CallTag,
  },
  actors: {
    /** Opens the call's LiveKit client; its cleanup closes it. Invoked on `active`, nowhere else. */
    liveKitClient: fromCallback<EventObject, LiveKitClientInput>(() => {
      throw notProvided('liveKitClient');
    }),
    startEgress: fromPromise<Stamped<StartEgressResult>, StartEgressInput>(() =>
      Promise.reject(notProvided('startEgress')),
    ),
    stopEgress: fromPromise<Stamped<StopEgressResult>, StopEgressInput>(() =>
      Promise.reject(notProvided('stopEgress')),
    ),
    checkEgress: fromPromise<Stamped<EgressOutcome>, CheckEgressInput>(() =>
      Promise.reject(notProvided('checkEgress')),
    ),
    timer: fromCallback<EventObject, TimerInput>(() => {
      throw notProvided('timer');
    }) as TimerLogic,
    /** One CRM step with retries: the upload machine, its own effects provided on it. */
    delivery: uploadMachine,
  },
  guards: {
    hasEnded: ({ context }) => context.end !== null,
    notEnded: ({ context }) => context.end === null,
    willRetryEgressStart: ({ context }, params: { failure: StampedFailure }) =>
      nextEgressStartAt(egressStartFailureOf(context, params.failure)) !== null,
    /** An egress is running and nobody has reported its end yet. */
    egressNeedsAwaiting: ({ context }) => context.egress.id !== null && context.egress.reported === null,
    isOwnFinalEgressReport: ({ context }, params: { egressId: string; outcome: EgressOutcome }) =>
      params.egressId === context.egress.id && isFinalEgressStatus(params.outcome.status),
    isFinalOutcome: (_, params: { outcome: EgressOutcome }) => isFinalEgressStatus(params.outcome.status),
    egressAlreadyEnded: (_, params: { result: StopEgressResult }) => params.result.alreadyEnded,
    hasRecordingFile: ({ context }) => hasRecordingFile(context.egress.settlement),
    deliverySucceeded: (_, params: { output: UploadOutput }) => params.output.status === 'succeeded',
    /** The upload child failed an attempt or began another since we last mirrored it. */
    deliveryProgressed: ({ context }, params: { child: UploadContext }) =>
      params.child.failures !== context.delivery?.failures ||
      params.child.attempt !== context.delivery.attempt,
    callDataBuilds: ({ context }) => callDataOf(context).ok,
  },
  actions: {
    reportFault: emit(({ context }, params: { source: string; error: unknown }) => ({
      type: 'call.fault' as const,
      callId: context.call.callId,
      source: params.source,
      error: toErrorInfo(params.error),
    })),
    emitStateEntered: emit(({ context }, params: { state: CallStateName; at: number | undefined }) => ({
      type: 'call.state_entered' as const,
      callId: context.call.callId,
      state: params.state,
      at: params.at ?? context.createdAt,
    })),

    // --- collecting
    collectTranscript: assign(({ context }, params: { items: TranscriptItem[] }) => ({
      transcript: mergeTranscript(context.transcript, params.items),
    })),
    collectLead: assign(({ context }, params: { leadId: string; data: Record<string, unknown> }) => ({
      // Linking a lead again replaces its data and makes it the most recent one.
      leads: [
        ...context.leads.filter((lead) => lead.leadId !== params.leadId),
        { leadId: params.leadId, data: { ...params.data } },
      ],
    })),

    // --- egress start
    egressStarted: enqueueActions(({ context, enqueue }, params: { started: Stamped<StartEgressResult> }) => {
      const { egressId, roomSid } = params.started.result;
      // First thing on the transition that learns it: the id is in context before anything else.
      enqueue.assign({
        egress: {
          ...context.egress,
          id: egressId,
          roomSid: roomSid ?? null,
          startDeadlineAt: null,
          lastError: null,
        },
      });
      enqueue.emit({
        type: 'call.egress_started',
        callId: context.call.callId,
        egressId,
        attempts: context.egress.startAttempts,
        at: params.started.at,
      });
    }),
    egressStartAttemptFailed: enqueueActions(({ context, enqueue }, params: { failure: StampedFailure }) => {
      const { failure } = params;
      const attempt = context.egress.startAttempts;
      // Only reached when `willRetryEgressStart` found a next attempt.
      const nextStartAt = nextEgressStartAt(egressStartFailureOf(context, failure)) ?? failure.at;
      enqueue.assign({
        egress: { ...context.egress, startDeadlineAt: null, lastError: failure.info, nextStartAt },
      });
      enqueue.emit({
        type: 'call.egress_start_failed',
        callId: context.call.callId,
        attempt,
        error: failure.info,
        nextAttemptAt: nextStartAt,
        at: failure.at,
      });
    }),
    egressStartGaveUp: enqueueActions(({ context, enqueue }, params: { failure: StampedFailure | null }) => {
      const { failure } = params;
      enqueue.assign({
        egress: {
          ...context.egress,
          startDeadlineAt: null,
          nextStartAt: null,
          unavailable: true,
          lastError: failure?.info ?? context.egress.lastError,
        },
      });
      if (failure === null) return;
      enqueue.emit({
        type: 'call.egress_start_failed',
        callId: context.call.callId,
        attempt: context.egress.startAttempts,
        error: failure.info,
        nextAttemptAt: null,
        at: failure.at,
      });
    }),
    beginEgressStartAttempt: assign(({ context }, params: { at: number }) => ({
      egress: {
        ...context.egress,
        startAttempts: context.egress.startAttempts + 1,
        startedAttemptAt: params.at,
        startDeadlineAt: egressStartDeadlineAt(params.at, context.limits.egressStartTimeoutMs),
        nextStartAt: null,
      },
    })),

    // --- call end and the egress's final status
    endCall: enqueueActions(({ context, enqueue }, params: { trigger: EndTrigger }) => {
      const end = endOf(context, params.trigger);
      enqueue.assign({
        end,
        egressDeadlineAt: egressDeadlineAt(end.at, context.limits.egressDeadlineMs),
        deliverBy: end.endedAtMs + context.limits.deliveryTargetMs,
      });
      enqueue.emit({
        type: 'call.ended',
        callId: context.call.callId,
        endedAt: end.endedAt,
        status: end.status,
        reason: end.reason,
        at: end.at,
      });
    }),
    recordReportedOutcome: assign(({ context }, params: { outcome: EgressOutcome }) => ({
      egress: { ...context.egress, reported: params.outcome },
    })),
    egressStopFailed: enqueueActions(({ context, enqueue }, params: { failure: StampedFailure }) => {
      enqueue.assign({ egress: { ...context.egress, stopError: params.failure.info } });
      enqueue.emit({
        type: 'call.egress_stop_failed',
        callId: context.call.callId,
        egressId: context.egress.id ?? '',
        error: params.failure.info,
        at: params.failure.at,
      });
    }),
    /** After a stop LiveKit took: no poll has been made yet. */
    scheduleFirstPoll: assign(({ context }, params: { at: number }) => nextPoll(context, params.at, 0)),
    /** After a poll's answer or failure. */
    schedulePoll: assign(({ context }, params: { at: number }) => nextPoll(context, params.at, 1)),
    settleEgress: enqueueActions(({ context, enqueue }, params: { settlement: EgressSettlement }) => {
      const { settlement } = params;
      enqueue.assign({
        egress: { ...context.egress, unavailable: context.egress.id === null, nextPollAt: null, settlement },
      });
      enqueue.emit({
        type: 'call.egress_final',
        callId: context.call.callId,
        egressId: context.egress.id,
        status: settlement.status,
        via: settlement.via,
        hasFile: hasRecordingFile(settlement),
        waitedMs: context.end === null ? null : Math.max(0, settlement.at - context.end.at),
        at: settlement.at,
      });
    }),

    // --- delivery
    recordingMissing: enqueueActions(
      (
        { context, enqueue },
        params: { reason: MissingRecordingReason; error: ErrorInfo | null; at: number },
      ) => {
        enqueue.assign({ recordingMissing: params, delivery: null });
        enqueue.emit({
          type: 'call.recording_missing',
          callId: context.call.callId,
          reason: params.reason,
          error: params.error,
          at: params.at,
        });
      },
    ),
    beginDelivery: assign((_, params: { step: DeliveryStep }) => ({
      delivery: { step: params.step, attempt: 1, failures: 0, lastError: null, nextAttemptAt: null },
    })),
    deliveryProgressed: enqueueActions(({ context, enqueue }, params: { child: UploadContext }) => {
      const { child } = params;
      const failure = child.lastFailure;
      const delivery: DeliveryProgress = {
        step: child.request.step,
        attempt: child.attempt,
        failures: child.failures,
        lastError: failure?.error ?? null,
        nextAttemptAt: failure?.nextAttemptAt ?? null,
      };
      if (failure === null || child.failures <= (context.delivery?.failures ?? 0)) {
        enqueue.assign({ delivery });
        return;
      }
      enqueue.assign({ delivery, attempts: withAttempt(context, child.request.step) });
      enqueue.emit({
        type: 'upload.attempt_failed',
        callId: context.call.callId,
        step: child.request.step,
        attempt: failure.attempt,
        error: failure.error,
        nextAttemptAt: failure.nextAttemptAt,
        lane: failure.lane,
        at: failure.at,
      });
    }),
    deliveryAcknowledged: enqueueActions(({ context, enqueue }, params: { output: UploadOutput }) => {
      const { output } = params;
      if (output.status !== 'succeeded') return;
      const attempts = withAttempt(context, output.ack.step);
      if (output.ack.step === 'recording') {
        enqueue.assign({
          recording: output.ack.recording,
          recordingAcknowledgedAt: output.at,
          delivery: null,
          attempts,
        });
      } else {
        enqueue.assign({
          callDataAcknowledgedAt: output.at,
          outcome: context.recording === null ? 'partial' : 'delivered',
          delivery: null,
          attempts,
        });
      }
      enqueue.emit({
        type: 'upload.succeeded',
        callId: context.call.callId,
        step: output.step,
        attempts: output.attempts,
        at: output.at,
      });
    }),
    /** The step gave up on an attempt's answer (not on a broken machine): one more attempt. */
    lastAttemptFailed: enqueueActions(
      (
        { context, enqueue },
        params: { step: DeliveryStep; attempts: number; error: ErrorInfo; at: number },
      ) => {
        const { step, attempts: attempt, error, at } = params;
        enqueue.assign({ attempts: withAttempt(context, step) });
        enqueue.emit({
          type: 'upload.attempt_failed',
          callId: context.call.callId,
          step,
          attempt,
          error,
          nextAttemptAt: null,
          lane: null,
          at,
        });
      },
    ),
    deliveryFailed: enqueueActions(
      (
        { context, enqueue },
        params: { step: DeliveryStep; error: ErrorInfo; attempts: number; at: number },
      ) => {
        const { step, error, attempts, at } = params;
        enqueue.assign({
          failure: { step, error, attempts, at },
          delivery:
            context.delivery === null ? null : { ...context.delivery, lastError: error, nextAttemptAt: null },
        });
        enqueue.emit({ type: 'upload.failed', callId: context.call.callId, step, attempts, error, at });
      },
    ),
    emitFailed: emit(({ context }) => ({
      type: 'call.failed' as const,
      callId: context.call.callId,
      step: context.failure?.step ?? 'call-data',
      reason: context.failure?.error ?? unknownError,
      attempts: context.failure?.attempts ?? 0,
      at: context.failure?.at ?? context.createdAt,
    })),
    emitDelivered: emit(({ context }) => {
      const acknowledgedAt = context.callDataAcknowledgedAt ?? context.createdAt;
      const endedAtMs = context.end?.endedAtMs ?? context.createdAt;
      return {
        type: 'call.delivered' as const,
        callId: context.call.callId,
        outcome: context.outcome ?? 'partial',
        endedAt: context.end?.endedAt ?? isoOf(endedAtMs),
        acknowledgedAt,
        deliveryMs: Math.max(0, acknowledgedAt - endedAtMs),
        withinTarget: context.deliverBy !== null && acknowledgedAt <= context.deliverBy,
      };
    }),
    retry: enqueueActions(({ context, enqueue }, params: { step: DeliveryStep; at: number }) => {
      enqueue.assign({ retries: context.retries + 1, failure: null, delivery: null });
      enqueue.emit({
        type: 'call.retried',
        callId: context.call.callId,
        step: params.step,
        retries: context.retries + 1,
        at: params.at,
      });
    }),
  },
}).createMachine({
  id: 'call',
  version: String(CALL_MACHINE_VERSION),
  context: ({ input }) => initialContext(input),
  initial: 'active',
  states: {
    // The call's whole lifetime up to `done` or `failed`: the LiveKit client is open throughout.
    active: {
      tags: ['livekit'],
      invoke: {
        id: 'liveKitClient',
        src: 'liveKitClient',
        input: ({ context }) => ({ callId: context.call.callId, roomName: context.call.roomName }),
        // Opening failed: every egress effect then fails too, and the call goes on without a recording.
        onError: reportFault('liveKitClient'),
      },
      initial: 'live',
      states: {
        live: {
          tags: ['collecting'],
          on: collecting,
          initial: 'recording',
          states: {
            recording: {
              tags: ['recording'],
              entry: { type: 'emitStateEntered', params: enteredParams('recording') },
              invoke: {
                id: 'maxCallTimer',
                src: 'timer',
                input: ({ context }) => ({ at: context.maxCallEndsAt, event: 'timer.max_call_duration' }),
                onError: reportFault('maxCallTimer'),
              },
              initial: 'starting',
              states: {
                starting: {
                  invoke: [
                    {
                      id: 'startEgress',
                      src: 'startEgress',
                      input: ({ context }) => ({
                        callId: context.call.callId,
                        roomName: context.call.roomName,
                        egressId: context.egress.id,
                        attempt: context.egress.startAttempts,
                        mayHaveStarted: context.egress.startAttempts > 1 || context.restoredAt !== null,
                      }),
                      onDone: [
                        {
                          guard: 'hasEnded',
                          target: '#call.active.live.callEnded',
                          actions: {
                            type: 'egressStarted',
                            params: ({ event }) => ({ started: event.output }),
                          },
                        },
                        {
                          target: '#call.active.live.inConversation',
                          actions: {
                            type: 'egressStarted',
                            params: ({ event }) => ({ started: event.output }),
                          },
                        },
                      ],
                      onError: egressStartAttemptFailed,
                    },
                    {
                      id: 'egressStartTimeout',
                      src: 'timer',
                      input: ({ context }) => ({
                        at: context.egress.startDeadlineAt ?? context.createdAt,
                        event: 'timer.egress_start_timeout',
                      }),
                      onError: reportFault('egressStartTimeout'),
                    },
                  ],
                  on: {
                    'timer.egress_start_timeout': egressStartAttemptFailed,
                    // The call ended while StartEgress is in flight: let that attempt settle (it is
                    // bounded by its timeout) so an egress it started gets stopped, not orphaned.
                    'call.end': { guard: 'notEnded', actions: { type: 'endCall', params: endParams } },
                    'livekit.room_finished': {
                      guard: 'notEnded',
                      actions: { type: 'endCall', params: endParams },
                    },
                    'timer.max_call_duration': {
                      guard: 'notEnded',
                      actions: { type: 'endCall', params: endParams },
                    },
                  },
                },
                backoff: {
                  invoke: {
                    id: 'egressStartRetry',
                    src: 'timer',
                    input: ({ context }) => ({
                      at: context.egress.nextStartAt ?? context.createdAt,
                      event: 'timer.egress_start_retry',
                    }),
                    // A broken timer retries at once: still bounded by EGRESS_START_MAX_ATTEMPTS
                    // (egress-wait-policy.ts).
                    onError: {
                      target: 'starting',
                      actions: [
                        {
                          type: 'beginEgressStartAttempt',
                          params: ({ context }) => ({ at: context.egress.nextStartAt ?? context.createdAt }),
                        },
                        reportFault('egressStartRetry').actions,
                      ],
                    },
                  },
                  on: {
                    'timer.egress_start_retry': {
                      target: 'starting',
                      actions: { type: 'beginEgressStartAttempt', params: ({ event }) => ({ at: event.at }) },
                    },
                    'call.end': callEndedFrom(true),
                    'livekit.room_finished': callEndedFrom(true),
                    'timer.max_call_duration': callEndedFrom(true),
                  },
                },
              },
            },
            inConversation: {
              tags: ['inConversation'],
              entry: { type: 'emitStateEntered', params: enteredParams('inConversation') },
              invoke: {
                id: 'maxCallTimer',
                src: 'timer',
                input: ({ context }) => ({ at: context.maxCallEndsAt, event: 'timer.max_call_duration' }),
                onError: reportFault('maxCallTimer'),
              },
              on: {
                'call.end': callEndedFrom(false),
                'livekit.room_finished': callEndedFrom(false),
                'timer.max_call_duration': callEndedFrom(false),
                // The egress died mid-call (or hit its limit): remember it; nothing to stop later.
                'livekit.egress_ended': {
                  guard: { type: 'isOwnFinalEgressReport', params: webhookParams },
                  actions: {
                    type: 'recordReportedOutcome',
                    params: ({ event }) => ({ outcome: event.outcome }),
                  },
                },
                'livekit.egress_updated': {
                  guard: { type: 'isOwnFinalEgressReport', params: webhookParams },
                  actions: {
                    type: 'recordReportedOutcome',
                    params: ({ event }) => ({ outcome: event.outcome }),
                  },
                },
              },
            },
            callEnded: {
              tags: ['awaitingEgress'],
              always: [
                { guard: 'egressNeedsAwaiting', target: 'awaitingEgress' },
                {
                  target: '#call.active.egressSettled',
                  actions: {
                    type: 'settleEgress',
                    params: ({ context }) => ({
                      settlement: settlementWithoutWaiting(
                        context.egress.reported,
                        context.end?.at ?? context.createdAt,
                      ),
                    }),
                  },
                },
              ],
            },
            awaitingEgress: {
              tags: ['awaitingEgress'],
              entry: { type: 'emitStateEntered', params: enteredParams('awaitingEgress') },
              invoke: {
                id: 'egressDeadline',
                src: 'timer',
                input: ({ context }) => ({
                  at: context.egressDeadlineAt ?? context.createdAt,
                  event: 'timer.egress_deadline',
                }),
                onError: reportFault('egressDeadline'),
              },
              on: {
                'livekit.egress_ended': egressReportedFinal,
                'livekit.egress_updated': egressReportedFinal,
                'timer.egress_deadline': {
                  target: '#call.active.egressSettled',
                  actions: {
                    type: 'settleEgress',
                    params: ({ event }) => ({ settlement: timedOutSettlement(event.at) }),
                  },
                },
              },
              initial: 'stopping',
              states: {
                stopping: {
                  invoke: {
                    id: 'stopEgress',
                    src: 'stopEgress',
                    input: ({ context }) => egressRef(context),
                    onDone: [
                      // LiveKit says it had already ended: its final status is there to read now.
                      {
                        guard: {
                          type: 'egressAlreadyEnded',
                          params: ({ event }) => ({ result: event.output.result }),
                        },
                        target: 'polling',
                      },
                      // Stopped: it is ENDING for a while, and its egress_ended webhook usually
                      // comes first. The first poll is one interval after the stop's answer.
                      {
                        target: 'waiting',
                        actions: {
                          type: 'scheduleFirstPoll',
                          params: ({ event }) => ({ at: event.output.at }),
                        },
                      },
                    ],
                    // However stopping failed, the egress's final status decides: poll on.
                    onError: {
                      target: 'polling',
                      actions: {
                        type: 'egressStopFailed',
                        params: ({ context, event }) => ({
                          failure: failureOf(event.error, context.end?.at ?? context.createdAt),
                        }),
                      },
                    },
                  },
                },
                polling: {
                  invoke: {
                    id: 'checkEgress',
                    src: 'checkEgress',
                    input: ({ context }) => egressRef(context),
                    onDone: [
                      {
                        guard: {
                          type: 'isFinalOutcome',
                          params: ({ event }) => ({ outcome: event.output.result }),
                        },
                        target: '#call.active.egressSettled',
                        actions: {
                          type: 'settleEgress',
                          params: ({ event }) => ({
                            settlement: settlementOf(event.output.result, 'poll', event.output.at),
                          }),
                        },
                      },
                      {
                        target: 'waiting',
                        actions: { type: 'schedulePoll', params: ({ event }) => ({ at: event.output.at }) },
                      },
                    ],
                    onError: {
                      target: 'waiting',
                      actions: {
                        type: 'schedulePoll',
                        params: ({ context, event }) => ({
                          at: failureOf(event.error, context.end?.at ?? context.createdAt).at,
                        }),
                      },
                    },
                  },
                },
                waiting: {
                  invoke: {
                    id: 'egressPoll',
                    src: 'timer',
                    input: ({ context }) => ({
                      at: context.egress.nextPollAt ?? context.createdAt,
                      event: 'timer.egress_poll',
                    }),
                    onError: reportFault('egressPoll'),
                  },
                  on: { 'timer.egress_poll': { target: 'polling' } },
                },
              },
            },
          },
        },
        egressSettled: {
          tags: ['awaitingEgress'],
          always: [
            { guard: 'hasRecordingFile', target: 'uploadingRecording' },
            {
              target: 'preparingData',
              actions: {
                type: 'recordingMissing',
                params: ({ context }) => {
                  const settlement = context.egress.settlement;
                  return {
                    reason:
                      settlement === null ? 'egress_not_started' : missingReasonOfSettlement(settlement),
                    // An egress that never started: why the last StartEgress attempt failed.
                    error: context.egress.id === null ? context.egress.lastError : null,
                    at: settlement?.at ?? context.createdAt,
                  };
                },
              },
            },
          ],
        },
        uploadingRecording: {
          tags: ['uploadingRecording', 'collecting'],
          entry: [
            { type: 'emitStateEntered', params: enteredParams('uploadingRecording') },
            { type: 'beginDelivery', params: { step: 'recording' } },
          ],
          on: collecting,
          invoke: {
            ...deliveryInvoke('recordingUpload', 'recording', '#call.active.preparingData'),
            ...recordingStepOutcome,
          },
        },
        preparingData: {
          tags: ['postingData'],
          always: [
            { guard: 'callDataBuilds', target: 'postingData' },
            {
              target: '#call.failed',
              actions: {
                type: 'deliveryFailed',
                params: ({ context, event }) => {
                  const built = callDataOf(context);
                  return {
                    step: 'call-data',
                    error: built.ok ? unknownError : built.error,
                    attempts: 0,
                    at: eventTime(event) ?? context.createdAt,
                  };
                },
              },
            },
          ],
        },
        postingData: {
          tags: ['postingData'],
          entry: [
            { type: 'emitStateEntered', params: enteredParams('postingData') },
            { type: 'beginDelivery', params: { step: 'call-data' } },
          ],
          invoke: deliveryInvoke('callDataPost', 'call-data', '#call.done'),
        },
      },
    },
    done: {
      tags: ['done'],
      type: 'final',
      entry: [{ type: 'emitStateEntered', params: enteredParams('done') }, 'emitDelivered'],
    },
    failed: {
      tags: ['failed'],
      entry: [{ type: 'emitStateEntered', params: enteredParams('failed') }, 'emitFailed'],
      on: {
        // Only the call data can fail a call (recording policy), so a RETRY posts it again.
        'call.retry': {
          target: '#call.active.preparingData',
          actions: { type: 'retry', params: ({ event }) => ({ step: 'call-data', at: event.at }) },
        },
      },
    },
  },
  output: ({ context }) => ({
    callId: context.call.callId,
    outcome: context.outcome ?? 'partial',
    recording: context.recording,
    endedAt: context.end?.endedAt ?? context.call.startedAt,
    acknowledgedAt: context.callDataAcknowledgedAt ?? context.createdAt,
  }),
});

export type CallMachine = typeof callMachine;
