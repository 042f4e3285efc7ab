/**
 * Property: three supervisors on one PostgreSQL schema, in this process, under generated
 * interleavings of calls, events sent to any instance, stalls (an instance's timers held, as a
 * stopped process's: no renewal, so its lease lapses and its calls move), resumes, and crashes
 * (an instance stalls for good and a new process with its id starts):
 * - one driver at a time: no call runs on two instances that both trust their lease;
 * - nothing accepted is lost: every transcript item answered 202 is in the call data the CRM
 *   receives, the lead is one that was answered 202, every call is delivered;
 * - each CRM step once per key: one accepted call data per `Idempotency-Key`.
 *
 * Time: the real clock (PostgreSQL judges leases on its own), with each instance's timers
 * pausable (`pausable-time.ts`); 1 s leases keep take-overs quick. Waits are on real answers
 * and on the CRM sandbox's events, bounded.
 */
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { createCallsyncApp, type CallsyncApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logging/logger.ts';
import {
  CALLER_NUMBER,
  PERSONA_CONFIG,
  callTimes,
  callsyncApi,
  type ApiAnswer,
} from '../helpers/callsync-api.ts';
import { pausableTime, type PausableTime } from '../helpers/pausable-time.ts';
import { postgresSchemas } from '../helpers/postgres-schemas.ts';
import { startSandboxes, type Sandboxes } from '../helpers/sandboxes.ts';

const API_KEY = 'APIfleetprop';
const API_SECRET = 'fleet-property-secret-long-enough-for-hs256';
const TOKEN = 'fleet-property-token';
const INSTANCES = ['p-a', 'p-b', 'p-c'] as const;
/** A 503 is retried this many times (the agent's reporter retries it too). */
const RETRIES_503 = 4;

const schemas = postgresSchemas('callsync_fleet_prop');
afterAll(() => schemas.dropAll());

type Op =
  | { kind: 'create'; via: number }
  | { kind: 'item'; call: number; via: number }
  | { kind: 'lead'; call: number; via: number }
  | { kind: 'end'; call: number; via: number }
  /** `outlast`: the stall lasts until the others have taken its calls over (its lease lapsed). */
  | { kind: 'stall'; who: number; outlast: boolean }
  | { kind: 'resume'; who: number }
  | { kind: 'crash'; who: number };

const via = fc.nat({ max: INSTANCES.length - 1 });
const call = fc.nat({ max: 5 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('create' as const), via }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('item' as const), call, via }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('lead' as const), call, via }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('end' as const), call, via }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('stall' as const), who: via, outlast: fc.boolean() }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('resume' as const), who: via }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('crash' as const), who: via }) },
);

interface Instance {
  id: string;
  app: CallsyncApp;
  url: string;
  time: PausableTime;
  crashed: boolean;
}

interface CallRecord {
  callId: string;
  items: Map<string, number>;
  leads: Map<string, number>;
  ended: boolean;
}

