/**
 * The HTTP API's answers to bad input, on the real supervisor: each malformed request gets its
 * documented status and an error naming the field, nothing already accepted changes, and the
 * service keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  INGEST_TOKEN,
  PERSONA_CONFIG,
  startCallsyncHarness,
  type CallsyncHarness,
} from '../helpers/callsync-harness.ts';

let h: CallsyncHarness;
let callId: string;

beforeAll(async () => {
  h = await startCallsyncHarness();
  h.startLiveKitCall('room-api');
  const created = await h.api('POST', '/v1/calls', {
    roomName: 'room-api',
    callerNumber: '+15550100',
    config: PERSONA_CONFIG,
  });
  callId = created.body.callId as string;
  await h.api('POST', `/v1/calls/${callId}/transcript`, {
    items: [
      {
        id: 'kept',
        role: 'user',
        content: 'accepted before the bad input',
        timestamp: new Date().toISOString(),
      },
    ],
  });
});
afterAll(async () => {
  await h.close();
});

const validCall = { roomName: 'room-valid', callerNumber: '+15550101', config: PERSONA_CONFIG };

describe('bad input', () => {
  it.each([
    ['a missing roomName', 'roomName', { ...validCall, roomName: undefined }],
    ['a config without campaigns', 'config.campaigns', { ...validCall, config: {} }],
    [
      'a campaign without voice agents',
      'config.campaigns.0.voiceAgents',
      { ...validCall, config: { campaigns: [{ _id: 'c', client: 'k', voiceAgents: [] }] } },
    ],
    ['an unknown direction', 'direction', { ...validCall, direction: 'sideways' }],
    ['a startedAt that is not ISO-8601', 'startedAt', { ...validCall, startedAt: 'yesterday' }],
    ['a callId with a slash', 'callId', { ...validCall, callId: 'a/b' }],
  ])('POST /v1/calls with %s is 400 naming %s', async (_name, field, body) => {
    const answer = await h.api('POST', '/v1/calls', body);
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ error: 'INVALID_BODY', details: { field } });
    expect(answer.body.message).toContain(field);
  });

  it.each([
    [
      'transcript',
      'items.0.timestamp',
      { items: [{ id: 'x', role: 'user', content: 'hi', timestamp: 'not a time' }] },
    ],
    [
      'transcript',
      'items.0.role',
      { items: [{ id: 'x', role: 'system', content: 'hi', timestamp: new Date().toISOString() }] },
    ],
    ['transcript', 'items', { items: [] }],
    ['leads', 'leadId', { data: { name: 'no id' } }],
    ['end', 'status', { status: 'exploded' }],
    ['end', 'endedAt', { endedAt: 12 }],
  ])('POST /v1/calls/{id}/%s with a bad body is 400 naming %s', async (route, field, body) => {
    const answer = await h.api('POST', `/v1/calls/${callId}/${route}`, body);
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ error: 'INVALID_BODY', details: { field } });
  });

  it('answers malformed JSON, a wrong content type and an over-size body with their statuses', async () => {
    expect((await h.api('POST', '/v1/calls', '{"roomName": ')).body).toMatchObject({ error: 'INVALID_BODY' });
    expect((await h.api('POST', '/v1/calls', '{"roomName": ')).status).toBe(400);
    const wrongType = await h.api('POST', '/v1/calls', 'roomName=x', { 'content-type': 'text/plain' });
    expect(wrongType).toMatchObject({ status: 415, body: { error: 'UNSUPPORTED_MEDIA_TYPE' } });
    const huge = {
      items: [
        { id: 'big', role: 'user', content: 'x'.repeat(1024 * 1024), timestamp: new Date().toISOString() },
      ],
    };
    expect(await h.api('POST', `/v1/calls/${callId}/transcript`, huge)).toMatchObject({
      status: 413,
      body: { error: 'BODY_TOO_LARGE' },
    });
  });

  it('refuses /v1 without the bearer token, and unknown calls and routes with 404', async () => {
    for (const authorization of ['', 'Bearer wrong-token', INGEST_TOKEN]) {
      const answer = await h.api('GET', `/v1/calls/${callId}`, undefined, { authorization });
      expect(answer).toMatchObject({ status: 401, body: { error: 'UNAUTHORIZED' } });
    }
    expect(await h.api('POST', '/v1/calls/CALL-nope/end', {})).toMatchObject({
      status: 404,
      body: { error: 'CALL_NOT_FOUND' },
    });
    expect(await h.api('GET', '/v1/calls/CALL-nope')).toMatchObject({
      status: 404,
      body: { error: 'CALL_NOT_FOUND' },
    });
    expect(await h.api('POST', '/v1/calls/CALL-nope/retry')).toMatchObject({ status: 404 });
    expect(await h.api('GET', '/v2/everything')).toMatchObject({
      status: 404,
      body: { error: 'ROUTE_NOT_FOUND' },
    });
    expect(await h.api('GET', '/v1/calls?limit=lots')).toMatchObject({
      status: 400,
      body: { error: 'INVALID_QUERY', details: { field: 'limit' } },
    });
    expect(await h.api('POST', `/v1/calls/${callId}/retry`)).toMatchObject({
      status: 409,
      body: { error: 'CALL_NOT_RETRYABLE' },
    });
  });

  it('rejects an unsigned or forged webhook with 401 and changes nothing', async () => {
    const body = JSON.stringify({
      event: 'room_finished',
      room: { name: 'room-api' },
      id: 'EV_forged',
      createdAt: '1',
    });
    for (const authorization of [undefined, 'not.a.jwt', 'Bearer x']) {
      const answer = await request(`${h.url}/livekit/webhook`, {
        method: 'POST',
        headers: { 'content-type': 'application/webhook+json', ...(authorization ? { authorization } : {}) },
        body,
      });
      expect(answer.statusCode).toBe(401);
      expect(await answer.body.json()).toMatchObject({ error: 'WEBHOOK_UNAUTHORIZED' });
    }
    expect((await h.api('GET', `/v1/calls/${callId}`)).body).toMatchObject({
      state: 'inConversation',
      endedAt: null,
    });
  });

  it('creates one call when the same room is posted many times at once', async () => {
    h.startLiveKitCall('room-concurrent');
    const body = { roomName: 'room-concurrent', callerNumber: '+15550102', config: PERSONA_CONFIG };
    const answers = await Promise.all(Array.from({ length: 8 }, () => h.api('POST', '/v1/calls', body)));
    expect(answers.map((answer) => answer.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 201]);
    expect(new Set(answers.map((answer) => answer.body.callId)).size).toBe(1);
  });

  it('keeps serving, and what it accepted before is intact', async () => {
    expect((await h.api('GET', '/healthz')).status).toBe(200);
    expect((await h.api('GET', '/readyz')).status).toBe(200);
    const call = await h.api('GET', `/v1/calls/${callId}`);
    expect(call.body).toMatchObject({ state: 'inConversation', transcriptItems: 1 });
    h.startLiveKitCall('room-valid');
    expect((await h.api('POST', '/v1/calls', validCall)).status).toBe(201);
    const metrics = await request(`${h.url}/metrics`);
    expect(metrics.statusCode).toBe(200);
    expect(await metrics.body.text()).toContain('callsync_calls_active{state="inConversation"}');
  });
});
