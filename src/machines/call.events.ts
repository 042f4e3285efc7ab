/**
 * The events of a call actor, in dotted lower-case names.
 *
 * - `CallExternalEvent`: what the supervisor sends (HTTP API, LiveKit webhooks, operator RETRY).
 *   Every one carries `at`, the supervisor's clock when it happened: the machines never read a
 *   clock, so time enters only through events (and effect results, and timers).
 * - `CallEmitted`: what the actor emits (`actor.on(type, handler)`) for metrics and logs. The
 *   machines import neither prom-client nor pino; the supervisor subscribes. Emitted events are
 *   not replayed on restore (XState restores state, not actions): gauges must read snapshots.
 */
import type { ErrorInfo } from '../errors.ts';
import type { CallStatus, LeadRecord, TranscriptItem } from '../payload/call-data.ts';
import type { CallOutcome, DeliveryStep, EgressOutcome, EgressSettlement, EndReason } from './call.types.ts';
import type { MissingRecordingReason } from './recording-policy.ts';
import type { RetryLane } from './retry-policy.ts';

// ---------------------------------------------------------------------------------------------
// Sent by the supervisor

/** A batch from `POST /v1/calls/{id}/transcript`; ids seen before are ignored. */
export interface TranscriptEvent {
  type: 'call.transcript';
  items: TranscriptItem[];
  at: number;
}

/** `POST /v1/calls/{id}/leads`; linking the same lead again replaces its data. */
export interface LeadEvent {
  type: 'call.lead';
  leadId: LeadRecord['leadId'];
  data: LeadRecord['data'];
  at: number;
}

/** `POST /v1/calls/{id}/end`; the supervisor fills `endedAt` with the arrival time when absent. */
export interface EndEvent {
  type: 'call.end';
  /** ISO-8601; the 30 s delivery clock starts here. */
  endedAt: string;
  status: CallStatus;
  reason?: string | undefined;
  at: number;
}

/** LiveKit `egress_started`/`egress_updated` webhook, already verified and folded. */
export interface EgressUpdatedEvent {
  type: 'livekit.egress_updated';
  egressId: string;
  outcome: EgressOutcome;
  at: number;
}

/** LiveKit `egress_ended` webhook. */
export interface EgressEndedEvent {
  type: 'livekit.egress_ended';
  egressId: string;
  outcome: EgressOutcome;
  at: number;
}

/** LiveKit `room_finished` webhook for the call's room: ends a call whose agent never sent `end`. */
export interface RoomFinishedEvent {
  type: 'livekit.room_finished';
  at: number;
}

/** `POST /v1/calls/{id}/retry`: re-drives a `failed` call from the step that failed. */
export interface RetryEvent {
  type: 'call.retry';
  at: number;
}

export type CallExternalEvent =
  | TranscriptEvent
  | LeadEvent
  | EndEvent
  | EgressUpdatedEvent
  | EgressEndedEvent
  | RoomFinishedEvent
  | RetryEvent;

/** The events the restore-safe timers send back (see `timer.actor.ts`). */
export type CallTimerEventType =
  | 'timer.max_call_duration'
  | 'timer.egress_start_timeout'
  | 'timer.egress_start_retry'
  | 'timer.egress_deadline'
  | 'timer.egress_poll';

export type UploadTimerEventType = 'timer.attempt_timeout' | 'timer.retry_due';

// ---------------------------------------------------------------------------------------------
// Emitted

/** The states of the design card; `state_entered` fires on entering each. */
export type CallStateName =
  | 'recording'
  | 'inConversation'
  | 'awaitingEgress'
  | 'uploadingRecording'
  | 'postingData'
  | 'done'
  | 'failed';

export interface StateEnteredEmitted {
  type: 'call.state_entered';
  callId: string;
  state: CallStateName;
  at: number;
}

export interface EgressStartedEmitted {
  type: 'call.egress_started';
  callId: string;
  egressId: string;
  attempts: number;
  at: number;
}

export interface EgressStartFailedEmitted {
  type: 'call.egress_start_failed';
  callId: string;
  attempt: number;
  error: ErrorInfo;
  /** `null`: starting gave up, the call goes on without a recording. */
  nextAttemptAt: number | null;
  at: number;
}

export interface CallEndedEmitted {
  type: 'call.ended';
  callId: string;
  endedAt: string;
  status: CallStatus;
  reason: EndReason;
  at: number;
}

export interface EgressStopFailedEmitted {
  type: 'call.egress_stop_failed';
  callId: string;
  egressId: string;
  error: ErrorInfo;
  at: number;
}

/** The wait for the egress is over; `waitedMs` is call end → final status (egress wait metric). */
export interface EgressFinalEmitted {
  type: 'call.egress_final';
  callId: string;
  egressId: string | null;
  status: EgressSettlement['status'];
  via: EgressSettlement['via'];
  hasFile: boolean;
  waitedMs: number | null;
  at: number;
}

export interface UploadAttemptFailedEmitted {
  type: 'upload.attempt_failed';
  callId: string;
  step: DeliveryStep;
  attempt: number;
  error: ErrorInfo;
  /** `null`: no more attempts (non-retryable, or the schedule is exhausted). */
  nextAttemptAt: number | null;
  lane: RetryLane | null;
  at: number;
}

export interface UploadSucceededEmitted {
  type: 'upload.succeeded';
  callId: string;
  step: DeliveryStep;
  attempts: number;
  at: number;
}

export interface UploadFailedEmitted {
  type: 'upload.failed';
  callId: string;
  step: DeliveryStep;
  attempts: number;
  error: ErrorInfo;
  at: number;
}

/** The call data goes without a recording, and why (the call will end `partial`). */
export interface RecordingMissingEmitted {
  type: 'call.recording_missing';
  callId: string;
  reason: MissingRecordingReason;
  error: ErrorInfo | null;
  at: number;
}

/** The CRM acknowledged the call data. `deliveryMs` is call end → acknowledgement. */
export interface CallDeliveredEmitted {
  type: 'call.delivered';
  callId: string;
  outcome: CallOutcome;
  endedAt: string;
  acknowledgedAt: number;
  deliveryMs: number;
  withinTarget: boolean;
}

export interface CallFailedEmitted {
  type: 'call.failed';
  callId: string;
  step: DeliveryStep;
  reason: ErrorInfo;
  attempts: number;
  at: number;
}

export interface CallRetriedEmitted {
  type: 'call.retried';
  callId: string;
  step: DeliveryStep;
  retries: number;
  at: number;
}

/**
 * An effect that only bounds or helps the call failed (the LiveKit client could not be opened,
 * a timer broke): the call goes on, degraded. Alert on it; it means a wiring or platform bug.
 */
export interface CallFaultEmitted {
  type: 'call.fault';
  callId: string;
  /** The invoke id (`liveKitClient`, `maxCallTimer`, `egressDeadline`, …). */
  source: string;
  error: ErrorInfo;
}

/** What the call actor emits about its CRM steps, read from its upload child's snapshots and output. */
export type UploadEmitted = UploadAttemptFailedEmitted | UploadSucceededEmitted | UploadFailedEmitted;

export type CallEmitted =
  | StateEnteredEmitted
  | EgressStartedEmitted
  | EgressStartFailedEmitted
  | CallEndedEmitted
  | EgressStopFailedEmitted
  | EgressFinalEmitted
  | UploadEmitted
  | RecordingMissingEmitted
  | CallDeliveredEmitted
  | CallFailedEmitted
  | CallRetriedEmitted
  | CallFaultEmitted;
