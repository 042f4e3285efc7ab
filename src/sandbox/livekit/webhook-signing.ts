/**
 * Webhook authentication as LiveKit's `URLNotifier` does it: the `Authorization` header is the
 * raw JWT (no "Bearer "), HS256, issued by the API key, valid from now for 5 minutes, whose
 * `sha256` claim is the base64 SHA-256 of the exact body bytes. `WebhookReceiver.receive`
 * checks all of it.
 *
 * Signed synchronously with fast-jwt over node:crypto (the SDK's `AccessToken` goes through
 * WebCrypto): the emulator shares its process with a bench's contender's load, and sends about
 * a dozen webhooks per call.
 */
import { createHash } from 'node:crypto';
import { createSigner } from 'fast-jwt';

const WEBHOOK_TOKEN_TTL_SECONDS = 5 * 60;
const MS_PER_SECOND = 1_000;

export function webhookBodySha256(body: string): string {
  return createHash('sha256').update(body).digest('base64');
}

/** One signer per secret: fast-jwt prepares the key once. */
const signers = new Map<string, (payload: Record<string, unknown>) => string>();

function signerFor(apiSecret: string): (payload: Record<string, unknown>) => string {
  let signer = signers.get(apiSecret);
  if (signer === undefined) {
    signer = createSigner({ key: apiSecret, algorithm: 'HS256', noTimestamp: true });
    signers.set(apiSecret, signer);
  }
  return signer;
}

export function signWebhook(options: { body: string; apiKey: string; apiSecret: string }): string {
  const nowSeconds = Math.floor(Date.now() / MS_PER_SECOND);
  return signerFor(options.apiSecret)({
    iss: options.apiKey,
    nbf: nowSeconds,
    exp: nowSeconds + WEBHOOK_TOKEN_TTL_SECONDS,
    sha256: webhookBodySha256(options.body),
  });
}
