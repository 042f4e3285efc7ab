/**
 * The emulator's observable events, for tests and tools to await instead of sleeping or
 * polling. Payloads are snapshots (cloned protobuf messages): later changes in the emulator
 * never show through an event already received.
 */
import type { EgressInfo, ParticipantInfo, Room, RoomEndReason, WebhookEvent } from '@livekit/protocol';
import type { EgressStorage } from './egress-storage.ts';
import type { EmulatedWebhookEventName } from './room-behaviour.ts';

export interface EmittedWebhook {
  id: string;
  name: EmulatedWebhookEventName;
  roomName: string;
  /** The exact bytes every target receives. */
  body: string;
  event: WebhookEvent;
}

export interface WebhookDeliveryRef {
  url: string;
  id: string;
  name: EmulatedWebhookEventName;
  roomName: string;
}

export type LiveKitEmulatorEventMap = {
  /** A room was created (by the API, the control API, or a participant joining). */
  'room:started': [{ room: Room }];
  /** A room closed (deleted, departure/empty timeout, or `closeRoom`). */
  'room:finished': [{ room: Room; reason: RoomEndReason }];
  'participant:joined': [{ room: Room; participant: ParticipantInfo }];
  'participant:left': [{ room: Room; participant: ParticipantInfo }];
  /** Any change of an egress: creation and every status change. */
  'egress:updated': [{ info: EgressInfo }];
  /**
   * The egress file is in its store (the egress is still ENDING). `storage` holds the
   * unredacted settings: in-process only, never served over HTTP.
   */
  'egress:uploaded': [{ egressId: string; storage: EgressStorage; location: string; sizeBytes: number }];
  /** The store refused the upload; the egress is about to end FAILED with `error`. */
  'egress:upload-failed': [{ egressId: string; storage: EgressStorage; error: string }];
  /** A webhook event was produced (before faults are applied). */
  'webhook:emitted': [EmittedWebhook];
  /** A `drop` behaviour swallowed the event. */
  'webhook:dropped': [EmittedWebhook];
  /** A `hold` behaviour is keeping the event back. */
  'webhook:held': [EmittedWebhook];
  /** A `delayMs` behaviour is waiting before delivering to `url`. */
  'webhook:delayed': [WebhookDeliveryRef & { delayMs: number }];
  /** A target answered 2xx. `duplicate` marks the second copy of a duplicated event. */
  'webhook:delivered': [WebhookDeliveryRef & { attempt: number; status: number; duplicate: boolean }];
  /** One attempt failed (non-2xx or network error); a retry may follow. */
  'webhook:attempt-failed': [WebhookDeliveryRef & { attempt: number; status?: number; error?: string }];
  /** Every attempt failed; the event is lost for this target, as with LiveKit. */
  'webhook:failed': [WebhookDeliveryRef & { attempts: number; error: string }];
  /** A Twirp call was answered. */
  'twirp:request': [{ service: string; method: string; status: number; code?: string }];
  /** An unexpected internal error (also logged); the emulator keeps running. */
  'emulator:error': [{ error: unknown; context: string }];
};
