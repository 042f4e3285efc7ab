/**
 * End to end, through callsync's HTTP API only: the real supervisor against the LiveKit
 * emulator and the CRM sandbox.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { EgressStatus } from 'livekit-server-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import {
  API_SECRET,
  INGEST_TOKEN,
  PERSONA_CONFIG,
  PERSONA_DOCUMENT,
  startCallsyncHarness,
  type CallsyncHarness,
} from '../helpers/callsync-harness.ts';
import { callTimes } from '../helpers/callsync-api.ts';

let h: CallsyncHarness;
afterEach(async () => {
  await h.close();
});

/** A call that started a minute ago (the maximum call duration counts from `startedAt`). */
const { at } = callTimes();

const TRANSCRIPT = [
  { id: 'item_1', role: 'assistant', content: 'Hello, how can I help?', timestamp: at(1) },
  {
    id: 'item_2',
    role: 'user',
    content: 'I want the premium plan.',
    timestamp: at(4),
    transcriptConfidence: 0.93,
  },
  {
    id: 'item_3',
    role: 'assistant',
    content: 'Great, may I have your name?',
    timestamp: at(6),
  },
  { id: 'item_4', role: 'user', content: 'Priya.', timestamp: at(9) },
];

const createCall = (room: string) => h.createCall(room, { direction: 'inbound', startedAt: at(0) });

