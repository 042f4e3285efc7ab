/**
 * LiveKit webhook verification, over livekit-server-sdk's `WebhookReceiver`.
 *
 * Policy: a webhook is trusted only if its `Authorization` header is a JWT signed with our
 * API secret, issued by our API key, unexpired, whose `sha256` claim matches the SHA-256 of the
 * exact bytes received. So the raw body must be passed as received (never a re-serialised
 * object), and the header verbatim: LiveKit sends the bare JWT, no `Bearer ` prefix. A bad
 * webhook is a `WEBHOOK_UNAUTHORIZED` error and changes nothing.
 *
 * Verified events are reduced to the JSON-safe facts callsync acts on.
 */
import { WebhookReceiver } from 'livekit-server-sdk';
import { CallsyncError } from '../errors.ts';
import { toEgressSnapshot, type EgressSnapshot } from './egress.client.ts';

/** How far LiveKit's clock may be from ours when checking the token's times. */
export const WEBHOOK_CLOCK_TOLERANCE_SECONDS = 10;

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

export class LiveKitWebhookVerifier {
  readonly #receiver: WebhookReceiver;

  constructor(options: { apiKey: string; apiSecret: string }) {
    this.#receiver = new WebhookReceiver(options.apiKey, options.apiSecret);
  }

  /** Verifies and decodes a webhook. `rawBody` must be the exact bytes received, as UTF-8. */
  async verify(rawBody: string, authorization: string | undefined): Promise<LiveKitWebhook> {
    if (!authorization) {
      throw new WebhookError('WEBHOOK_UNAUTHORIZED', 'LiveKit webhook without an Authorization header', {
        retryable: false,
      });
    }
    let event;
    try {
      event = await this.#receiver.receive(rawBody, authorization, false, WEBHOOK_CLOCK_TOLERANCE_SECONDS);
    } catch (error) {
      // The receiver's messages name the failed check (signature, issuer, expiry, sha256) and
      // never echo the token.
      const reason = error instanceof Error ? error.message : String(error);
      throw new WebhookError('WEBHOOK_UNAUTHORIZED', `LiveKit webhook rejected: ${reason}`, {
        retryable: false,
        cause: error,
      });
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
