/**
 * The data the call and upload machines keep and exchange with their effects.
 *
 * Everything here is JSON-safe on purpose: contexts, effect inputs and effect outputs end up in
 * persisted snapshots (an `Error`, `Date` or `Map` would not survive `JSON.stringify`). Times are
 * epoch milliseconds from the injected time source (`at`, `…At`) or ISO-8601 strings where the
 * CRM document needs them. Nothing here may hold a secret: persisted snapshots are plain rows.
 */
import { toErrorInfo, type ErrorInfo } from '../errors.ts';
import type {
  CallData,
  CallDirection,
  CallStatus,
  DeliveredRecording,
  LeadRecord,
  TranscriptItem,
} from '../payload/call-data.ts';
import type { PersonaConfig } from '../payload/persona-config.ts';
import type { MissingRecordingReason } from './recording-policy.ts';

// ---------------------------------------------------------------------------------------------
// Configuration

/** Limits of one call, from config; defaults in `defaults.ts`. All durations in milliseconds. */
export interface CallLimits {
  /** A call whose agent never sends `end` (and whose room never finishes) is ended after this. */
  maxCallDurationMs: number;
  /** After the call ends, how long to wait for the egress to reach a final status. */
  egressDeadlineMs: number;
  /** Delivery target after call end (`CALLSYNC_UPLOAD_TARGET_SECONDS`); reported, not enforced. */
  deliveryTargetMs: number;
  /** Interval between `ListEgress` polls while awaiting the egress (webhooks are best-effort). */
  egressPollIntervalMs: number;
  /** Bound on one StartEgress attempt; a hung request counts as a retryable failure. */
  egressStartTimeoutMs: number;
  /**
   * Bound on one recording-upload attempt before the size allowance (the whole multipart
   * stream); the recording policy adds time per byte.
   */
  uploadAttemptTimeoutMs: number;
  /** Bound on one call-data POST attempt. */
  postAttemptTimeoutMs: number;
}

/** What the supervisor knows about a call when it creates its actor (`POST /v1/calls`). */
export interface CallDescription {
  callId: string;
  sessionId: string;
  roomName: string;
  direction: CallDirection;
  callerNumber: string;
  config: PersonaConfig;
  /** ISO-8601. */
  startedAt: string;
}

export interface CallMachineInput {
  call: CallDescription;
  /** The supervisor's clock when it created the actor (epoch ms). */
  now: number;
  limits?: Partial<CallLimits> | undefined;
}

// ---------------------------------------------------------------------------------------------
// Effect results carry the time they settled

/**
 * An effect's result stamped with the injected clock's time when it settled. The machines never
 * read a clock themselves; every time they compute with arrives on an event.
 */
export interface Stamped<T> {
  result: T;
  at: number;
}

/** What a failed effect rejects with (see `EffectFailure` in `call.actors.ts`). */
export interface StampedFailure {
  info: ErrorInfo;
  at: number;
}

export function isStampedFailure(value: unknown): value is StampedFailure {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<StampedFailure>;
  return (
    typeof candidate.at === 'number' &&
    typeof candidate.info === 'object' &&
    candidate.info !== null &&
    typeof candidate.info.code === 'string'
  );
}

/**
 * Describes whatever an effect rejected with. Effects built with `call.actors.ts` reject with a
 * stamped failure; anything else (a bare throw from a hand-written actor) gets `fallbackAt`, the
 * time the attempt began, so backoff is then measured from the attempt start (slightly early).
 */
export function failureOf(error: unknown, fallbackAt: number): StampedFailure {
  if (isStampedFailure(error)) return { info: error.info, at: error.at };
  return { info: toErrorInfo(error), at: fallbackAt };
}

// ---------------------------------------------------------------------------------------------
// LiveKit egress

/** LiveKit egress status, folded: STARTING and ENDING are `active`. */
export type EgressStatus = 'active' | 'complete' | 'failed' | 'aborted' | 'limit_reached';
export type EgressFinalStatus = Exclude<EgressStatus, 'active'>;

