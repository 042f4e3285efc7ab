/**
 * Webhook verification over the raw body, with webhooks the LiveKit emulator really sent, and
 * tokens made here with node:crypto for the checks LiveKit's own tokens never fail.
 */
import { createHash, createHmac } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CallEgressClient } from '../../src/services/egress.client.ts';
import { LiveKitWebhookVerifier } from '../../src/services/livekit-webhook.ts';
import { EgressStatus } from 'livekit-server-sdk';
import {
  TEST_API_KEY,
  TEST_API_SECRET,
  hasStatus,
  startLiveKitHarness,
  type LiveKitHarness,
} from '../helpers/livekit-emulator-harness.ts';

let lk: LiveKitHarness;
const verifier = new LiveKitWebhookVerifier({ apiKey: TEST_API_KEY, apiSecret: TEST_API_SECRET });

beforeEach(async () => {
  lk = await startLiveKitHarness();
});
afterEach(async () => {
  await lk.close();
});

async function nextDelivery(event: string) {
  for (;;) {
    const delivery = await lk.sink.next();
    if ((JSON.parse(delivery.rawBody) as { event?: string }).event === event) return delivery;
  }
}

describe('LiveKitWebhookVerifier', () => {
  it("accepts LiveKit's egress_ended and reduces it to the facts callsync uses", async () => {
    lk.emulator.createRoom({ name: 'room-wh' });
    lk.emulator.startSipCall({ room: 'room-wh', callerNumber: '+15550001' });
    lk.emulator.setRoomBehaviour('room-wh', { recordingSeconds: 3 });
    const client = new CallEgressClient({ url: lk.url, apiKey: TEST_API_KEY, apiSecret: TEST_API_SECRET });
    const { egressId } = await client.startRecording({ roomName: 'room-wh', filepath: 'x.ogg' });
    await lk.emulator.waitForEgress(egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    await client.stop(egressId);

    const delivery = await nextDelivery('egress_ended');
    expect(delivery.authorization).not.toMatch(/^Bearer /);
    const webhook = verifier.verify(delivery.rawBody, delivery.authorization);
    expect(webhook).toMatchObject({
      event: 'egress_ended',
      roomName: 'room-wh',
      egress: { egressId, state: 'complete', file: { durationSeconds: 3 } },
    });
    expect(webhook.id).toMatch(/^EV_/);
  });

  it("reads a participant event's name and ids without decoding the rest", async () => {
    lk.emulator.startSipCall({ room: 'room-caller', callerNumber: '+15550002', agent: false });
    const delivery = await nextDelivery('participant_joined');
    const webhook = verifier.verify(delivery.rawBody, delivery.authorization);
    const sent = JSON.parse(delivery.rawBody) as {
      id: string;
      createdAt: string;
      room: { sid: string };
      participant: { identity: string };
    };
    expect(webhook).toEqual({
      id: sent.id,
      event: 'participant_joined',
      createdAt: Number(sent.createdAt),
      roomName: 'room-caller',
      roomSid: sent.room.sid,
      egress: null,
      participantIdentity: sent.participant.identity,
    });
    expect(webhook.roomSid).toMatch(/^RM_/);
  });

  it('rejects a tampered body, a wrong key, a Bearer-prefixed or missing header', async () => {
    lk.emulator.createRoom({ name: 'room-tamper' });
    const delivery = await nextDelivery('room_started');
    expect(verifier.verify(delivery.rawBody, delivery.authorization)).toMatchObject({
      event: 'room_started',
      roomName: 'room-tamper',
    });

    const tampered = delivery.rawBody.replace('room-tamper', 'room-tampeR');
    expect(() => verifier.verify(tampered, delivery.authorization)).toThrow(
      expect.objectContaining({ code: 'WEBHOOK_UNAUTHORIZED' }),
    );
    const otherSecret = new LiveKitWebhookVerifier({
      apiKey: TEST_API_KEY,
      apiSecret: 'some-other-secret-value-xyz',
    });
    expect(() => otherSecret.verify(delivery.rawBody, delivery.authorization)).toThrow(
      expect.objectContaining({ code: 'WEBHOOK_UNAUTHORIZED' }),
    );
    const otherKey = new LiveKitWebhookVerifier({ apiKey: 'APIother', apiSecret: TEST_API_SECRET });
    expect(() => otherKey.verify(delivery.rawBody, delivery.authorization)).toThrow(
      expect.objectContaining({ code: 'WEBHOOK_UNAUTHORIZED' }),
    );
    expect(() => verifier.verify(delivery.rawBody, `Bearer ${delivery.authorization}`)).toThrow(
      expect.objectContaining({ code: 'WEBHOOK_UNAUTHORIZED' }),
    );
    expect(() => verifier.verify(delivery.rawBody, undefined)).toThrow(
      expect.objectContaining({ code: 'WEBHOOK_UNAUTHORIZED' }),
    );
  });
});

/** A JWT as LiveKit's `auth.AccessToken` makes one (HS256 unless told), signed here with node:crypto. */
function signedToken(
  claims: Record<string, unknown>,
  options: { alg?: string; secret?: string } = {},
): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: options.alg ?? 'HS256', typ: 'JWT' })}.${part(claims)}`;
  const hmac = (options.alg ?? 'HS256').replace('HS', 'sha');
  const signature = createHmac(hmac, options.secret ?? TEST_API_SECRET)
    .update(unsigned)
    .digest('base64url');
  return `${unsigned}.${signature}`;
}

describe('LiveKitWebhookVerifier: the token', () => {
  const body = JSON.stringify({ event: 'room_started', id: 'EV_made_here', room: { name: 'room-made' } });
  const sha256 = createHash('sha256').update(body).digest('base64');
  const nowSeconds = () => Math.floor(Date.now() / 1000);
  const valid = () => ({ iss: TEST_API_KEY, sha256, nbf: nowSeconds() - 1, exp: nowSeconds() + 300 });

  it('accepts a token with every claim LiveKit sets', () => {
    expect(verifier.verify(body, signedToken(valid()))).toMatchObject({
      id: 'EV_made_here',
      event: 'room_started',
      roomName: 'room-made',
    });
  });

  it('accepts a token expired less than 10 s ago (clock skew), not one expired a minute ago', () => {
    expect(verifier.verify(body, signedToken({ ...valid(), exp: nowSeconds() - 5 })).event).toBe(
      'room_started',
    );
    const expired = () => verifier.verify(body, signedToken({ ...valid(), exp: nowSeconds() - 60 }));
    expect(expired).toThrow(expect.objectContaining({ code: 'WEBHOOK_UNAUTHORIZED' }));
    expect(expired).toThrow(/expired/i);
  });

  it('refuses a token not valid yet, and one without an expiry, an issuer or a body hash', () => {
    const refused = (claims: Record<string, unknown>) => () => verifier.verify(body, signedToken(claims));
    const { exp: _exp, ...noExpiry } = valid();
    const { iss: _iss, ...noIssuer } = valid();
    const { sha256: _sha, ...noHash } = valid();
    for (const claims of [{ ...valid(), nbf: nowSeconds() + 60 }, noExpiry, noIssuer, noHash]) {
      expect(refused(claims)).toThrow(expect.objectContaining({ code: 'WEBHOOK_UNAUTHORIZED' }));
    }
  });

  it('refuses another algorithm, an unsigned token, and a signed body that is not a webhook event', () => {
    expect(() => verifier.verify(body, signedToken(valid(), { alg: 'HS512' }))).toThrow(
      expect.objectContaining({ code: 'WEBHOOK_UNAUTHORIZED' }),
    );
    const [, payload] = signedToken(valid()).split('.');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`;
    expect(() => verifier.verify(body, none)).toThrow(
      expect.objectContaining({ code: 'WEBHOOK_UNAUTHORIZED' }),
    );

    const notAnEvent = '{"event": 12}';
    const hash = createHash('sha256').update(notAnEvent).digest('base64');
    const decode = () => verifier.verify(notAnEvent, signedToken({ ...valid(), sha256: hash }));
    expect(decode).toThrow(expect.objectContaining({ code: 'WEBHOOK_UNAUTHORIZED' }));
    expect(decode).toThrow(/not a webhook event/);
  });

  it('never puts the token in its error', () => {
    const token = signedToken(valid(), { secret: 'another-secret-another-secret-another' });
    let caught: unknown;
    try {
      verifier.verify(body, token);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'WEBHOOK_UNAUTHORIZED' });
    expect(JSON.stringify(caught) + String(caught) + (caught as Error).message).not.toContain(
      token.split('.')[2],
    );
  });
});
