/**
 * The fleet (README, "Running a fleet"), end to end: three supervisor processes on one
 * PostgreSQL schema, behind a round-robin HTTP proxy in this process (`round-robin-proxy.ts`);
 * every request from the test's agent client and every LiveKit webhook from the emulator goes
 * through the proxy, so any instance gets any of them. `CALLSYNC_LEASE_SECONDS=3` keeps the run
 * short (the take-over bound below is judged against it).
 *
 * Calls at every stage when the faults come: delivered before them; ended with the egress held
 * in ENDING (the emulator finalises it seconds later); ended with the CRM holding the recording
 * upload open (a delayed answer); in conversation (transcript batches and leads sent all along,
 * one request at a time per call, as an agent's reporter sends them); and new calls created and
 * finished during each fault. Faults, one after another: SIGKILL instance a; SIGSTOP instance b
 * for 8 s, then SIGCONT (a is restarted meanwhile, same CALLSYNC_INSTANCE_ID and port); SIGTERM
 * (drain) instance c. Then the conversations end and everything must be delivered.
 *
 * The client retries `503` (whatever its code) with the real reporter's backoff (`backoff.ts`,
 * capped shorter), and what the proxy answers for a backend that died under a request (a
 * network error to an agent; the reporter retries those too). Everything else is final.
 *
 * Checked against the contract:
 * - every call is delivered: its call data in the CRM, with the recording, `done`/`delivered`;
 * - at most one accepted CRM effect per `Idempotency-Key` (replays counted and printed);
 * - every transcript item and lead answered 2xx is in the call's CRM document;
 * - no `409` and no `5xx` but retried `503`s;
 * - calls of the killed and of the stopped instance are taken over within the lease + 5 s
 *   (a sweep, plus slack for two noisy cores), from the `call taken over` log lines against the
 *   fault's time.
 *
 * Synchronisation: HTTP answers, the children's log lines, the emulator's egress events, the CRM
 * sandbox's read-out and PostgreSQL's rows. Waits on time alone: the 8 s of SIGSTOP (the fault
 * itself), the client's retry backoff, and the conversation's pace between two batches (the
 * workload's rate, not a synchronisation).
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { EgressStatus } from 'livekit-server-sdk';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { reporterRetryDelayMs } from '../../src/agent/backoff.ts';
import type { CallData } from '../../src/payload/call-data.ts';
import type { RoomBehaviour } from '../../src/sandbox/livekit/index.ts';
import { callsyncApi, CALLER_NUMBER, PERSONA_CONFIG } from '../helpers/callsync-api.ts';
import { spawnCallsync, type ChildCallsync } from '../helpers/child-callsync.ts';
import { freePort } from '../helpers/free-port.ts';
import { POSTGRES_URL, postgresSchemas } from '../helpers/postgres-schemas.ts';
import { startRoundRobinProxy, type RoundRobinProxy } from '../../src/demo/round-robin-proxy.ts';
import { egressIdOf, startSandboxes, type Sandboxes } from '../helpers/sandboxes.ts';

const LEASE_SECONDS = 3;
/** The contract says "within the lease plus a few seconds"; two busy cores get five. */
const TAKEOVER_BOUND_MS = (LEASE_SECONDS + 5) * 1_000;
const STOP_MS = 8_000;
/** Group "egress": the egress stays ENDING this long after the call ends (through the kill). */
const HELD_ENDING_MS = 7_000;
/** Group "upload": the CRM answers the recording upload this late (the owner dies meanwhile). */
const UPLOAD_DELAY_MS = 6_000;
/** Between two transcript batches of a call in conversation: the workload's pace. */
const CONVERSATION_PACE_MS = 250;
/** One request, retries included, may take this long before the test fails naming it. */
const REQUEST_DEADLINE_MS = 30_000;
/** Any one awaited condition (a take-over, a start, the deliveries at the end). */
const WAIT_MS = 30_000;

const API_KEY = 'APIfleetkey';
const API_SECRET = 'fleet-livekit-secret-7c41e9a2b58d3f60-long-enough-for-hs256';
const CRM_API_KEY = 'fleet-crm-key-2a9d4e71c0b8f635';
const INGEST_TOKEN = 'fleet-ingest-token-61f0c3a9e2d7b854';