describe('a call through callsync', () => {
  it('delivers the exact recording, then the call data with its URL, transcript in order and the lead', async () => {
    h = await startCallsyncHarness();
    h.startLiveKitCall('room-happy');
    h.emulator.setRoomBehaviour('room-happy', { recordingSeconds: 9.5 });
    const callId = await createCall('room-happy');
    expect(
      (
        await h.api('POST', '/v1/calls', {
          roomName: 'room-happy',
          callerNumber: '+918655066243',
          config: PERSONA_CONFIG,
        })
      ).body,
    ).toMatchObject({ callId });

    // Two batches, one repeated item, out of order: the CRM gets each turn once, in time order.
    expect(
      (await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [TRANSCRIPT[0], TRANSCRIPT[2]] }))
        .status,
    ).toBe(202);
    await h.api('POST', `/v1/calls/${callId}/transcript`, {
      items: [TRANSCRIPT[1], TRANSCRIPT[2], TRANSCRIPT[3]],
    });
    expect(
      (
        await h.api('POST', `/v1/calls/${callId}/leads`, {
          leadId: '6900ac26995436dc7dd9abaa',
          data: { name: 'Priya' },
        })
      ).status,
    ).toBe(202);
    const egressId = await h.egressOf('room-happy');
    await h.emulator.waitForEgress(egressId, (info) => info.status === EgressStatus.EGRESS_ACTIVE);
    expect(
      (
        await h.api('POST', `/v1/calls/${callId}/end`, {
          endedAt: at(12),
          status: 'completed',
        })
      ).status,
    ).toBe(202);

    const { document } = await h.crm.waitForCallData(callId);
    const received = h.crm.received();
    expect(received.uploads).toHaveLength(1);
    const upload = received.uploads[0]!;
    expect(upload.idempotencyKey).toBe(`${callId}:recording`);
    expect(upload.contentType).toBe('audio/ogg');
    const egress = h.emulator.getEgress(egressId)!;
    const original = await readFile(egress.fileResults[0]!.location);
    expect(upload.sha256).toBe(createHash('sha256').update(original).digest('hex'));
    expect(upload.fileName).toMatch(/\.ogg$/);

    expect(received.callData).toHaveLength(1);
    expect(received.callData[0]!.idempotencyKey).toBe(`${callId}:call-data`);
    expect(document).toMatchObject({
      ...PERSONA_DOCUMENT,
      callDetails: {
        callId,
        direction: 'inbound',
        startTime: at(0),
        endTime: at(12),
        duration: 12,
        status: 'completed',
        callerNumber: '+918655066243',
        recordingUrl: upload.url,
        recordingDuration: 10,
        recordingSize: original.length,
      },
      caller: { phoneNumber: '+918655066243' },
      transcription: { total_items: 4, lead_generated: true },
      lead: { leadId: '6900ac26995436dc7dd9abaa', name: 'Priya' },
    });
    expect(document.transcription.conversation_items.map((item) => item.content)).toEqual(
      TRANSCRIPT.map((item) => item.content),
    );
    expect(document.transcription.conversation_items[1]!.transcript_confidence).toBe(0.93);

    const call = await h.api('GET', `/v1/calls/${callId}`);
    expect(call.body).toMatchObject({ state: 'done', status: 'done', outcome: 'delivered', egressId });
    const journal = call.body.journal as { kind: string; detail?: { state?: string } }[];
    expect(
      journal.filter((entry) => entry.kind === 'state_entered').map((entry) => entry.detail?.state),
    ).toEqual(['recording', 'inConversation', 'awaitingEgress', 'uploadingRecording', 'postingData', 'done']);
    expect(journal.some((entry) => entry.kind === 'delivered')).toBe(true);
    expect((await h.api('GET', '/v1/calls?state=done')).body.calls).toHaveLength(1);

    // One log line per transition, carrying the call's ids; no secret in any line.
    const transitions = h.logLines.filter((line) => line.callId === callId && typeof line.to === 'string');
    expect(transitions.map((line) => line.to)).toEqual([
      'inConversation',
      'awaitingEgress',
      'uploadingRecording',
      'postingData',
      'done',
    ]);
    expect(transitions.at(-1)).toMatchObject({ roomName: 'room-happy', egressId, from: 'postingData' });
    const allLogs = JSON.stringify(h.logLines);
    expect(allLogs).not.toContain(API_SECRET);
    expect(allLogs).not.toContain(INGEST_TOKEN);
    expect(h.app.supervisor.liveCallCount).toBe(0);
  });

  it('delivers partially, recording fields null, when the egress fails', async () => {
    h = await startCallsyncHarness();
    h.startLiveKitCall('room-failed-egress');
    h.emulator.setRoomBehaviour('room-failed-egress', { egressOutcome: 'failed' });
    const callId = await createCall('room-failed-egress');
    await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [TRANSCRIPT[0]] });
    await h.egressOf('room-failed-egress');
    await h.api('POST', `/v1/calls/${callId}/end`, {});

    const { document } = await h.crm.waitForCallData(callId);
    expect(document.callDetails).toMatchObject({
      recordingUrl: null,
      recordingDuration: null,
      recordingSize: null,
    });
    expect(document.transcription.lead_generated).toBe(false);
    expect(document.lead).toEqual({});
    expect(h.crm.received().uploads).toHaveLength(0);
    expect((await h.api('GET', `/v1/calls/${callId}`)).body).toMatchObject({
      state: 'done',
      outcome: 'partial',
    });
  });

  it('learns the egress outcome by polling when every webhook is dropped', async () => {
    h = await startCallsyncHarness();
    h.startLiveKitCall('room-no-webhooks');
    h.emulator.setRoomBehaviour('room-no-webhooks', { webhooks: { drop: true }, recordingSeconds: 3 });
    const callId = await createCall('room-no-webhooks');
    const egressId = await h.egressOf('room-no-webhooks');
    await h.emulator.waitForEgress(egressId, (info) => info.status === EgressStatus.EGRESS_ACTIVE);
    await h.api('POST', `/v1/calls/${callId}/end`, {});

    const { document } = await h.crm.waitForCallData(callId);
    expect(document.callDetails.recordingUrl).toBe(h.crm.received().uploads[0]!.url);
    const journal = (await h.api('GET', `/v1/calls/${callId}`)).body.journal as {
      kind: string;
      detail?: { via?: string };
    }[];
    expect(journal.find((entry) => entry.kind === 'egress_final')?.detail?.via).toBe('poll');
  });

  it('ends a call from LiveKit room_finished when the agent never sends end', async () => {
    h = await startCallsyncHarness();
    h.startLiveKitCall('room-hangup');
    h.emulator.setRoomBehaviour('room-hangup', { recordingSeconds: 4 });
    const callId = await createCall('room-hangup');
    await h.api('POST', `/v1/calls/${callId}/transcript`, { items: TRANSCRIPT });
    const egressId = await h.egressOf('room-hangup');
    await h.emulator.waitForEgress(egressId, (info) => info.status === EgressStatus.EGRESS_ACTIVE);
    h.emulator.hangUp({ room: 'room-hangup' }); // the caller leaves; the room closes after the departure timeout

    const { document } = await h.crm.waitForCallData(callId);
    expect(document.transcription.total_items).toBe(4);
    expect(document.callDetails.recordingUrl).not.toBeNull();
    expect((await h.api('GET', `/v1/calls/${callId}`)).body).toMatchObject({
      endReason: 'room_finished',
      outcome: 'delivered',
    });
  });

  it('keeps a call failed on a CRM refusal, with the answer kept, and delivers it on retry', async () => {
    h = await startCallsyncHarness();
    h.startLiveKitCall('room-refused');
    h.emulator.setRoomBehaviour('room-refused', { egressOutcome: 'aborted' });
    h.crm.injectFaults('call-data', [{ status: 422, body: { error: 'campaign closed' } }]);
    const callId = await createCall('room-refused');
    await h.egressOf('room-refused');
    await h.api('POST', `/v1/calls/${callId}/end`, {});

    await new Promise<void>((resolve) =>
      h.app.supervisor.events.on('call:finished', (event) => event.callId === callId && resolve()),
    );
    const failed = await h.api('GET', `/v1/calls/${callId}`);
    expect(failed.body).toMatchObject({
      state: 'failed',
      status: 'failed',
      lastError: { code: 'CRM_REJECTED', status: 422 },
    });
    expect(JSON.stringify(failed.body.lastError)).toContain('campaign closed');
    expect(failed.body).toMatchObject({ outcome: 'failed', attempts: { recording: 0, 'call-data': 1 } });
    expect((await h.api('GET', '/v1/calls?state=failed')).body.calls).toHaveLength(1);
    expect(h.app.supervisor.liveCallCount).toBe(0);

    expect((await h.api('POST', `/v1/calls/${callId}/retry`)).status).toBe(202);
    const { document } = await h.crm.waitForCallData(callId);
    expect(document.callDetails.callId).toBe(callId);
    expect((await h.api('GET', `/v1/calls/${callId}`)).body).toMatchObject({
      state: 'done',
      retries: 1,
      attempts: { recording: 0, 'call-data': 2 },
      lastError: { code: 'CRM_REJECTED' },
    });
    expect((await h.api('POST', `/v1/calls/${callId}/retry`)).status).toBe(409);
  });
});
