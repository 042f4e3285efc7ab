/**
 * Two supervisors on one PostgreSQL schema, in this process (the production wiring of
 * `createCallsyncApp` twice): any instance takes any request for any call, LiveKit's webhooks
 * reach both, and a drained instance's calls move to the other. What the CRM receives is
 * checked against the contract ("A fleet", "What reaches the CRM").
 *
 * The multi-process version, with SIGKILL and SIGSTOP, is `fleet.test.ts`.
 */
import { Writable } from 'node:stream';
import { EgressStatus } from 'livekit-server-sdk';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createCallsyncApp, type CallsyncApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logging/logger.ts';
import { CALLER_NUMBER, PERSONA_CONFIG, callTimes, callsyncApi } from '../helpers/callsync-api.ts';
import { postgresSchemas } from '../helpers/postgres-schemas.ts';
import { startSandboxes, type Sandboxes } from '../helpers/sandboxes.ts';

const API_KEY = 'APIfleetkey';
const API_SECRET = 'fleet-secret-that-is-long-enough-for-hs256';
const TOKEN = 'fleet-ingest-token';

const schemas = postgresSchemas('callsync_fleet_ip');
afterAll(() => schemas.dropAll());

interface Instance {
  id: string;
  app: CallsyncApp;
  url: string;
  logs: Record<string, unknown>[];
}

let sandboxes: Sandboxes | undefined;
let instances: Instance[] = [];
afterEach(async () => {
  for (const instance of instances) await instance.app.close();
  instances = [];
  await sandboxes?.close();
  sandboxes = undefined;
});

async function fleetOf(ids: readonly string[]) {
  const sb = await startSandboxes({
    prefix: 'callsync-fleet-',
    liveKit: { apiKey: API_KEY, apiSecret: API_SECRET },
    ingestToken: TOKEN,
    emulator: { departureTimeoutMs: 200 },
  });
  sandboxes = sb;
  const store = schemas.storeUrl();
  for (const id of ids) {
    const logs: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as never);
        done();
      },
    });
    const env = {
      ...sb.env,
      CALLSYNC_STORE: store,
      CALLSYNC_PORT: '0',
      CALLSYNC_INSTANCE_ID: id,
      CALLSYNC_LEASE_SECONDS: '2',
      LOG_LEVEL: 'debug',
    };
    const app = createCallsyncApp(loadConfig(env), {
      logger: createLogger({ level: 'debug', destination: sink }),
      limits: { egressPollIntervalMs: 200 },
    });
    const { url } = await app.start();
    // Every webhook goes to every instance: each must take effect once.
    sb.emulator.addWebhookUrl(`${url}/livekit/webhook`);
    instances.push({ id, app, url, logs });
  }
  const api = (instance: Instance, method: 'GET' | 'POST', path: string, body?: unknown) =>
    callsyncApi(instance.url, method, path, body, { token: TOKEN });
  return { sb, api, instances: [...instances] };
}

const { at } = callTimes();
const item = (n: number) => ({
  id: `m${n}`,
  role: n % 2 === 0 ? 'user' : 'assistant',
  content: `turn ${n}`,
  timestamp: at(n),
});

