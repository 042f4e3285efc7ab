/**
 * Webhooks as LiveKit sends them, verified with the SDK's WebhookReceiver over the raw body,
 * and the per-room delivery faults (drop, duplicate, delay, reorder) tests rely on.
 */
import { createHash } from 'node:crypto';
import { ParticipantInfo_Kind, TrackSource, TrackType } from '@livekit/protocol';
import type { WebhookEvent } from 'livekit-server-sdk';
import { EgressStatus, WebhookConfig, WebhookReceiver } from 'livekit-server-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import type { LiveKitHarness } from '../helpers/livekit-emulator-harness.ts';
import {
  hasEnded,
  hasStatus,
  liveKitHarnessPerTest,
  oggOutput,
  TEST_API_KEY,
  TEST_API_SECRET,
  TEST_CALLER,
  TEST_REFERENCE_MS,
} from '../helpers/livekit-emulator-harness.ts';
import type { WebhookSink } from '../helpers/livekit-webhook-sink.ts';
import { startWebhookSink } from '../helpers/livekit-webhook-sink.ts';

const WEBHOOK_TOKEN_VALIDITY_SECONDS = 300;

const harness = liveKitHarnessPerTest();
let extraSink: WebhookSink | undefined;
afterEach(async () => {
  await extraSink?.close();
  extraSink = undefined;
});

function jwtClaims(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
}

const describeEvent = (event: WebhookEvent): string =>
  event.egressInfo ? `${event.event}:${EgressStatus[event.egressInfo.status]}` : event.event;

/** The next `count` deliveries, verified and decoded. */
async function nextEvents(lk: LiveKitHarness, count: number): Promise<WebhookEvent[]> {
  const events: WebhookEvent[] = [];
  for (let i = 0; i < count; i++) events.push((await lk.nextEvent()).event);
  return events;
}