async function fleetRun(ops: readonly Op[]): Promise<void> {
  const sb: Sandboxes = await startSandboxes({
    prefix: 'callsync-fleet-prop-',
    liveKit: { apiKey: API_KEY, apiSecret: API_SECRET },
    ingestToken: TOKEN,
    emulator: { departureTimeoutMs: 200 },
  });
  const store = schemas.storeUrl();
  const instances: Instance[] = [];
  const every: Instance[] = [];
  const quiet = new Writable({ write: (_chunk, _encoding, done) => done() });
  const start = async (id: string): Promise<Instance> => {
    const time = pausableTime();
    const env = {
      ...sb.env,
      CALLSYNC_STORE: store,
      CALLSYNC_PORT: '0',
      CALLSYNC_INSTANCE_ID: id,
      CALLSYNC_LEASE_SECONDS: '1',
    };
    const app = createCallsyncApp(loadConfig(env), {
      logger: createLogger({ level: 'silent', destination: quiet }),
      time,
      limits: { egressPollIntervalMs: 200 },
    });
    const { url } = await app.start();
    sb.emulator.addWebhookUrl(`${url}/livekit/webhook`);
    const instance = { id, app, url, time, crashed: false };
    every.push(instance);
    return instance;
  };
  const calls: CallRecord[] = [];
  const { at } = callTimes();
  let seconds = 0;
  let rooms = 0;
  try {
    for (const id of INSTANCES) instances.push(await start(id));
    /** An instance that serves requests now (a balancer's health check skips stalled ones). */
    const serving = (preferred: number): Instance | undefined => {
      const live = instances.filter((instance) => !instance.time.paused);
      return live[preferred % Math.max(1, live.length)];
    };
    const send = async (preferred: number, method: 'GET' | 'POST', path: string, body?: unknown) => {
      let answer: ApiAnswer | undefined;
      for (let attempt = 0; attempt <= RETRIES_503; attempt += 1) {
        const instance = serving(preferred + attempt);
        if (!instance) return undefined;
        answer = await callsyncApi(instance.url, method, path, body, { token: TOKEN });
        if (answer.status !== 503) return answer;
      }
      return answer;
    };

    for (const op of ops) {
      if (op.kind === 'create') {
        rooms += 1;
        const room = `room-prop-${rooms}`;
        sb.emulator.createRoom({ name: room });
        sb.emulator.startSipCall({ room, callerNumber: CALLER_NUMBER, attributes: {} });
        const created = await send(op.via, 'POST', '/v1/calls', {
          roomName: room,
          callerNumber: CALLER_NUMBER,
          config: PERSONA_CONFIG,
          startedAt: at(0),
        });
        if (created?.status === 201) {
          calls.push({
            callId: created.body.callId as string,
            items: new Map(),
            leads: new Map(),
            ended: false,
          });
        }
      } else if (op.kind === 'item' || op.kind === 'lead' || op.kind === 'end') {
        const record = calls[op.call % Math.max(1, calls.length)];
        if (!record) continue;
        seconds += 1;
        if (op.kind === 'item') {
          const id = `i${seconds}`;
          const answer = await send(op.via, 'POST', `/v1/calls/${record.callId}/transcript`, {
            items: [{ id, role: 'user', content: `said ${id}`, timestamp: at(seconds) }],
          });
          if (answer) record.items.set(id, answer.status);
        } else if (op.kind === 'lead') {
          const leadId = `lead-${seconds}`;
          const answer = await send(op.via, 'POST', `/v1/calls/${record.callId}/leads`, { leadId });
          if (answer) record.leads.set(leadId, answer.status);
        } else {
          const answer = await send(op.via, 'POST', `/v1/calls/${record.callId}/end`, {
            endedAt: at(seconds),
          });
          if (answer?.status === 202) record.ended = true;
        }
      } else {
        const instance = instances[op.who];
        if (!instance) continue;
        if (op.kind === 'stall') {
          instance.time.pause();
          if (op.outlast) await takenOver(instance, calls, instances);
        } else if (op.kind === 'resume' && !instance.crashed) instance.time.resume();
        else if (op.kind === 'crash') {
          // It stops for good (its process is gone); a new process starts under its id.
          instance.time.pause();
          instance.crashed = true;
          instances[op.who] = await start(instance.id);
        }
      }
      // One driver at a time among the living, whatever each believes.
      for (const { callId } of calls) {
        const drivers = every.filter(
          (instance) =>
            !instance.crashed &&
            instance.app.supervisor.isDriving(callId) &&
            instance.app.supervisor.leaseTrusted(),
        );
        expect(
          drivers.map((instance) => instance.id),
          `drivers of ${callId}`,
        ).toHaveLength(Math.min(1, drivers.length));
      }
    }

    // Every stalled (not crashed) instance comes back; every call is ended.
    for (const instance of instances) instance.time.resume();
    for (const record of calls) {
      if (record.ended) continue;
      seconds += 1;
      const answer = await send(0, 'POST', `/v1/calls/${record.callId}/end`, { endedAt: at(seconds) });
      expect([202, 409]).toContain(answer?.status);
    }
    for (const record of calls) {
      const { document } = await sb.crm.waitForCallData(record.callId, { timeoutMs: 25_000 });
      const doc = document as {
        transcription: { conversation_items: { content: string }[] };
        lead: { leadId?: string; _id?: string } | null;
      };
      const delivered = new Set(doc.transcription.conversation_items.map((entry) => entry.content));
      for (const [id, status] of record.items) {
        if (status === 202) expect(delivered.has(`said ${id}`), `${record.callId} item ${id}`).toBe(true);
        else expect([409], `${record.callId} item ${id} answered ${status}`).toContain(status);
      }
    }
    const received = sb.crm.received();
    let takeovers = 0;
    for (const instance of every) {
      const metric = await instance.app.registry.getSingleMetric('callsync_fleet_takeovers_total')?.get();
      takeovers += metric?.values[0]?.value ?? 0;
    }
    const statuses = calls.flatMap((record) => [...record.items.values(), ...record.leads.values()]);
    console.log(
      `fleet run: ${ops.length} steps, ${calls.length} calls, ${ops.filter((op) => op.kind === 'stall').length} stalls, ` +
        `${ops.filter((op) => op.kind === 'crash').length} crashes, ${takeovers} take-overs, answers ${JSON.stringify(
          Object.fromEntries(
            [...new Set(statuses)].map((status) => [status, statuses.filter((x) => x === status).length]),
          ),
        )}, duplicates ${JSON.stringify(received.duplicates)}`,
    );
    for (const { callId } of calls) {
      expect(
        received.callData.filter((entry) => entry.idempotencyKey === `${callId}:call-data`),
      ).toHaveLength(1);
      expect(
        received.uploads.filter((entry) => entry.idempotencyKey === `${callId}:recording`).length,
      ).toBeLessThanOrEqual(1);
    }
  } finally {
    for (const instance of every) instance.time.resume();
    for (const instance of every) await instance.app.close();
    await sb.close();
  }
}

