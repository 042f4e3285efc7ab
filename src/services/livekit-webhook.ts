/**
 * LiveKit webhook verification, as livekit-server-sdk's `WebhookReceiver` checks it, with the
 * token verified synchronously by fast-jwt over node:crypto.
 *
 * Policy: a webhook is trusted only if its `Authorization` header is a JWT signed (HS256) with
 * our API secret, issued by our API key, unexpired and already valid (10 s of clock skew
 * allowed), whose `sha256` claim matches the SHA-256 of the exact bytes received. So the raw
 * body must be passed as received (never a re-serialised object), and the header verbatim:
 * LiveKit sends the bare JWT, no `Bearer ` prefix. A bad webhook is a `WEBHOOK_UNAUTHORIZED`
 * error and changes nothing.
 *
 * Why not the SDK's receiver: it verifies through WebCrypto (jose, `crypto.subtle.digest`),
 * about 179 µs of CPU per webhook here against about 33 µs for the same checks over node:crypto,
 * and LiveKit sends about twelve webhooks per call. The events callsync may act on are decoded
 * by the SDK's own `WebhookEvent.fromJson`, as its receiver does (`DECODED_EVENTS`).
 *
 * Verified events are reduced to the JSON-safe facts callsync acts on.
 */
import { createHash } from 'node:crypto';
import { createVerifier } from 'fast-jwt';
import { WebhookEvent } from 'livekit-server-sdk';
import { CallsyncError } from '../errors.ts';
import { toEgressSnapshot, type EgressSnapshot } from './egress.client.ts';

/** How far LiveKit's clock may be from ours when checking the token's times. */
export const WEBHOOK_CLOCK_TOLERANCE_SECONDS = 10;
/** LiveKit signs webhooks with HS256 only (`auth.AccessToken` in livekit/protocol). */
const WEBHOOK_ALGORITHMS = ['HS256'] as const;
const MS_PER_SECOND = 1_000;

export interface LiveKitWebhook {
  /** LiveKit's event id ("EV_…"); the same event delivered twice has the same id. */
  id: string;
  event: string;
  /** Unix seconds, from LiveKit. */
  createdAt: number;
  roomName: string | null;
  /**
   * The room instance (`RM_…`): a room name is reused by later calls, its sid never is. From
   * the event's room, or the egress's `roomId`.
   */
  roomSid: string | null;
  /** Present on egress_started / egress_updated / egress_ended. */
  egress: EgressSnapshot | null;
  /** Present on participant events. */
  participantIdentity: string | null;
}

export class WebhookError extends CallsyncError {}

type EventJson = Parameters<typeof WebhookEvent.fromJson>[0];

export class LiveKitWebhookVerifier {
  readonly #verifyToken: (token: string) => { sha256?: unknown };

  constructor(options: { apiKey: string; apiSecret: string }) {
    this.#verifyToken = createVerifier({
      key: options.apiSecret,
      algorithms: [...WEBHOOK_ALGORITHMS],
      allowedIss: options.apiKey,
      // A token LiveKit made always has them; one without is refused, not waved through.
      requiredClaims: ['iss', 'exp', 'sha256'],
      clockTolerance: WEBHOOK_CLOCK_TOLERANCE_SECONDS * MS_PER_SECOND,
    });
  }

  /** Verifies and decodes a webhook. `rawBody` must be the exact bytes received, as UTF-8. */
  verify(rawBody: string, authorization: string | undefined): LiveKitWebhook {
    if (!authorization) throw unauthorized('LiveKit webhook without an Authorization header');
    let claims;
    try {
      claims = this.#verifyToken(authorization);
    } catch (error) {
      // fast-jwt's messages name the failed check (signature, issuer, expiry, a missing claim)
      // and never echo the token.
      throw unauthorized(
        `LiveKit webhook rejected: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    if (claims.sha256 !== createHash('sha256').update(rawBody, 'utf8').digest('base64')) {
      throw unauthorized('LiveKit webhook rejected: the sha256 of the body does not match its token');
    }
    let json: unknown;
    try {
      json = JSON.parse(rawBody);
    } catch (error) {
      throw notAnEvent(error);
    }
    if (!isRecord(json) || typeof json.event !== 'string') throw notAnEvent('no event name');
    if (!DECODED_EVENTS.has(json.event)) return briefOf(json, json.event);
    let event;
    try {
      event = WebhookEvent.fromJson(json as EventJson, { ignoreUnknownFields: true });
    } catch (error) {
      throw notAnEvent(error);
    }
    return {
      id: event.id,
      event: event.event,
      createdAt: Number(event.createdAt),
      roomName: event.room?.name || event.egressInfo?.roomName || null,
      roomSid: event.room?.sid || event.egressInfo?.roomId || null,
      egress: event.egressInfo ? toEgressSnapshot(event.egressInfo) : null,
      participantIdentity: event.participant?.identity ?? null,
    };
  }
}

/**
 * The only LiveKit webhook events that can move a call: a room that finished, and an egress's
 * status, final only in `egress_updated` or `egress_ended` (`egress_started` is always
 * STARTING). They are decoded by the SDK's `WebhookEvent.fromJson`; the others (participants,
 * tracks, room_started…) only need their name and ids, read from the JSON as it is: protobuf's
 * decoding was a third of a webhook's verification cost. LiveKit's
 * `webhook.filter_params.include_events` can be set to this list.
 */
export const CALL_WEBHOOK_EVENTS = ['room_finished', 'egress_updated', 'egress_ended'] as const;

const DECODED_EVENTS: ReadonlySet<string> = new Set(CALL_WEBHOOK_EVENTS);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const textOf = (value: unknown): string | null => (typeof value === 'string' && value !== '' ? value : null);

/** A verified event callsync does not decode (not in `DECODED_EVENTS`): its name and ids. */
function briefOf(json: Record<string, unknown>, event: string): LiveKitWebhook {
  const room = isRecord(json.room) ? json.room : {};
  const participant = isRecord(json.participant) ? json.participant : {};
  const createdAt = Number(json.createdAt ?? 0);
  return {
    id: textOf(json.id) ?? '',
    event,
    createdAt: Number.isFinite(createdAt) ? createdAt : 0,
    roomName: textOf(room.name),
    roomSid: textOf(room.sid),
    egress: null,
    participantIdentity: textOf(participant.identity),
  };
}

function notAnEvent(error: unknown): WebhookError {
  // Signed with our secret, yet not a webhook event: refused all the same, never acted on.
  const reason = error instanceof Error ? error.message : String(error);
  return unauthorized(`LiveKit webhook rejected: its body is not a webhook event (${reason})`);
}

/** No `cause`: the library's errors are summed up in the message, so nothing else reaches a log. */
function unauthorized(message: string): WebhookError {
  return new WebhookError('WEBHOOK_UNAUTHORIZED', message, { retryable: false });
}
