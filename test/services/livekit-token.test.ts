/**
 * The LiveKit token every egress request carries (`src/services/livekit-token.ts`): the
 * `roomRecord` grant, 10 minutes of validity, reused until 5 minutes remain, then renewed.
 * Checked with livekit-server-sdk's own verifier, as LiveKit checks it.
 */
import { TokenVerifier } from 'livekit-server-sdk';
import { describe, expect, it } from 'vitest';
import { LiveKitTokenSource } from '../../src/services/livekit-token.ts';

const API_KEY = 'APIkey';
const API_SECRET = 'a-secret-long-enough-for-hs256-signing';
const MINUTE_MS = 60_000;

describe('the LiveKit token source', () => {
  it('signs one token with the roomRecord grant for 10 minutes, as LiveKit verifies it', async () => {
    const tokens = new LiveKitTokenSource({ apiKey: API_KEY, apiSecret: API_SECRET });
    const claims = await new TokenVerifier(API_KEY, API_SECRET).verify(await tokens.current());
    expect(claims.iss).toBe(API_KEY);
    expect(claims.video).toMatchObject({ roomRecord: true });
    expect(claims.exp! - claims.nbf!).toBe(10 * 60);
  });

  it('reuses the token for 5 minutes, then renews it', async () => {
    let now = Date.UTC(2026, 11, 1, 12, 0, 0);
    const tokens = new LiveKitTokenSource({ apiKey: API_KEY, apiSecret: API_SECRET, nowMs: () => now });
    const first = tokens.current();
    await first;
    now += 5 * MINUTE_MS - 1;
    expect(tokens.current()).toBe(first);
    now += 1;
    const renewed = tokens.current();
    expect(renewed).not.toBe(first);
    // Asked again while it is being signed, or later within its 5 minutes: the same one.
    expect(tokens.current()).toBe(renewed);
    await renewed;
    now += 5 * MINUTE_MS - 1;
    expect(tokens.current()).toBe(renewed);
  });

  it('fails a request with a wrong secret as LiveKit would refuse it', async () => {
    const tokens = new LiveKitTokenSource({
      apiKey: API_KEY,
      apiSecret: 'another-secret-long-enough-for-hs256',
    });
    await expect(new TokenVerifier(API_KEY, API_SECRET).verify(await tokens.current())).rejects.toThrow();
  });
});