/**
 * The file an egress wrote, the one type for it from LiveKit's answer (`egress.client.ts`) to the
 * CRM upload. `location` is what LiveKit reports (a path or an object URL); size and duration
 * are absent until LiveKit knows them (JSON keeps an absent field absent).
 */
export interface EgressFile {
  filename: string;
  location: string;
  sizeBytes?: number | undefined;
  durationSeconds?: number | undefined;
}

/** A JSON-safe view of `EgressInfo`, from `ListEgress` or an `egress_*` webhook. */
export interface EgressOutcome {
  status: EgressStatus;
  /** For `complete` and `limit_reached`: the file written (absent when LiveKit reported none). */
  file?: EgressFile | null | undefined;
  /** LiveKit's error text for `failed`/`aborted`. */
  error?: string | undefined;
}

export function isFinalEgressStatus(status: EgressStatus): status is EgressFinalStatus {
  return status !== 'active';
}

/** Input of the `liveKitClient` actor: it opens the call's client and closes it on cleanup. */
export interface LiveKitClientInput {
  callId: string;
  roomName: string;
}

/**
 * Input of `startEgress`, which must be idempotent. The machine runs it only while it knows no
 * egress id (`egressId` is `null` today; the field is there should a later version restart a
 * known egress), so an attempt that may repeat an earlier one (`mayHaveStarted`: a later
 * attempt, or any attempt of a restored call) must first look for an active egress of the room
 * (`ListEgress({ roomName, active: true })`) and return it instead of starting another: LiveKit
 * may have started one whose id never reached the persisted snapshot. A new call's first
 * attempt cannot repeat anything, so it starts at once.
 */
export interface StartEgressInput {
  callId: string;
  roomName: string;
  egressId: string | null;
  attempt: number;
  mayHaveStarted: boolean;
}

export interface StartEgressResult {
  egressId: string;
  /** The room instance the egress records (`RM_…`), when LiveKit said. */
  roomSid?: string | undefined;
}

/**
 * Input of `stopEgress`. The implementation treats LiveKit's 412/404 ("not active"/"not found")
 * as success (`alreadyEnded: true`). The machine also tolerates any stop error: what decides the
 * next step is the egress's final status, not the stop call.
 */
export interface StopEgressInput {
  callId: string;
  roomName: string;
  egressId: string;
}

export interface StopEgressResult {
  alreadyEnded: boolean;
}

/** Input of `checkEgress` (one `ListEgress({ egressId })` poll); its result is an `EgressOutcome`. */
export interface CheckEgressInput {
  callId: string;
  roomName: string;
  egressId: string;
}

/** How the wait for the egress ended (kept in context, reported in metadata and events). */
export interface EgressSettlement {
  /** `not_started`: no egress (start gave up or never got an id); `timed_out`: deadline passed. */
  status: EgressFinalStatus | 'not_started' | 'timed_out';
  file: EgressFile | null;
  via: 'webhook' | 'poll' | 'deadline' | 'none';
  at: number;
}

// ---------------------------------------------------------------------------------------------
// CRM delivery steps

export type DeliveryStep = 'recording' | 'call-data';

/** Idempotency keys of the API contract: `<callId>:recording` and `<callId>:call-data`. */
export function idempotencyKeyOf(callId: string, step: DeliveryStep): string {
  return `${callId}:${step}`;
}

/** Multipart upload of the recording to `${CRM_BASE_URL}/upload`. */
export interface UploadRecordingRequest {
  step: 'recording';
  callId: string;
  idempotencyKey: string;
  file: EgressFile;
}

/** JSON POST of the call data to `${CRM_BASE_URL}/call-data`. */
export interface PostCallDataRequest {
  step: 'call-data';
  callId: string;
  idempotencyKey: string;
  document: CallData;
}

export type DeliveryRequest = UploadRecordingRequest | PostCallDataRequest;

export interface PostCallDataResult {
  /** The CRM's HTTP status (2xx). */
  status: number;
}

/** A CRM acknowledgement of one step. */
export type DeliveryAck =
  { step: 'recording'; recording: DeliveredRecording } | { step: 'call-data'; status: number };