const schemas = postgresSchemas('callsync_fleet');

interface Instance {
  id: string;
  port: number;
  /** Every process started under this id, oldest first. */
  incarnations: ChildCallsync[];
}
const current = (instance: Instance) => instance.incarnations.at(-1)!;

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** One request as the client saw it: every attempt, and how it ended. */
interface Exchange {
  what: string;
  attempts: string[];
  final: number;
  code: string | undefined;
}

/**
 * The agent side: sends through the proxy, retries a `503` and a network error (a connection
 * the proxy lost to a dying backend) with the reporter's backoff, bounded; answers anything else.
 */
class FleetClient {
  readonly exchanges: Exchange[] = [];
  constructor(private readonly url: string) {}

  async send(what: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer> {
    const attempts: string[] = [];
    const deadline = Date.now() + REQUEST_DEADLINE_MS;
    for (let attempt = 1; ; attempt++) {
      let answer: Answer | undefined;
      let retry: string | undefined;
      try {
        answer = await callsyncApi(this.url, method, path, body, { token: INGEST_TOKEN, reset: true });
        const code = typeof answer.body.error === 'string' ? answer.body.error : undefined;
        if (answer.status === 503) retry = `503 ${code ?? '?'}`;
        else if (answer.status === 502 && code?.startsWith('PROXY_')) retry = `network ${code}`;
      } catch (error) {
        retry = `network ${(error as { code?: string }).code ?? String(error)}`;
      }
      if (retry === undefined && answer) {
        const code = typeof answer.body.error === 'string' ? answer.body.error : undefined;
        this.exchanges.push({ what, attempts, final: answer.status, code });
        return answer;
      }
      attempts.push(retry!);
      if (Date.now() > deadline) {
        this.exchanges.push({ what, attempts, final: -1, code: 'GAVE_UP' });
        throw new Error(`${what}: no final answer within ${REQUEST_DEADLINE_MS} ms: ${attempts.join(', ')}`);
      }
      await delay(reporterRetryDelayMs({ attempt, random: Math.random(), maxMs: 2_000 }));
    }
  }
}

/** What the client got a 2xx for, per call: all of it must be in the CRM document. */
interface FleetCall {
  group: string;
  room: string;
  callId: string;
  items: { id: string; content: string }[];
  leads: string[];
}

describe('a fleet: three supervisors on one PostgreSQL behind a round-robin proxy', () => {
  it('delivers every call once per step through a kill, a stop, a restart and a drain', async () => {
    const sandboxes: Sandboxes = await startSandboxes({
      prefix: 'callsync-fleet-',
      liveKit: { apiKey: API_KEY, apiSecret: API_SECRET },
      crmApiKey: CRM_API_KEY,
      ingestToken: INGEST_TOKEN,
      // A webhook that hits a dead or stopped instance is sent again (to the next one).
      emulator: { webhookRetry: { maxAttempts: 5, baseDelayMs: 50 } },
    });
    const { emulator, crm } = sandboxes;
    const storeUrl = schemas.storeUrl();
    const schema = new URL(storeUrl).searchParams.get('schema')!;
    const db = new pg.Client({ connectionString: POSTGRES_URL });
    await db.connect();

    const instances: Instance[] = [];
    for (const id of ['fleet-a', 'fleet-b', 'fleet-c']) {
      instances.push({ id, port: await freePort(), incarnations: [] });
    }
    const [a, b, c] = instances as [Instance, Instance, Instance];
    const proxy: RoundRobinProxy = await startRoundRobinProxy(
      instances.map((instance) => ({ name: instance.id, host: '127.0.0.1', port: instance.port })),
    );
    emulator.addWebhookUrl(`${proxy.url}/livekit/webhook`);
    cleanup = async () => {
      for (const instance of instances) {
        for (const child of instance.incarnations) {
          child.signal('SIGCONT');
          await child.kill();
        }
      }
      // Every process's log, kept for whoever reads a failure.
      const logDir = await mkdtemp(join(tmpdir(), 'callsync-fleet-logs-'));
      for (const instance of instances) {
        for (const [n, child] of instance.incarnations.entries()) {
          await writeFile(join(logDir, `${instance.id}-${n + 1}.log`), child.stdout() + child.stderr());
        }
      }
      console.log(`fleet: the supervisors' logs are in ${logDir}`);
      await proxy.close();
      await db.end();
      await sandboxes.close();
      await schemas.dropAll();
    };

    const exited = new Set<ChildCallsync>();
    const start = (instance: Instance): ChildCallsync => {
      const child = spawnCallsync({
        env: {
          ...sandboxes.env,
          CALLSYNC_STORE: storeUrl,
          CALLSYNC_HOST: '127.0.0.1',
          CALLSYNC_PORT: String(instance.port),
          CALLSYNC_INSTANCE_ID: instance.id,
          CALLSYNC_LEASE_SECONDS: String(LEASE_SECONDS),
          // Outlasts the held ENDING and the faults: no recording is given up early.
          CALLSYNC_EGRESS_DEADLINE_SECONDS: '60',
          LOG_LEVEL: 'info',
        },
        ingestToken: INGEST_TOKEN,
      });
      instance.incarnations.push(child);
      void child.exited.then(() => exited.add(child));
      return child;
    };
    const allChildren = () => instances.flatMap((instance) => instance.incarnations);
    await Promise.all(instances.map((instance) => start(instance).waitReady()));

    const client = new FleetClient(proxy.url);
    const expect2xx = (answer: Answer, what: string) => {
      if (answer.status < 200 || answer.status >= 300)
        throw new Error(`${what}: answered ${answer.status} ${JSON.stringify(answer.body)}`);
    };
    const calls: FleetCall[] = [];

    /** A SIP call in a new room, reported to callsync through the proxy. */
    const createCall = async (
      group: string,
      room: string,
      behaviour: RoomBehaviour = {},
    ): Promise<FleetCall> => {
      emulator.createRoom({ name: room });
      emulator.setRoomBehaviour(room, { recordingSeconds: 2, ...behaviour });
      emulator.startSipCall({ room, callerNumber: CALLER_NUMBER, attributes: { 'sip.ruleID': 'SDR_fleet' } });
      const created = await client.send(`create ${room}`, 'POST', '/v1/calls', {
        roomName: room,
        callerNumber: CALLER_NUMBER,
        config: PERSONA_CONFIG,
        direction: 'inbound',
        startedAt: new Date(Date.now() - 60_000).toISOString(),
      });
      expect2xx(created, `POST /v1/calls ${room}`);
      const call: FleetCall = { group, room, callId: created.body.callId as string, items: [], leads: [] };
      calls.push(call);
      return call;
    };
    let batchNo = 0;
    /** One transcript batch of two items; recorded only when answered 2xx. */
    const sendBatch = async (call: FleetCall) => {
      const n = batchNo++;
      const items = [0, 1].map((turn) => {
        const id = `${call.room}-b${n}-${turn}`;
        return {
          id,
          role: turn === 0 ? 'assistant' : 'user',
          content: `[${id}] turn ${turn} of batch ${n}`,
          timestamp: new Date().toISOString(),
          transcriptConfidence: 0.9,
        };
      });
      const answer = await client.send(
        `transcript ${call.room} b${n}`,
        'POST',
        `/v1/calls/${call.callId}/transcript`,
        {
          items,
        },
      );
      if (answer.status >= 200 && answer.status < 300)
        call.items.push(...items.map(({ id, content }) => ({ id, content })));
      return answer;
    };
    const sendLead = async (call: FleetCall) => {
      const leadId = `lead-${call.room}-${call.leads.length}`;
      const answer = await client.send(
        `lead ${call.room} ${leadId}`,
        'POST',
        `/v1/calls/${call.callId}/leads`,
        {
          leadId,
          data: { room: call.room, n: call.leads.length },
        },
      );
      if (answer.status >= 200 && answer.status < 300) call.leads.push(leadId);
      return answer;
    };
    const endCall = async (call: FleetCall) => {
      const answer = await client.send(`end ${call.room}`, 'POST', `/v1/calls/${call.callId}/end`, {
        status: 'completed',
      });
      expect2xx(answer, `POST /end ${call.room}`);
    };
    /** A whole short call: created, one batch, a lead, ended (the late calls, during faults). */
    const wholeCall = async (group: string, room: string) => {
      const call = await createCall(group, room);
      await sendBatch(call);
      await sendLead(call);
      await endCall(call);
      return call;
    };

    /** Active calls per owner, from PostgreSQL. */
    const activeOwnedBy = async (instanceId: string): Promise<string[]> => {
      const { rows } = await db.query<{ call_id: string }>(
        `SELECT call_id FROM ${schema}.calls WHERE status = 'active' AND owner = $1`,
        [instanceId],
      );
      return rows.map((row) => row.call_id);
    };
    const ownership = async () => {
      const { rows } = await db.query<{ owner: string | null; n: string }>(
        `SELECT owner, count(*) AS n FROM ${schema}.calls WHERE status = 'active' GROUP BY owner ORDER BY owner`,
      );
      return Object.fromEntries(rows.map((row) => [row.owner ?? 'none', Number(row.n)]));
    };
    const takenOverLines = (previousOwner: string, sinceMs: number) =>
      allChildren().flatMap((child) =>
        child
          .logLines()
          .filter(
            (line) =>
              line.msg === 'call taken over' &&
              line.previousOwner === previousOwner &&
              Date.parse(line.time as string) >= sinceMs,
          ),
      );
    /** Resolves with the distinct lines (over every process) that match, once there are `count`. */
    const waitForLines = async (match: (line: Record<string, unknown>) => boolean, count: number) => {
      const deadline = Date.now() + WAIT_MS;
      for (;;) {
        const found = new Map<string, Record<string, unknown>>();
        for (const child of allChildren())
          for (const line of child.logLines()) if (match(line)) found.set(JSON.stringify(line), line);
        if (found.size >= count) return [...found.values()];
        const left = deadline - Date.now();
        if (left <= 0 || allChildren().every((child) => exited.has(child)))
          throw new Error(`only ${found.size} of ${count} awaited log lines came`);
        // The next matching line from any running process.
        await Promise.any(
          allChildren().map((child) =>
            child.waitForLog((line) => match(line) && !found.has(JSON.stringify(line)), left),
          ),
        ).catch(() => undefined);
      }
    };
    /** Resolves once every call was taken over from `previousOwner` by some running instance. */
    const waitTakenOver = (callIds: readonly string[], previousOwner: string) =>
      Promise.all(
        callIds.map((callId) =>
          Promise.any(
            allChildren().map((child) =>
              child.waitForLog(
                (line) =>
                  line.msg === 'call taken over' &&
                  line.callId === callId &&
                  line.previousOwner === previousOwner,
                WAIT_MS,
              ),
            ),
          ).catch(() => {
            throw new Error(`call ${callId} of ${previousOwner} was never taken over; ownership now unknown`);
          }),
        ),
      );
    const figures: Record<string, unknown> = {};
    const takeoverFigures = (name: string, previousOwner: string, faultAtMs: number, callIds: string[]) => {
      const lines = takenOverLines(previousOwner, faultAtMs).filter((line) =>
        callIds.includes(line.callId as string),
      );
      const delays = lines.map((line) => Date.parse(line.time as string) - faultAtMs).sort((x, y) => x - y);
      // Those later than the lease plus two seconds, by name (the sweep is every 0.5 s).
      const late = lines
        .filter((line) => Date.parse(line.time as string) - faultAtMs > (LEASE_SECONDS + 2) * 1_000)
        .map((line) => `${String(line.callId)} ${Date.parse(line.time as string) - faultAtMs} ms`);
      figures[name] = {
        calls: callIds.length,
        takeOvers: lines.length,
        firstMs: delays[0],
        lastMs: delays.at(-1),
        ...(late.length > 0 ? { late } : {}),
      };
      console.log(`fleet take-over after ${name}: ${JSON.stringify(figures[name])}`);
      return delays;
    };

    // ---- Calls at every stage --------------------------------------------------------------
    const rooms = (group: string, n: number) => Array.from({ length: n }, (_, i) => `fleet-${group}-${i}`);
    const groups = {
      done: rooms('done', 3),
      egress: rooms('egress', 6),
      upload: rooms('upload', 6),
      talk: rooms('talk', 6),
    };
    // One at a time, so the round robin spreads the calls evenly over the three instances.
    const byRoom = new Map<string, FleetCall>();
    for (const [group, names] of Object.entries(groups)) {
      for (const room of names) {
        const behaviour = group === 'egress' ? { finalizeAfterMs: HELD_ENDING_MS } : {};
        byRoom.set(room, await createCall(group, room, behaviour));
      }
    }
    const of = (names: string[]) => names.map((room) => byRoom.get(room)!);
    console.log(`fleet ownership after creating: ${JSON.stringify(await ownership())}`);
    // Every call has talked a little and has a lead, and its egress is recording.
    await Promise.all(
      calls.map(async (call) => {
        expect2xx(await sendBatch(call), `first batch ${call.room}`);
        expect2xx(await sendLead(call), `first lead ${call.room}`);
        const egressId = await egressIdOf(emulator, call.room, WAIT_MS);
        await emulator.waitForEgress(egressId, (info) => info.status === EgressStatus.EGRESS_ACTIVE, {
          timeoutMs: WAIT_MS,
        });
      }),
    );

    // Work that runs beside the faults: its failures are kept and reported at the end.
    const backgroundErrors: string[] = [];
    const background = <T>(work: Promise<T>): Promise<T | undefined> =>
      work.catch((error: unknown) => {
        backgroundErrors.push(String(error));
        return undefined;
      });
    // The conversations go on through every fault, one request at a time per call.
    let talking = true;
    const conversations = of(groups.talk).map((call) =>
      background(
        (async () => {
          for (let turn = 1; talking; turn++) {
            await sendBatch(call);
            if (turn % 4 === 0) await sendLead(call);
            await delay(CONVERSATION_PACE_MS);
          }
        })(),
      ),
    );

    // Delivered before any fault.
    await Promise.all(of(groups.done).map(endCall));
    await Promise.all(
      of(groups.done).map((call) => crm.waitForCallData(call.callId, { timeoutMs: WAIT_MS })),
    );

    // Recording uploads held open by the CRM when the owner dies.
    const uploadsBefore = crm.received().requests.upload;
    crm.injectFaults(
      'upload',
      groups.upload.map(() => ({ delayMs: UPLOAD_DELAY_MS })),
    );
    await Promise.all(of(groups.upload).map(endCall));
    await crm.waitForRequests('upload', uploadsBefore + groups.upload.length, { timeoutMs: WAIT_MS });

    // Ended, the egress held in ENDING.
    await Promise.all(of(groups.egress).map(endCall));
    await Promise.all(
      of(groups.egress).map(async (call) => {
        const egressId = await egressIdOf(emulator, call.room, WAIT_MS);
        await emulator.waitForEgress(egressId, (info) => info.status === EgressStatus.EGRESS_ENDING, {
          timeoutMs: WAIT_MS,
        });
      }),
    );
    console.log(`fleet ownership before the kill: ${JSON.stringify(await ownership())}`);

    // ---- SIGKILL a ---------------------------------------------------------------------------
    const killedAt = Date.now();
    expect((await current(a).kill()).signal).toBe('SIGKILL');
    const ofKilled = await activeOwnedBy(a.id);
    const lateCalls: Promise<FleetCall | undefined>[] = [];
    lateCalls.push(...rooms('late-kill', 2).map((room) => background(wholeCall('late', room))));
    await waitTakenOver(ofKilled, a.id);
    const killDelays = takeoverFigures('SIGKILL of fleet-a', a.id, killedAt, ofKilled);

    // ---- SIGSTOP b for 8 s; a restarted meanwhile --------------------------------------------
    const restarted = start(a).waitReady();
    // Awaited below; a start that fails meanwhile must fail the test there, not as unhandled.
    restarted.catch(() => undefined);
    const stoppedAt = Date.now();
    current(b).signal('SIGSTOP');
    const ofStopped = await activeOwnedBy(b.id);
    lateCalls.push(...rooms('late-stop', 2).map((room) => background(wholeCall('late', room))));
    await waitTakenOver(ofStopped, b.id);
    const stopDelays = takeoverFigures('SIGSTOP of fleet-b', b.id, stoppedAt, ofStopped);
    // The fault lasts its 8 s (a duration, not a synchronisation).
    await delay(Math.max(0, stoppedAt + STOP_MS - Date.now()));
    const resumedAt = Date.now();
    current(b).signal('SIGCONT');
    // b finds its lease gone and registers a new epoch; a is back under its old name.
    await current(b).waitForLog(
      (line) => line.msg === 'fleet lease registered' && Date.parse(line.time as string) >= resumedAt,
      WAIT_MS,
    );
    await restarted;
    console.log(`fleet ownership after the stop and the restart: ${JSON.stringify(await ownership())}`);

    // ---- SIGTERM c: a drain hands its calls over ---------------------------------------------
    const drainedAt = Date.now();
    current(c).signal('SIGTERM');
    lateCalls.push(...rooms('late-drain', 2).map((room) => background(wholeCall('late', room))));
    const handedOver = await current(c).waitForLog(
      (line) => line.msg === 'calls handed over to the fleet',
      WAIT_MS,
    );
    expect(await current(c).exited).toEqual({ code: 0, signal: null });
    // Every call it stopped is claimed by another instance (counted from its own line).
    const ofDrained = (
      await waitForLines(
        (line) =>
          line.msg === 'call taken over' &&
          line.previousOwner === c.id &&
          Date.parse(line.time as string) >= drainedAt,
        Number(handedOver.calls),
      )
    ).map((line) => line.callId as string);
    takeoverFigures('SIGTERM (drain) of fleet-c', c.id, drainedAt, ofDrained);
    console.log(`fleet: fleet-c handed over ${String(handedOver.calls)} calls`);

    // ---- The conversations end; everything is delivered --------------------------------------
    talking = false;
    await Promise.all(conversations);
    await Promise.all(of(groups.talk).map(endCall));
    await Promise.all(lateCalls);
    const stuck: string[] = [];
    await Promise.all(
      calls.map((call) =>
        crm.waitForCallData(call.callId, { timeoutMs: WAIT_MS }).catch(async () => {
          const view = await client.send(`view ${call.room}`, 'GET', `/v1/calls/${call.callId}`);
          stuck.push(
            `${call.room} (${call.callId}): ${JSON.stringify(view.body.state)} owner ${JSON.stringify(view.body.owner)}`,
          );
        }),
      ),
    );
    console.log(`fleet ownership at the end: ${JSON.stringify(await ownership())}`);
    // For whoever reads a failure: the calls still live in the store, and the leases.
    const live = await db.query(
      `SELECT c.room_name, c.call_id, c.state, c.owner, c.owner_epoch, c.event_seq, c.handled_seq, c.applied_seq,
         (sv.epoch = c.owner_epoch AND sv.expires_at > now()) AS owner_lease_valid
       FROM ${schema}.calls c LEFT JOIN ${schema}.supervisors sv ON sv.instance_id = c.owner
       WHERE c.status = 'active' ORDER BY c.room_name`,
    );
    const leases = await db.query(
      `SELECT instance_id, epoch, expires_at > now() AS valid FROM ${schema}.supervisors ORDER BY instance_id`,
    );
    console.log(
      `fleet store: live calls ${JSON.stringify(live.rows)}; leases ${JSON.stringify(leases.rows)}`,
    );

    // ---- What the client saw -------------------------------------------------------------------
    const retried = new Map<string, number>();
    for (const exchange of client.exchanges)
      for (const attempt of exchange.attempts) retried.set(attempt, (retried.get(attempt) ?? 0) + 1);
    const finals = new Map<string, number>();
    for (const exchange of client.exchanges) {
      const key = `${exchange.final}${exchange.code ? ` ${exchange.code}` : ''}`;
      finals.set(key, (finals.get(key) ?? 0) + 1);
    }
    const received = crm.received();
    figures.requests = client.exchanges.length;
    figures.finalAnswers = Object.fromEntries(finals);
    figures.retriedAttempts = Object.fromEntries(retried);
    figures.proxy = proxy.stats();
    figures.crm = {
      requests: received.requests,
      uploads: received.uploads.length,
      callData: received.callData.length,
      replays: received.duplicates,
      concurrentReplays: received.duplicateRequests.filter((d) => d.concurrent).length,
      rejected: received.rejected.length,
    };
    figures.calls = calls.length;
    figures.items = calls.reduce((sum, call) => sum + call.items.length, 0);
    figures.leads = calls.reduce((sum, call) => sum + call.leads.length, 0);
    console.log(`fleet figures: ${JSON.stringify(figures, null, 1)}`);

    // ---- The contract ----------------------------------------------------------------------------
    expect(backgroundErrors, 'requests beside the faults').toEqual([]);
    expect(stuck, 'calls never delivered').toEqual([]);
    // No 409, no 5xx: every request's final answer is a 2xx (only 503s and network errors retried).
    const notOk = client.exchanges.filter((exchange) => exchange.final < 200 || exchange.final >= 300);
    expect(notOk, 'requests not answered 2xx').toEqual([]);
    for (const attempt of retried.keys()) expect(attempt).toMatch(/^(503 |network )/);

    // Take-over within the lease plus a few seconds.
    expect(ofKilled.length, 'the killed instance owned live calls').toBeGreaterThan(0);
    expect(ofStopped.length, 'the stopped instance owned live calls').toBeGreaterThan(0);
    expect(killDelays).toHaveLength(ofKilled.length);
    expect(stopDelays).toHaveLength(ofStopped.length);
    expect(killDelays.at(-1)!).toBeLessThanOrEqual(TAKEOVER_BOUND_MS);
    expect(stopDelays.at(-1)!).toBeLessThanOrEqual(TAKEOVER_BOUND_MS);

    // At most one accepted CRM effect per Idempotency-Key, and one of each per call.
    const keys = (step: string) => calls.map((call) => `${call.callId}:${step}`).sort();
    expect(received.uploads.map((upload) => upload.idempotencyKey).sort()).toEqual(keys('recording'));
    expect(received.callData.map((item) => item.idempotencyKey).sort()).toEqual(keys('call-data'));
    for (const duplicate of received.duplicateRequests) expect(duplicate.status).toBeLessThan(300);

    // Every item and lead answered 2xx is in the call's CRM document; every call is delivered.
    const missing: string[] = [];
    for (const call of calls) {
      const { document } = received.callData.find((item) => item.callId === call.callId) as {
        document: CallData;
      };
      const upload = received.uploads.find((item) => item.idempotencyKey === `${call.callId}:recording`)!;
      expect(document.callDetails).toMatchObject({ callId: call.callId, recordingUrl: upload.url });
      const contents = new Set(document.transcription.conversation_items.map((item) => item.content));
      for (const item of call.items)
        if (!contents.has(item.content)) missing.push(`${call.room} item ${item.id}`);
      const metadata = document.transcription.metadata as { lead_ids?: string[] };
      const linked = new Set(metadata.lead_ids ?? [document.lead.leadId as string]);
      for (const leadId of call.leads) if (!linked.has(leadId)) missing.push(`${call.room} lead ${leadId}`);
      expect(document.lead.leadId, `${call.room}: the latest lead`).toBe(call.leads.at(-1));
      const view = await client.send(`view ${call.room}`, 'GET', `/v1/calls/${call.callId}`);
      expect(view.body, call.room).toMatchObject({ state: 'done', status: 'done', outcome: 'delivered' });
    }
    expect(missing, 'acknowledged items and leads missing from the CRM').toEqual([]);

    // The survivors drain cleanly.
    for (const instance of [a, b]) current(instance).signal('SIGTERM');
    for (const instance of [a, b]) expect(await current(instance).exited).toEqual({ code: 0, signal: null });
    // Nothing is left live in the store.
    expect(await ownership(), 'calls still active in the store').toEqual({});
  }, 240_000);
});
