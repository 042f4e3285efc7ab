/**
 * No request can stop the service or keep it from serving others (the contract's "What an
 * answer promises"), against the real supervisor through its HTTP API: each hostile or broken
 * request gets its 4xx naming the field, and a control call is still delivered afterwards.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { signWebhook } from '../../src/sandbox/livekit/webhook-signing.ts';
import {
  API_KEY,
  API_SECRET,
  PERSONA_CONFIG,
  startCallsyncHarness,
  type CallsyncHarness,
} from '../helpers/callsync-harness.ts';
import { callTimes } from '../helpers/callsync-api.ts';

let h: CallsyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const { startMs, at } = callTimes();
const item = (id: string, content = `turn ${id}`, timestamp = at(2)) => ({
  id,
  role: 'user',
  content,
  timestamp,
});

async function createCall(harness: CallsyncHarness, room: string, extra: Record<string, unknown> = {}) {
  harness.startLiveKitCall(room);
  return harness.createCall(room, { startedAt: at(0), ...extra });
}

/** A whole call, start to CRM: the service still delivers. */
async function deliverControlCall(harness: CallsyncHarness, room = 'room-control'): Promise<void> {
  const callId = await createCall(harness, room);
  expect((await harness.api('POST', `/v1/calls/${callId}/transcript`, { items: [item('c1')] })).status).toBe(
    202,
  );
  await harness.recordingStarted(room);
  expect((await harness.api('POST', `/v1/calls/${callId}/end`, { endedAt: at(5) })).status).toBe(202);
  const { document } = await harness.crm.waitForCallData(callId);
  expect(document.transcription.conversation_items).toHaveLength(1);
}

function expectRefused(
  answer: { status: number; body: Record<string, unknown> },
  status: number,
  error: string,
  field: string | RegExp,
) {
  expect(answer.status).toBe(status);
  expect(answer.body.error).toBe(error);
  const named = (answer.body.details as { field?: string } | undefined)?.field ?? '';
  if (typeof field === 'string') expect(named).toBe(field);
  else expect(named).toMatch(field);
  expect(String(answer.body.message)).not.toBe('');
}

describe('bounded input', () => {
  it('refuses lead data nested 10,000 levels, oversized lead data and too many leads, and keeps serving', async () => {
    h = await startCallsyncHarness();
    const callId = await createCall(h, 'room-leads');
    // 20 KB of JSON, 10,000 levels deep (built as text: JSON.stringify itself would overflow).
    const deep = `{"leadId":"deep","data":${'{"d":'.repeat(10_000)}{}${'}'.repeat(10_000)}}`;
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/leads`, deep),
      400,
      'INVALID_BODY',
      /^data(\.d)+$/,
    );

    const big = { notes: 'x'.repeat(100 * 1024) };
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/leads`, { leadId: 'big', data: big }),
      400,
      'INVALID_BODY',
      'data',
    );

    for (let lead = 0; lead < 20; lead += 1) {
      expect((await h.api('POST', `/v1/calls/${callId}/leads`, { leadId: `lead-${lead}` })).status).toBe(202);
    }
    // Linking a known lead again is an update, not one more lead.
    expect(
      (await h.api('POST', `/v1/calls/${callId}/leads`, { leadId: 'lead-3', data: { a: 1 } })).status,
    ).toBe(202);
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/leads`, { leadId: 'lead-21' }),
      409,
      'CALL_LIMIT_REACHED',
      'leadId',
    );

    await deliverControlCall(h);
  });

  it('refuses more than 5,000 transcript items or a million characters for one call, keeping those accepted', async () => {
    h = await startCallsyncHarness();
    const callId = await createCall(h, 'room-items');
    for (let batch = 0; batch < 5; batch += 1) {
      const items = Array.from({ length: 1000 }, (_, index) => item(`b${batch}-${index}`, 'ok'));
      expect((await h.api('POST', `/v1/calls/${callId}/transcript`, { items })).status).toBe(202);
    }
    // Known ids are ignored, so a repeated batch is fine; one new item is one too many.
    expect(
      (await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [item('b0-0', 'ok')] })).status,
    ).toBe(202);
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [item('one-more')] }),
      409,
      'CALL_LIMIT_REACHED',
      'items',
    );
    await h.recordingStarted('room-items');
    expect((await h.api('POST', `/v1/calls/${callId}/end`, {})).status).toBe(202);
    const { document } = await h.crm.waitForCallData(callId, { timeoutMs: 30_000 });
    expect(document.transcription.conversation_items).toHaveLength(5_000);
  });

  it('refuses transcript text over a million characters for one call', async () => {
    h = await startCallsyncHarness();
    const callId = await createCall(h, 'room-chars');
    for (let batch = 0; batch < 10; batch += 1) {
      const items = [item(`long-${batch}`, 'y'.repeat(100_000))];
      expect((await h.api('POST', `/v1/calls/${callId}/transcript`, { items })).status).toBe(202);
    }
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [item('long-10', 'z')] }),
      409,
      'CALL_LIMIT_REACHED',
      'items',
    );
    await deliverControlCall(h);
  });

  it.each([
    [
      'a NUL in transcript text',
      '{"items":[{"id":"n1","role":"user","content":"a\\u0000b","timestamp":"TS"}]}',
      'items.0.content',
    ],
    [
      'a lone surrogate in transcript text',
      '{"items":[{"id":"s1","role":"user","content":"x\\ud800y","timestamp":"TS"}]}',
      'items.0.content',
    ],
    [
      'a NUL in an item id',
      '{"items":[{"id":"i\\u0000d","role":"user","content":"ok","timestamp":"TS"}]}',
      'items.0.id',
    ],
  ])('refuses %s, naming the field', async (_name, body, field) => {
    h = await startCallsyncHarness();
    const callId = await createCall(h, 'room-text');
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/transcript`, body.replace('TS', at(2))),
      400,
      'INVALID_BODY',
      field,
    );
    await deliverControlCall(h);
  });

  it('refuses a NUL in roomName and in lead data keys and values', async () => {
    h = await startCallsyncHarness();
    expectRefused(
      await h.api(
        'POST',
        '/v1/calls',
        `{"roomName":"r\\u0000","callerNumber":"+1","config":${JSON.stringify(PERSONA_CONFIG)}}`,
      ),
      400,
      'INVALID_BODY',
      'roomName',
    );
    const callId = await createCall(h, 'room-nul');
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/leads`, '{"leadId":"l","data":{"name":"a\\u0000"}}'),
      400,
      'INVALID_BODY',
      'data.name',
    );
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/leads`, '{"leadId":"l","data":{"k\\ud800":1}}'),
      400,
      'INVALID_BODY',
      /^data\.k/,
    );
    await deliverControlCall(h);
  });

  it('keeps text that is well-formed exactly, emoji and all', async () => {
    h = await startCallsyncHarness();
    const callId = await createCall(h, 'room-emoji');
    const content = 'Ça marche 👍 — नमस्ते';
    expect(
      (await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [item('e1', content)] })).status,
    ).toBe(202);
    await h.recordingStarted('room-emoji');
    await h.api('POST', `/v1/calls/${callId}/end`, {});
    const { document } = await h.crm.waitForCallData(callId);
    expect(document.transcription.conversation_items[0]!.content).toBe(content);
  });
});

