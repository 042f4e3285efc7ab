/**
 * Webhook authentication as LiveKit's `URLNotifier` does it: the `Authorization` header is the
 * raw JWT (no "Bearer "), issued by the API key, valid for 5 minutes, whose `sha256` claim is
 * the base64 SHA-256 of the exact body bytes. `WebhookReceiver.receive` checks all of it.
 */
import { createHash } from 'node:crypto';
import { AccessToken } from 'livekit-server-sdk';

const WEBHOOK_TOKEN_TTL = '5m';

export function webhookBodySha256(body: string): string {
  return createHash('sha256').update(body).digest('base64');
}

export async function signWebhook(options: {
  body: string;
  apiKey: string;
  apiSecret: string;
}): Promise<string> {
  const token = new AccessToken(options.apiKey, options.apiSecret, { ttl: WEBHOOK_TOKEN_TTL });
  token.sha256 = webhookBodySha256(options.body);
  return token.toJwt();
}
