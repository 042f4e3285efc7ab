/** Webhook verification over the raw body, with webhooks the LiveKit emulator really sent. */
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
    const webhook = await verifier.verify(delivery.rawBody, delivery.authorization);
    expect(webhook).toMatchObject({
      event: 'egress_ended',
      roomName: 'room-wh',
      egress: { egressId, state: 'complete', file: { durationSeconds: 3 } },
    });
    expect(webhook.id).toMatch(/^EV_/);
  });

  it('rejects a tampered body, a wrong key, a Bearer-prefixed or missing header', async () => {
    lk.emulator.createRoom({ name: 'room-tamper' });
    const delivery = await nextDelivery('room_started');
    await expect(verifier.verify(delivery.rawBody, delivery.authorization)).resolves.toMatchObject({
      event: 'room_started',
      roomName: 'room-tamper',
    });

    const tampered = delivery.rawBody.replace('room-tamper', 'room-tampeR');
    await expect(verifier.verify(tampered, delivery.authorization)).rejects.toMatchObject({
      code: 'WEBHOOK_UNAUTHORIZED',
    });
    const otherSecret = new LiveKitWebhookVerifier({
      apiKey: TEST_API_KEY,
      apiSecret: 'some-other-secret-value-xyz',
    });
    await expect(otherSecret.verify(delivery.rawBody, delivery.authorization)).rejects.toMatchObject({
      code: 'WEBHOOK_UNAUTHORIZED',
    });
    const otherKey = new LiveKitWebhookVerifier({ apiKey: 'APIother', apiSecret: TEST_API_SECRET });
    await expect(otherKey.verify(delivery.rawBody, delivery.authorization)).rejects.toMatchObject({
      code: 'WEBHOOK_UNAUTHORIZED',
    });
    await expect(verifier.verify(delivery.rawBody, `Bearer ${delivery.authorization}`)).rejects.toMatchObject(
      {
        code: 'WEBHOOK_UNAUTHORIZED',
      },
    );
    await expect(verifier.verify(delivery.rawBody, undefined)).rejects.toMatchObject({
      code: 'WEBHOOK_UNAUTHORIZED',
    });
  });
});