describe('two supervisors on one PostgreSQL', () => {
  it('any instance takes any event; the owner applies it; the CRM gets everything once', async () => {
    const {
      sb,
      api,
      instances: [a, b],
    } = await fleetOf(['fleet-a', 'fleet-b']);
    if (!a || !b) throw new Error('two instances');
    sb.emulator.createRoom({ name: 'room-fleet-1' });
    sb.emulator.startSipCall({ room: 'room-fleet-1', callerNumber: CALLER_NUMBER, attributes: {} });
    const created = await api(a, 'POST', '/v1/calls', {
      roomName: 'room-fleet-1',
      callerNumber: CALLER_NUMBER,
      config: PERSONA_CONFIG,
      startedAt: at(0),
    });
    expect(created.status).toBe(201);
    const callId = created.body.callId as string;
    // The create repeated at the other instance is the same call.
    expect(
      await api(b, 'POST', '/v1/calls', {
        roomName: 'room-fleet-1',
        callerNumber: CALLER_NUMBER,
        config: PERSONA_CONFIG,
      }),
    ).toMatchObject({ status: 200, body: { callId } });
    expect((await api(b, 'GET', `/v1/calls/${callId}`)).body).toMatchObject({
      owner: { instanceId: 'fleet-a' },
    });

    // Alternating instances, as a round-robin balancer sends them.
    for (let n = 1; n <= 6; n += 1) {
      const via = n % 2 === 0 ? a : b;
      expect((await api(via, 'POST', `/v1/calls/${callId}/transcript`, { items: [item(n)] })).status).toBe(
        202,
      );
    }
    expect(
      (await api(b, 'POST', `/v1/calls/${callId}/leads`, { leadId: 'lead-1', data: { name: 'first' } }))
        .status,
    ).toBe(202);
    expect(
      (await api(a, 'POST', `/v1/calls/${callId}/leads`, { leadId: 'lead-2', data: { name: 'latest' } }))
        .status,
    ).toBe(202);
    const [egress] = sb.emulator.listEgress({ roomName: 'room-fleet-1' });
    if (egress)
      await sb.emulator.waitForEgress(egress.egressId, (info) => info.status === EgressStatus.EGRESS_ACTIVE);
    expect((await api(b, 'POST', `/v1/calls/${callId}/end`, { endedAt: at(10) })).status).toBe(202);

    const { document } = await sb.crm.waitForCallData(callId);
    const doc = document as {
      transcription: { conversation_items: { content: string }[] };
      lead: { leadId?: string } | null;
      callDetails: { recordingUrl: string | null };
    };
    expect(doc.transcription.conversation_items.map((entry) => entry.content)).toEqual(
      [1, 2, 3, 4, 5, 6].map((n) => `turn ${n}`),
    );
    expect(doc.callDetails.recordingUrl).not.toBeNull();
    const received = sb.crm.received();
    expect(received.callData.filter((entry) => entry.idempotencyKey === `${callId}:call-data`)).toHaveLength(
      1,
    );
    expect(received.uploads.filter((entry) => entry.idempotencyKey === `${callId}:recording`)).toHaveLength(
      1,
    );

    // After the call data, items get 409 from either instance.
    for (const via of [a, b]) {
      expect(await api(via, 'POST', `/v1/calls/${callId}/transcript`, { items: [item(99)] })).toMatchObject({
        status: 409,
        body: { error: 'CALL_DATA_SENT' },
      });
    }
  });

  it('a drained instance hands its calls over; the other delivers them with what was accepted', async () => {
    const {
      sb,
      api,
      instances: [a, b],
    } = await fleetOf(['fleet-c', 'fleet-d']);
    if (!a || !b) throw new Error('two instances');
    const callIds: string[] = [];
    for (const n of [1, 2, 3]) {
      sb.emulator.createRoom({ name: `room-move-${n}` });
      sb.emulator.startSipCall({ room: `room-move-${n}`, callerNumber: CALLER_NUMBER, attributes: {} });
      const created = await api(a, 'POST', '/v1/calls', {
        roomName: `room-move-${n}`,
        callerNumber: CALLER_NUMBER,
        config: PERSONA_CONFIG,
        startedAt: at(0),
      });
      expect(created.status).toBe(201);
      callIds.push(created.body.callId as string);
      expect(
        (await api(a, 'POST', `/v1/calls/${callIds.at(-1)}/transcript`, { items: [item(1)] })).status,
      ).toBe(202);
    }
    await a.app.drain();
    expect(a.logs.some((line) => line.msg === 'calls handed over to the fleet')).toBe(true);

    // The drained instance still answers as a member (it logs; the new owner decides).
    for (const callId of callIds) {
      expect((await api(a, 'POST', `/v1/calls/${callId}/transcript`, { items: [item(2)] })).status).toBe(202);
      expect((await api(b, 'POST', `/v1/calls/${callId}/end`, { endedAt: at(5) })).status).toBe(202);
    }
    for (const callId of callIds) {
      const { document } = await sb.crm.waitForCallData(callId);
      const items = (document as { transcription: { conversation_items: { content: string }[] } })
        .transcription.conversation_items;
      expect(items.map((entry) => entry.content)).toEqual(['turn 1', 'turn 2']);
      expect((await api(b, 'GET', `/v1/calls/${callId}`)).body).toMatchObject({
        owner: { instanceId: 'fleet-d' },
      });
    }
    const takenOver = b.logs.filter((line) => line.msg === 'call taken over').map((line) => line.callId);
    expect(takenOver.sort()).toEqual([...callIds].sort());
  });
});
