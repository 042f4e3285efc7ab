/**
 * The bearer token callsync's LiveKit API requests carry.
 *
 * Policy: one token with the `roomRecord` grant (what every egress request needs), signed for
 * `LIVEKIT_TOKEN_TTL_SECONDS` (10 min, the SDK's own default per request) and reused until fewer
 * than `LIVEKIT_TOKEN_RENEW_BEFORE_SECONDS` (5 min) remain, so a request never carries a token
 * about to expire (a request gives up after 10 s). The SDK would otherwise sign a fresh JWT
 * (HMAC through WebCrypto) for every request, several per call; the token holds no more than the
 * API key pair can already do, and it never leaves the process except as that header.
 */
import { AccessToken } from 'livekit-server-sdk';

export const LIVEKIT_TOKEN_TTL_SECONDS = 10 * 60;
export const LIVEKIT_TOKEN_RENEW_BEFORE_SECONDS = 5 * 60;
const MS_PER_SECOND = 1_000;

export interface LiveKitTokenSourceOptions {
  apiKey: string;
  apiSecret: string;
  /** Wall-clock epoch ms (the token's `exp` is LiveKit's wall clock too); `Date.now` by default. */
  nowMs?: (() => number) | undefined;
}

export class LiveKitTokenSource {
  readonly #options: LiveKitTokenSourceOptions;
  #token: Promise<string> | undefined;
  #renewAtMs = 0;

  constructor(options: LiveKitTokenSourceOptions) {
    this.#options = options;
  }

  /** A token valid for at least `LIVEKIT_TOKEN_RENEW_BEFORE_SECONDS` more. */
  current(): Promise<string> {
    const now = (this.#options.nowMs ?? Date.now)();
    if (this.#token === undefined || now >= this.#renewAtMs) {
      const token = new AccessToken(this.#options.apiKey, this.#options.apiSecret, {
        ttl: LIVEKIT_TOKEN_TTL_SECONDS,
      });
      token.addGrant({ roomRecord: true });
      this.#renewAtMs =
        now + (LIVEKIT_TOKEN_TTL_SECONDS - LIVEKIT_TOKEN_RENEW_BEFORE_SECONDS) * MS_PER_SECOND;
      const signing = token.toJwt();
      // A failed signing (it cannot fail for a valid key pair) is not kept: the next call signs anew.
      signing.catch(() => {
        if (this.#token === signing) this.#token = undefined;
      });
      this.#token = signing;
    }
    return this.#token;
  }
}
