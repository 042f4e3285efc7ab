/**
 * The few facts the callsync wiring needs from a LiveKit job, as a small interface a test can
 * build by hand (`CallJob`), the adapter from a real `JobContext` + caller participant, and the
 * pure mapping from those facts to the `POST /v1/calls` body.
 *
 * Where each fact comes from, and why:
 * - Room name: the job's room (known before `connect()`), else the connected room.
 * - Caller number: the SIP participant's `sip.phoneNumber`, the party outside LiveKit (the
 *   caller of an inbound call, the callee of an outbound one). A hidden number or a non-SIP
 *   participant gives `""`, which the supervisor accepts.
 * - Direction: what the agent says (`direction` option), else a top-level `"direction"` in the
 *   job metadata (outbound dispatches usually carry the number to dial there too), else the SIP
 *   participant: only inbound calls pass a dispatch rule, so `sip.ruleID` means inbound and its
 *   absence outbound. A non-SIP caller leaves it to the supervisor's default.
 * - Call id: proposed from the job id (`lk_<jobId>`), unique per dispatch, so log lines of the
 *   job and the supervisor match before the create is answered. The supervisor has the last
 *   word: for a room it already knows it answers that call's id, and the reporter uses it.
 */
import { ParticipantKind } from '@livekit/rtc-node';
import type { CreateCallBody } from '../supervisor/call-api.ts';
import type { CallDirection } from '../payload/call-data.ts';
import type { PersonaConfig } from '../payload/persona-config.ts';
import { AGENT_ERROR_CODES, CallsyncAgentError } from './errors.ts';
import { readPersonaConfig, type ConfigFromMetadata } from './job-config.ts';

export const SIP_PHONE_NUMBER_ATTRIBUTE = 'sip.phoneNumber';
export const SIP_DISPATCH_RULE_ATTRIBUTE = 'sip.ruleID';
/** The supervisor's limits (`src/http/schemas.ts`). */
const ID_MAX_CHARS = 200;
const CALLER_NUMBER_MAX_CHARS = 64;

export interface CallerParticipant {
  identity: string;
  /** A phone participant (LiveKit SIP). */
  isSip: boolean;
  attributes: Readonly<Record<string, string>>;
}

/** What the wiring needs from the job. `attachCallsync` builds it from a real `JobContext`. */
export interface CallJob {
  jobId: string;
  roomName: string;
  /** LiveKit's room sid, sent as the transcript's session id when known. */
  roomSid?: string | undefined;
  /** The job metadata, raw: the persona config as JSON. */
  metadata: string | undefined;
  /** The remote participant the call is with; undefined when none is known. */
  caller: CallerParticipant | undefined;
  /** Ends the job (`ctx.shutdown`). */
  shutdown(reason: string): void;
  /** Runs `callback` before the job process exits (`ctx.addShutdownCallback`). */
  addShutdownCallback?(callback: () => Promise<void>): void;
}

/** The parts of an agents-js `JobContext` the adapter reads; a real `JobContext` fits. */
export interface JobContextLike {
  readonly job: {
    readonly id: string;
    readonly metadata: string;
    readonly room?: { readonly name: string; readonly sid: string } | undefined;
  };
  readonly room: { readonly name: string | undefined };
  shutdown(reason?: string): void;
  addShutdownCallback(callback: () => Promise<void>): void;
}

/** The parts of an rtc-node `RemoteParticipant` the adapter reads; a real one fits. */
export interface ParticipantLike {
  readonly identity: string;
  readonly kind: ParticipantKind;
  readonly attributes: Record<string, string>;
}

export function callJobFromContext(ctx: JobContextLike, caller: ParticipantLike | undefined): CallJob {
  const roomName = ctx.job.room?.name || ctx.room.name || '';
  if (roomName === '') {
    throw new CallsyncAgentError(
      AGENT_ERROR_CODES.ROOM_UNKNOWN,
      'neither the job nor the room has a room name; attach after ctx.connect()',
    );
  }
  return {
    jobId: ctx.job.id,
    roomName,
    roomSid: ctx.job.room?.sid || undefined,
    metadata: ctx.job.metadata,
    caller:
      caller === undefined
        ? undefined
        : {
            identity: caller.identity,
            isSip: caller.kind === ParticipantKind.SIP,
            attributes: { ...caller.attributes },
          },
    shutdown: (reason) => ctx.shutdown(reason),
    addShutdownCallback: (callback) => ctx.addShutdownCallback(callback),
  };
}

export interface CallFactsOptions {
  /** The persona config, when the agent already has it; otherwise read from the job metadata. */
  config?: PersonaConfig | undefined;
  /** Where the config sits in the parsed metadata; by default the metadata is the config. */
  configFromMetadata?: ConfigFromMetadata | undefined;
  direction?: CallDirection | undefined;
  callerNumber?: string | undefined;
  /** When the call started; default now. */
  startedAt?: Date | undefined;
  /** The call id to propose; default `lk_<jobId>`. */
  callId?: string | undefined;
}

function sanitizeId(raw: string): string {
  return raw.replace(/[^A-Za-z0-9._:-]/g, '_').slice(0, ID_MAX_CHARS);
}

export function proposeCallId(job: Pick<CallJob, 'jobId' | 'roomName'>): string {
  return job.jobId.trim() !== '' ? sanitizeId(`lk_${job.jobId}`) : sanitizeId(`lk_room_${job.roomName}`);
}

function directionIn(value: unknown): CallDirection | undefined {
  return value === 'inbound' || value === 'outbound' ? value : undefined;
}

export function directionOfCaller(caller: CallerParticipant | undefined): CallDirection | undefined {
  if (!caller?.isSip) return undefined;
  return caller.attributes[SIP_DISPATCH_RULE_ATTRIBUTE] ? 'inbound' : 'outbound';
}

/** The `POST /v1/calls` body for this job. Throws `CallsyncAgentError` when the config is missing or invalid. */
export function createCallBodyFor(
  job: CallJob,
  options: CallFactsOptions = {},
  now: Date = new Date(),
): CreateCallBody {
  const config = options.config ?? readPersonaConfig(job.metadata, options.configFromMetadata);
  const direction =
    options.direction ??
    directionIn((config as Record<string, unknown>).direction) ??
    directionOfCaller(job.caller);
  const callerNumber = (options.callerNumber ?? job.caller?.attributes[SIP_PHONE_NUMBER_ATTRIBUTE] ?? '')
    .trim()
    .slice(0, CALLER_NUMBER_MAX_CHARS);
  return {
    roomName: job.roomName.slice(0, ID_MAX_CHARS),
    callerNumber,
    config,
    ...(direction === undefined ? {} : { direction }),
    startedAt: (options.startedAt ?? now).toISOString(),
    callId: options.callId ?? proposeCallId(job),
    ...(job.roomSid ? { sessionId: job.roomSid.slice(0, ID_MAX_CHARS) } : {}),
  };
}