/** How long a stall that outlasts the lease may take to end in take-overs before the run fails. */
const TAKE_OVER_WAIT_MS = 15_000;
const TAKE_OVER_POLL_MS = 50;

/** Resolves once every call the stalled instance drove is driven by a serving one. */
async function takenOver(stalled: Instance, calls: readonly CallRecord[], instances: readonly Instance[]) {
  const deadline = Date.now() + TAKE_OVER_WAIT_MS;
  const owned = calls.filter((record) => stalled.app.supervisor.isDriving(record.callId));
  for (;;) {
    const moved = owned.every((record) =>
      instances.some(
        (instance) =>
          instance !== stalled && !instance.time.paused && instance.app.supervisor.isDriving(record.callId),
      ),
    );
    // A call that finished meanwhile has nobody to move to.
    if (moved || instances.every((instance) => instance === stalled || instance.time.paused)) return;
    if (Date.now() > deadline) {
      const stuck = owned.filter(
        (record) =>
          !instances.some(
            (instance) => instance !== stalled && instance.app.supervisor.isDriving(record.callId),
          ),
      );
      // Finished calls are not driven anywhere: only live ones must have moved.
      const live = await Promise.all(
        stuck.map(async (record) => ({
          record,
          body: (
            await callsyncApi(
              instances.find((i) => !i.time.paused)!.url,
              'GET',
              `/v1/calls/${record.callId}`,
              undefined,
              { token: TOKEN },
            )
          ).body,
        })),
      );
      const notFinal = live.filter(({ body }) => body.state !== 'done' && body.state !== 'failed');
      if (notFinal.length === 0) return;
      throw new Error(
        `not taken over within ${TAKE_OVER_WAIT_MS} ms: ${notFinal.map(({ record }) => record.callId).join(', ')}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, TAKE_OVER_POLL_MS));
  }
}

describe('a fleet of three supervisors (property)', () => {
  it('keeps one driver per call, loses nothing accepted, and reaches the CRM once per key', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 6, maxLength: 24 }), (ops) => fleetRun(ops)),
      { numRuns: 10, endOnFailure: true },
    );
  }, 600_000);
});
