/**
 * Per-room fault injection: how the emulated egress and webhooks misbehave for one room.
 *
 * Behaviours are keyed by room name and may be set before the room exists or mid-call. They
 * are read at each decision point (activation, end, finalisation, each webhook), so a change
 * applies to whatever happens next. Every field is optional; an empty behaviour is a healthy
 * LiveKit deployment.
 */

/** The webhook events the emulator emits. */
export const EMULATED_WEBHOOK_EVENTS = [
  'room_started',
  'room_finished',
  'participant_joined',
  'participant_left',
  'track_published',
  'egress_started',
  'egress_updated',
  'egress_ended',
] as const;

export type EmulatedWebhookEventName = (typeof EMULATED_WEBHOOK_EVENTS)[number];

/**
 * How an egress of the room ends.
 * - `complete`: ACTIVE → (stop / room closed) → ENDING → COMPLETE with a real file.
 * - `failed`: as complete, but finalisation fails: FAILED, no file.
 * - `failed_with_file`: the file is written (and uploaded) as for complete, then the egress
 *   ends FAILED "recording ended early: connection to room failed" (503) with `location`,
 *   `size` and `duration` filled: the partial recording livekit/egress test/edge.go expects
 *   after the recorder lost the room. `failure` overrides its error fields too.
 * - `aborted`: never becomes ACTIVE; ABORTED "Start signal not received" (412) once
 *   `activateAfterMs` passes.
 * - `limit_reached`: ACTIVE for `limitReachedAfterMs`, then ENDING → LIMIT_REACHED
 *   ("Session limit reached", 413) with the file present.
 * - `stuck_ending`: reaches ENDING and never finalises (livekit/egress#647).
 * - `stuck_starting`: never becomes ACTIVE; only StopEgress or a room close ends it (ABORTED).
 */
export type EgressOutcome =
  | 'complete'
  | 'failed'
  | 'failed_with_file'
  | 'aborted'
  | 'limit_reached'
  | 'stuck_ending'
  | 'stuck_starting';

export interface EgressFailure {
  /** `EgressInfo.error`; default "pipeline frozen". */
  error?: string;
  /** `EgressInfo.error_code`; default 500. */
  errorCode?: number;
  /** `EgressInfo.details`; default "End reason: Failure". */
  details?: string;
}

/** Failure of the StartRoomCompositeEgress call itself. */
export interface StartFailure {
  /**
   * `no_response`: 503 unavailable "no response from servers" (no egress worker answered).
   * `not_connected`: 500 internal "egress not connected (redis required)".
   */
  error: 'no_response' | 'not_connected';
  /** How many start calls fail before starts succeed again; every one when omitted. */
  count?: number;
}

export type PerEvent<T> = Partial<Record<EmulatedWebhookEventName, T>>;

export interface WebhookBehaviour {
  /** Never deliver these events (all of the room's events with `true`). */
  drop?: true | EmulatedWebhookEventName[];
  /** Deliver these events twice, same body and id, as an at-least-once sender may. */
  duplicate?: true | EmulatedWebhookEventName[];
  /**
   * Wait this long before delivering (one number for every event, or per event). Deliveries
   * to one URL stay in order, so a delayed event also holds back the events behind it.
   */
  delayMs?: number | PerEvent<number>;
  /**
   * Reordering: hold back `event` until an `until` event of the same room has been emitted,
   * then deliver the held events right after it. `{ event: 'egress_updated', until:
   * 'egress_ended' }` makes egress_ended arrive before the updates; `{ event: 'egress_ended',
   * until: 'room_finished' }` makes it arrive after the room closes. Held events whose
   * `until` never comes stay held until `releaseHeldWebhooks` or close.
   */
  hold?: { event: EmulatedWebhookEventName; until: EmulatedWebhookEventName }[];
}

export interface RoomBehaviour {
  /** How the room's egresses end; `complete` by default. */
  egressOutcome?: EgressOutcome;
  /** Overrides the error fields of `failed` and `failed_with_file`. */
  failure?: EgressFailure;
  /** Makes StartRoomCompositeEgress fail for this room. */
  failStarts?: StartFailure;
  /** STARTING → ACTIVE delay for this room's egresses (emulator default otherwise). */
  activateAfterMs?: number;
  /** ENDING → terminal delay for this room's egresses (emulator default otherwise). */
  finalizeAfterMs?: number;
  /** For `limit_reached`: how long the egress stays ACTIVE before the limit hits; default 100. */
  limitReachedAfterMs?: number;
  /**
   * Length of the recorded file in seconds, instead of the time the egress was ACTIVE.
   * Makes file size and duration deterministic in tests.
   */
  recordingSeconds?: number;
  /** Webhook faults for this room's events. */
  webhooks?: WebhookBehaviour;
}

export const DEFAULT_LIMIT_REACHED_AFTER_MS = 100;

export function appliesTo(selection: true | readonly string[] | undefined, name: string): boolean {
  return selection === true || (selection?.includes(name) ?? false);
}

export function perEventValue<T>(
  value: T | PerEvent<T> | undefined,
  name: EmulatedWebhookEventName,
): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'object' && value !== null) return (value as PerEvent<T>)[name];
  return value;
}