/** Runs a call's egress from start to COMPLETE; `webhooks`: the egress request's own. */
async function recordCall(lk: LiveKitHarness, room: string, webhooks?: WebhookConfig[]): Promise<string> {
  lk.emulator.startSipCall({ room, callerNumber: TEST_CALLER, agent: false });
  const started = await lk.egress.startRoomCompositeEgress(room, oggOutput(), {
    audioOnly: true,
    ...(webhooks === undefined ? {} : { webhooks }),
  });
  await lk.emulator.waitForEgress(started.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
  await lk.egress.stopEgress(started.egressId);
  await lk.emulator.waitForEgress(started.egressId, hasEnded);
  return started.egressId;
}

describe('LiveKit emulator: webhook format and signature', () => {
  it('POSTs camelCase JSON with a raw JWT whose sha256 claim covers the exact body', async () => {
    const lk = await harness({ now: () => TEST_REFERENCE_MS });
    lk.emulator.createRoom({ name: 'signed' });

    const { delivery, event } = await lk.nextEvent();
    expect(delivery).toMatchObject({
      method: 'POST',
      contentType: 'application/webhook+json',
      userAgent: 'LiveKit',
    });
    expect(delivery.authorization).not.toMatch(/^Bearer /);
    const claims = jwtClaims(delivery.authorization!);
    expect(claims.iss).toBe(TEST_API_KEY);
    expect(claims.sha256).toBe(createHash('sha256').update(delivery.rawBody).digest('base64'));
    expect(Number(claims.exp) - Number(claims.nbf)).toBe(WEBHOOK_TOKEN_VALIDITY_SECONDS);

    expect(event.event).toBe('room_started');
    expect(event.id).toMatch(/^EV_[A-Za-z0-9]{12}$/);
    expect(event.createdAt).toBe(BigInt(TEST_REFERENCE_MS / 1000));
    expect(event.room?.name).toBe('signed');
    const body = JSON.parse(delivery.rawBody) as Record<string, unknown>;
    expect(body).toHaveProperty('createdAt');
    expect(body).not.toHaveProperty('created_at');
    expect(body).not.toHaveProperty('numDropped'); // defaults are omitted, as Go's protojson does
  });

  it('reports each egress stage: started STARTING, updated ACTIVE and ENDING, ended COMPLETE', async () => {
    const lk = await harness();
    const egressId = await recordCall(lk, 'stages');
    await lk.emulator.webhooksIdle();
    const events = await Promise.all(
      lk.sink.received.map((d) => lk.receiver.receive(d.rawBody, d.authorization)),
    );
    const egressEvents = events.filter((event) => event.egressInfo !== undefined);
    expect(egressEvents.map(describeEvent)).toEqual([
      'egress_started:EGRESS_STARTING',
      'egress_updated:EGRESS_ACTIVE',
      'egress_updated:EGRESS_ENDING',
      'egress_ended:EGRESS_COMPLETE',
    ]);
    expect(egressEvents.every((event) => event.egressInfo?.egressId === egressId)).toBe(true);
    const ended = egressEvents.at(-1)!;
    expect(ended.egressInfo?.fileResults[0]?.location).toBe(
      lk.emulator.getEgress(egressId)?.fileResults[0]?.location,
    );
    const rawEnded = lk.sink.received.find((d) => d.rawBody.includes('"egress_ended"'))!.rawBody;
    expect(rawEnded).toContain('"egressInfo"');
    expect(rawEnded).toContain('"fileResults"');
  });

  it('announces a caller as participant_joined, then track_published with its microphone track', async () => {
    const lk = await harness();
    const { room, caller } = lk.emulator.startSipCall({
      room: 'tracks',
      callerNumber: TEST_CALLER,
      agent: false,
    });

    const [started, joined, published] = await nextEvents(lk, 3);
    expect(started?.event).toBe('room_started');
    expect(joined?.event).toBe('participant_joined');
    expect(joined?.participant).toMatchObject({ identity: caller.identity, kind: ParticipantInfo_Kind.SIP });
    expect(published?.event).toBe('track_published');
    expect(published?.room).toMatchObject({ sid: room.sid, name: 'tracks' });
    expect(published?.participant).toMatchObject({ sid: caller.sid, identity: caller.identity });
    expect(published?.track).toMatchObject({
      sid: caller.tracks[0]?.sid,
      type: TrackType.AUDIO,
      source: TrackSource.MICROPHONE,
    });
  });

  it('is rejected by WebhookReceiver when the body is tampered with or the key or secret is wrong', async () => {
    const lk = await harness();
    lk.emulator.createRoom({ name: 'tamper' });
    const { delivery } = await lk.nextEvent();
    const tampered = delivery.rawBody.replace('"tamper"', '"tampered"');
    expect(tampered).not.toBe(delivery.rawBody);

    await expect(lk.receiver.receive(tampered, delivery.authorization)).rejects.toThrow(
      'sha256 checksum of body does not match',
    );
    await expect(
      new WebhookReceiver('APIother', TEST_API_SECRET).receive(delivery.rawBody, delivery.authorization),
    ).rejects.toThrow();
    await expect(
      new WebhookReceiver(TEST_API_KEY, 'some-other-secret-some-other-secret').receive(
        delivery.rawBody,
        delivery.authorization,
      ),
    ).rejects.toThrow();
    await expect(lk.receiver.receive(delivery.rawBody, `Bearer ${delivery.authorization}`)).rejects.toThrow();
  });
});

describe('LiveKit emulator: webhook delivery', () => {
  it('retries a failed delivery with the same body', async () => {
    const lk = await harness({ respond: (_delivery, index) => (index === 0 ? 500 : 200) });
    const delivered = lk.emulator.waitForEvent('webhook:delivered');
    lk.emulator.createRoom({ name: 'retry' });

    const first = await lk.sink.next();
    const second = await lk.sink.next();
    expect(second.rawBody).toBe(first.rawBody);
    expect(await delivered).toMatchObject({ name: 'room_started', attempt: 2, status: 200 });
  });

  it('gives up after the last attempt and goes on with the next event', async () => {
    const lk = await harness({
      respond: (delivery) => (delivery.rawBody.includes('"room_started"') ? 503 : 200),
      webhookRetry: { maxAttempts: 3, baseDelayMs: 1 },
    });
    const failed = lk.emulator.waitForEvent('webhook:failed');
    lk.emulator.startSipCall({ room: 'lost', callerNumber: TEST_CALLER, agent: false });

    expect(await failed).toMatchObject({ name: 'room_started', attempts: 3, error: 'HTTP 503' });
    const attempts = [await lk.sink.next(), await lk.sink.next(), await lk.sink.next()];
    expect(new Set(attempts.map((d) => d.rawBody)).size).toBe(1);
    expect((await lk.nextEvent()).event.event).toBe('participant_joined');
  });

  it('drops the events a room asks to drop', async () => {
    const lk = await harness();
    lk.emulator.setRoomBehaviour('quiet', { webhooks: { drop: ['participant_joined'] } });
    lk.emulator.setRoomBehaviour('silent', { webhooks: { drop: true } });
    const dropped = lk.emulator.waitForEvent('webhook:dropped', (w) => w.roomName === 'quiet');

    lk.emulator.startSipCall({ room: 'silent', callerNumber: TEST_CALLER, agent: false });
    lk.emulator.startSipCall({ room: 'quiet', callerNumber: TEST_CALLER, agent: false });
    lk.emulator.hangUp({ room: 'quiet' });

    // A room's deliveries to one URL are ordered, so nothing was skipped in between.
    expect((await nextEvents(lk, 3)).map((e) => `${e.event}:${e.room?.name}`)).toEqual([
      'room_started:quiet',
      'track_published:quiet',
      'participant_left:quiet',
    ]);
    expect(await dropped).toMatchObject({ name: 'participant_joined' });
  });

  it('duplicates events with the same id and body', async () => {
    const lk = await harness();
    lk.emulator.setRoomBehaviour('twice', { webhooks: { duplicate: ['room_started'] } });
    lk.emulator.startSipCall({ room: 'twice', callerNumber: TEST_CALLER, agent: false });

    const [first, second, third] = [await lk.nextEvent(), await lk.nextEvent(), await lk.nextEvent()];
    expect(second?.delivery.rawBody).toBe(first?.delivery.rawBody);
    expect(second?.event.id).toBe(first?.event.id);
    expect(first?.event.event).toBe('room_started');
    expect(third?.event.event).toBe('participant_joined');
  });

  it('delays events without reordering them', async () => {
    const lk = await harness();
    lk.emulator.setRoomBehaviour('slow', { webhooks: { delayMs: { room_started: 50 } } });
    const delayed = lk.emulator.waitForEvent('webhook:delayed');
    lk.emulator.startSipCall({ room: 'slow', callerNumber: TEST_CALLER, agent: false });

    expect(await delayed).toMatchObject({ name: 'room_started', delayMs: 50 });
    expect(lk.sink.received).toEqual([]);
    expect((await nextEvents(lk, 2)).map((e) => e.event)).toEqual(['room_started', 'participant_joined']);
  });

  it("queues per resource, as LiveKit does: a room's stuck event holds back its own, not its egress's", async () => {
    const lk = await harness();
    // Far beyond the test's life: room_started is stuck in the room's queue until close.
    lk.emulator.setRoomBehaviour('stuck', { webhooks: { delayMs: { room_started: 3_600_000 } } });
    const egressEnded = lk.emulator.waitForEvent('webhook:delivered', (w) => w.name === 'egress_ended');
    await recordCall(lk, 'stuck');
    await egressEnded;

    const delivered = await Promise.all(
      lk.sink.received.map((d) => lk.receiver.receive(d.rawBody, d.authorization)),
    );
    expect(delivered.map(describeEvent)).toEqual([
      'egress_started:EGRESS_STARTING',
      'egress_updated:EGRESS_ACTIVE',
      'egress_updated:EGRESS_ENDING',
      'egress_ended:EGRESS_COMPLETE',
    ]);
  });

  it('reorders on request: egress_ended before the egress_updated events', async () => {
    const lk = await harness();
    lk.emulator.setRoomBehaviour('reorder', {
      webhooks: { hold: [{ event: 'egress_updated', until: 'egress_ended' }] },
    });
    await recordCall(lk, 'reorder');
    await lk.emulator.webhooksIdle();

    const events = await Promise.all(
      lk.sink.received.map((d) => lk.receiver.receive(d.rawBody, d.authorization)),
    );
    expect(events.filter((e) => e.egressInfo).map(describeEvent)).toEqual([
      'egress_started:EGRESS_STARTING',
      'egress_ended:EGRESS_COMPLETE',
      'egress_updated:EGRESS_ACTIVE',
      'egress_updated:EGRESS_ENDING',
    ]);
  });

  it('reorders on request: egress_ended after room_finished', async () => {
    const lk = await harness();
    lk.emulator.setRoomBehaviour('late', {
      webhooks: { hold: [{ event: 'egress_ended', until: 'room_finished' }] },
    });
    const held = lk.emulator.waitForEvent('webhook:held');
    await recordCall(lk, 'late');
    expect(await held).toMatchObject({ name: 'egress_ended' });

    await lk.rooms.deleteRoom('late');
    await lk.emulator.webhooksIdle();
    const events = await Promise.all(
      lk.sink.received.map((d) => lk.receiver.receive(d.rawBody, d.authorization)),
    );
    expect(events.map((e) => e.event).slice(-2)).toEqual(['room_finished', 'egress_ended']);
  });

  it('delivers held events on releaseHeldWebhooks', async () => {
    const lk = await harness();
    lk.emulator.setRoomBehaviour('held', {
      webhooks: { hold: [{ event: 'room_started', until: 'room_finished' }] },
    });
    lk.emulator.startSipCall({ room: 'held', callerNumber: TEST_CALLER, agent: false });
    expect((await nextEvents(lk, 2)).map((e) => e.event)).toEqual(['participant_joined', 'track_published']);

    lk.emulator.releaseHeldWebhooks('held');
    expect((await lk.nextEvent()).event.event).toBe('room_started');
  });

  it("sends an egress's events to the request's own webhooks, signed with the key it names", async () => {
    const secondKey = 'APIsecond';
    const secondSecret = 'second-secret-second-secret-second-secret';
    const lk = await harness({ keys: { [TEST_API_KEY]: TEST_API_SECRET, [secondKey]: secondSecret } });
    extraSink = await startWebhookSink();
    await recordCall(lk, 'own-hooks', [new WebhookConfig({ url: extraSink.url, signingKey: secondKey })]);
    await lk.emulator.webhooksIdle();

    const receiver = new WebhookReceiver(secondKey, secondSecret);
    const events = await Promise.all(
      extraSink.received.map((d) => receiver.receive(d.rawBody, d.authorization)),
    );
    expect(events.map(describeEvent)).toEqual([
      'egress_started:EGRESS_STARTING',
      'egress_updated:EGRESS_ACTIVE',
      'egress_updated:EGRESS_ENDING',
      'egress_ended:EGRESS_COMPLETE',
    ]);
    expect(lk.sink.received.some((d) => d.rawBody.includes('"egress_ended"'))).toBe(true);
  });

  it("filters the configured URLs' events as webhook.filter_params does, not an egress request's own webhooks", async () => {
    const lk = await harness({ webhookFilter: { includeEvents: ['egress_ended', 'room_finished'] } });
    extraSink = await startWebhookSink();
    await recordCall(lk, 'filtered', [new WebhookConfig({ url: extraSink.url, signingKey: TEST_API_KEY })]);
    await lk.rooms.deleteRoom('filtered');
    await lk.emulator.webhooksIdle();

    const names = (sink: WebhookSink) =>
      sink.received.map((d) => (JSON.parse(d.rawBody) as { event: string }).event);
    expect(names(lk.sink).sort()).toEqual(['egress_ended', 'room_finished']);
    expect(names(extraSink)).toEqual(['egress_started', 'egress_updated', 'egress_updated', 'egress_ended']);

    // The room stays open (no room_finished) for the whole test.
    const excluding = await harness({
      webhookFilter: { excludeEvents: ['participant_joined', 'track_published'] },
      departureTimeoutMs: 3_600_000,
    });
    excluding.emulator.startSipCall({ room: 'excluded', callerNumber: TEST_CALLER, agent: false });
    excluding.emulator.hangUp({ room: 'excluded' });
    await excluding.emulator.webhooksIdle();
    expect(names(excluding.sink)).toEqual(['room_started', 'participant_left']);
  });

  it('abandons pending deliveries on close', async () => {
    const lk = await harness();
    lk.emulator.setRoomBehaviour('never', { webhooks: { delayMs: 60_000 } });
    const delayed = lk.emulator.waitForEvent('webhook:delayed');
    lk.emulator.createRoom({ name: 'never' });
    await delayed;

    await lk.emulator.close(); // would take a minute if the delay were still pending
    await lk.emulator.close();
    expect(lk.sink.received).toEqual([]);
  });
});