/** Input of the upload machine's `deliver` effect (one attempt). */
export interface DeliveryAttemptInput {
  request: DeliveryRequest;
  attempt: number;
  /** The attempt's deadline (ms from its start): the effect bounds its own request by it. */
  timeoutMs: number;
}

// ---------------------------------------------------------------------------------------------
// Call context

export type EndReason = 'agent_end' | 'room_finished' | 'max_duration';

export interface CallEnd {
  /** ISO-8601, from the agent's `end` (or the time the end was observed). */
  endedAt: string;
  endedAtMs: number;
  status: CallStatus;
  reason: EndReason;
  /** The agent's free-text reason, when it gave one. */
  detail: string | null;
  /** When callsync observed the end. */
  at: number;
}

export interface EgressContext {
  id: string | null;
  /**
   * The room instance (`RM_…`) the call's egress records: a `room_finished` for another
   * instance of the same room name (an earlier call's, replayed or late) ends nothing.
   */
  roomSid: string | null;
  startAttempts: number;
  /** When the StartEgress attempt in flight is abandoned (absolute). */
  startDeadlineAt: number | null;
  startedAttemptAt: number | null;
  /** When the next StartEgress attempt is due (absolute), while backing off. */
  nextStartAt: number | null;
  /** True once starting gave up: the call goes on without a recording. */
  unavailable: boolean;
  lastError: ErrorInfo | null;
  /** A final status reported by webhook before the call ended (egress died mid-call). */
  reported: EgressOutcome | null;
  stopError: ErrorInfo | null;
  polls: number;
  nextPollAt: number | null;
  settlement: EgressSettlement | null;
}

/**
 * CRM attempts per step that finished (failed or succeeded), over the call's whole life: an
 * operator's retry adds to them. The journal's `attempt_failed` and `step_succeeded` entries
 * are the same attempts, one entry each.
 */
export type DeliveryAttempts = Record<DeliveryStep, number>;

export const NO_DELIVERY_ATTEMPTS: Readonly<DeliveryAttempts> = { recording: 0, 'call-data': 0 };

/** The current delivery step's progress, mirrored from the upload child (so it is persisted). */
export interface DeliveryProgress {
  step: DeliveryStep;
  /** The attempt in flight (or the last one), 1-based. */
  attempt: number;
  failures: number;
  lastError: ErrorInfo | null;
  nextAttemptAt: number | null;
}

export interface CallFailure {
  step: DeliveryStep;
  error: ErrorInfo;
  attempts: number;
  at: number;
}

export type CallOutcome = 'delivered' | 'partial';

export interface RecordingMissing {
  reason: MissingRecordingReason;
  /** The error the recording step gave up on; `null` when the egress gave no file. */
  error: ErrorInfo | null;
  at: number;
}

export interface CallContext {
  /** `CALL_MACHINE_VERSION` of the machine that created this context. */
  machineVersion: number;
  call: CallDescription;
  limits: CallLimits;
  createdAt: number;
  /** Absolute time the maximum call duration is reached. */
  maxCallEndsAt: number;
  transcript: TranscriptItem[];
  leads: LeadRecord[];
  egress: EgressContext;
  end: CallEnd | null;
  egressDeadlineAt: number | null;
  /** `end.endedAtMs + deliveryTargetMs`. */
  deliverBy: number | null;
  recording: DeliveredRecording | null;
  /** Why the call data goes without a recording (the call then ends `partial`). */
  recordingMissing: RecordingMissing | null;
  recordingAcknowledgedAt: number | null;
  callDataAcknowledgedAt: number | null;
  delivery: DeliveryProgress | null;
  attempts: DeliveryAttempts;
  failure: CallFailure | null;
  outcome: CallOutcome | null;
  /** How many times a failed call was re-driven. */
  retries: number;
  /**
   * When this context was last restored from a stored snapshot (`restoredContext`), else null:
   * an effect in flight then may already have reached LiveKit or the CRM.
   */
  restoredAt: number | null;
}

export interface CallOutput {
  callId: string;
  outcome: CallOutcome;
  recording: DeliveredRecording | null;
  endedAt: string;
  acknowledgedAt: number;
}