describe('timestamps', () => {
  it('refuses times more than 5 minutes ahead and an end before the start, naming the field', async () => {
    h = await startCallsyncHarness();
    const callId = await createCall(h, 'room-times');
    const inAnHour = new Date(Date.now() + 60 * 60_000).toISOString();
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [item('t1', 'x', inAnHour)] }),
      400,
      'INVALID_BODY',
      'items.0.timestamp',
    );
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/end`, { endedAt: '2099-01-01T00:00:00Z' }),
      400,
      'INVALID_BODY',
      'endedAt',
    );
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/end`, { endedAt: new Date(startMs - 1000).toISOString() }),
      400,
      'INVALID_BODY',
      'endedAt',
    );
    expectRefused(
      await h.api('POST', '/v1/calls', {
        roomName: 'room-future',
        callerNumber: '+1',
        config: PERSONA_CONFIG,
        startedAt: inAnHour,
      }),
      400,
      'INVALID_BODY',
      'startedAt',
    );
    // A little clock drift is fine.
    const soon = new Date(Date.now() + 60_000).toISOString();
    expect(
      (await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [item('t2', 'x', soon)] })).status,
    ).toBe(202);
    await deliverControlCall(h);
  });
});

describe('late events', () => {
  it('takes items and leads until the call data is built, then answers 409 CALL_DATA_SENT', async () => {
    h = await startCallsyncHarness();
    const room = 'room-late';
    const callId = await createCall(h, room);
    await h.recordingStarted(room);
    // The upload is held a moment by the CRM: the call is still collecting meanwhile.
    h.crm.injectFaults('upload', [{ delayMs: 1_000 }]);
    h.crm.injectFaults('call-data', [{ delayMs: 1_000 }]);
    expect((await h.api('POST', `/v1/calls/${callId}/end`, {})).status).toBe(202);
    await h.crm.waitForRequests('upload', 1);
    expect((await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [item('late-1')] })).status).toBe(
      202,
    );
    expect((await h.api('POST', `/v1/calls/${callId}/leads`, { leadId: 'late-lead' })).status).toBe(202);

    // The call data is built and on its way: nothing more can reach the CRM.
    await h.crm.waitForRequests('call-data', 1);
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [item('late-2')] }),
      409,
      'CALL_DATA_SENT',
      '',
    );
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/leads`, { leadId: 'late-lead-2' }),
      409,
      'CALL_DATA_SENT',
      '',
    );

    const { document } = await h.crm.waitForCallData(callId);
    expect(document.transcription.conversation_items.map((entry) => entry.content)).toEqual(['turn late-1']);
    expect(document.lead).toMatchObject({ leadId: 'late-lead' });
    // After delivery too.
    expectRefused(
      await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [item('late-3')] }),
      409,
      'CALL_DATA_SENT',
      '',
    );
  });
});

describe('API answers', () => {
  it('answers 409 CALL_ID_TAKEN for a callId of another room, and 400 for an unknown state filter', async () => {
    h = await startCallsyncHarness();
    await createCall(h, 'room-owner', { callId: 'call-owned' });
    expectRefused(
      await h.api('POST', '/v1/calls', {
        roomName: 'room-thief',
        callerNumber: '+1',
        config: PERSONA_CONFIG,
        callId: 'call-owned',
      }),
      409,
      'CALL_ID_TAKEN',
      'callId',
    );
    expectRefused(await h.api('GET', '/v1/calls?state=faild'), 400, 'INVALID_QUERY', 'state');
    expect((await h.api('GET', '/v1/calls?state=failed')).status).toBe(200);
    await deliverControlCall(h);
  });
});

describe('slow clients', () => {
  it('cannot hold connections: beyond the cap they are refused, headers must come in time, and the service delivers meanwhile', async () => {
    h = await startCallsyncHarness({ connectionLimits: { maxConnections: 40, headersTimeoutMs: 1_000 } });
    const { hostname, port } = new URL(h.url);
    const sockets: Socket[] = [];
    const closed: Promise<void>[] = [];
    for (let index = 0; index < 60; index += 1) {
      const socket = connect({ host: hostname, port: Number(port) });
      socket.on('error', () => undefined);
      closed.push(new Promise((resolve) => socket.once('close', () => resolve())));
      // A request that never finishes its headers (one byte now, nothing more).
      socket.write('P');
      sockets.push(socket);
    }
    // Every slow connection ends: the 20 over the cap at once, the others at the headers deadline.
    await Promise.all(closed);
    await deliverControlCall(h);
    for (const socket of sockets) socket.destroy();
  });
});

describe('webhooks take effect once, for the room instance they are about', () => {
  it('a replayed room_finished of an earlier room of the same name does not end the new call', async () => {
    h = await startCallsyncHarness();
    const room = 'room-reused';
    const finished = h.emulator.waitForEvent(
      'webhook:emitted',
      (webhook) => webhook.name === 'room_finished',
    );

    // The first call in the room: delivered, then its room closes.
    const first = await createCall(h, room);
    await h.recordingStarted(room);
    await h.api('POST', `/v1/calls/${first}/end`, {});
    await h.crm.waitForCallData(first);
    h.emulator.closeRoom({ room });
    const { body: earlierRoomFinished } = await finished;

    // A new call in a new room of the same name.
    const second = await createCall(h, room);
    await h.recordingStarted(room);
    await h.api('POST', `/v1/calls/${second}/transcript`, { items: [item('s1', 'first turn')] });

    // The earlier room_finished arrives again, validly signed: it ends nothing.
    const replay = await h.api('POST', '/livekit/webhook', earlierRoomFinished, {
      'content-type': 'application/webhook+json',
      authorization: signWebhook({ body: earlierRoomFinished, apiKey: API_KEY, apiSecret: API_SECRET }),
    });
    expect(replay.status).toBe(200);
    expect((await h.api('GET', `/v1/calls/${second}`)).body).toMatchObject({
      state: 'inConversation',
      endedAt: null,
    });

    // The new call goes on, and the CRM gets all of it.
    expect(
      (await h.api('POST', `/v1/calls/${second}/transcript`, { items: [item('s2', 'second turn', at(3))] }))
        .status,
    ).toBe(202);
    await h.api('POST', `/v1/calls/${second}/end`, {});
    const { document } = await h.crm.waitForCallData(second);
    expect(document.transcription.conversation_items.map((entry) => entry.content)).toEqual([
      'first turn',
      'second turn',
    ]);
  });
});

describe('lifecycle', () => {
  it('two drains at once both return when the delivering call is done, not at their timeout', async () => {
    h = await startCallsyncHarness();
    const callId = await createCall(h, 'room-drain');
    await h.recordingStarted('room-drain');
    h.crm.injectFaults('call-data', [{ delayMs: 1_000 }]);
    await h.api('POST', `/v1/calls/${callId}/end`, {});
    await h.crm.waitForRequests('call-data', 1);
    // Far longer than the test may run: only the delivery can end these drains.
    const DRAIN_TIMEOUT_MS = 3_600_000;
    await Promise.all([h.app.supervisor.drain(DRAIN_TIMEOUT_MS), h.app.supervisor.drain(DRAIN_TIMEOUT_MS)]);
    expect((await h.api('GET', `/v1/calls/${callId}`)).body).toMatchObject({ state: 'done' });
  });
});
