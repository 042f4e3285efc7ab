/**
 * callsync as `npm start` runs it: `node dist/main.js` (run `npm run build` first), LiveKit's
 * webhooks pointed at it, the recordings on the volume it shares with the emulator. The agent's
 * side goes through its HTTP API as in the demo (src/demo/simulate-call.ts); event-loop delay is
 * prom-client's `nodejs_eventloop_lag_*` on `/metrics`, whose histogram restarts at every scrape.
 *
 * Two stores:
 * - `sqlite` (one process): SQLite in the run's temp dir, as a single machine runs it.
 * - `postgres` (one or more processes, a fleet): one PostgreSQL schema made for the run and
 *   dropped after, the processes behind the demo's round-robin proxy (src/demo/round-robin-proxy.ts,
 *   in this process) that takes both the agent's requests and LiveKit's webhooks, as a load
 *   balancer in front of a fleet does. With one process, the proxy and the store are the same,
 *   so one against two measures what the second process adds.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { createCallsyncClient, type CallsyncClient } from '../../src/demo/api-client.ts';
import { POSTGRES_URL_DEFAULT } from '../../src/demo/fleet-settings.ts';
import { sampleValue } from '../../src/demo/prometheus-text.ts';
import { startRoundRobinProxy, type RoundRobinProxy } from '../../src/demo/round-robin-proxy.ts';
import { freePort } from '../../src/sandbox/free-port.ts';
import { REPO_ROOT, startReadyChildProcess, type ChildProcess } from './child-process.ts';
import { agentConnections } from './agent-connections.ts';
import { BENCH_PERSONA_CONFIG, type Contender } from './contender.ts';
import type { BenchCall } from './plan.ts';
import { CRM_API_KEY, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, type BenchSandboxes } from './sandboxes.ts';

const READY_TIMEOUT_MS = 30_000;
const HEAP_SAMPLER_URL = new URL('./heap-sampler.js', import.meta.url).href;
const SECONDS_TO_MS = 1_000;
const PROXY_RETRY_DEADLINE_MS = 60_000;

export type CallsyncStoreKind = 'sqlite' | 'postgres';

export interface CallsyncContenderOptions {
  logLevel: string;
  cpuProfDir: string | null;
  /** Where `heap-sampler.js` writes an allocation profile of each callsync process. */
  heapProfDir: string | null;
  /** Another build's `dist/main.js` to run instead of this checkout's (an A/B of two commits). */
  callsyncEntry?: string | null;
  store?: { kind: 'sqlite' } | { kind: 'postgres'; processes: number; url?: string | undefined };
}

interface Running {
  children: ChildProcess[];
  /** Where the agent and LiveKit send: the only process, or the proxy in front of them. */
  url: string;
  /** Each process's own URL, for its `/metrics`. */
  processUrls: string[];
  close(): Promise<void>;
}

async function startProcess(
  env: Record<string, string>,
  options: CallsyncContenderOptions,
): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const profile = options.cpuProfDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir];
  const heapProfile: Record<string, string> =
    options.heapProfDir === null ? {} : { CALLSYNC_BENCH_HEAP_PROF_DIR: resolve(options.heapProfDir) };
  const heapSampler = options.heapProfDir === null ? [] : ['--import', HEAP_SAMPLER_URL];
  const url = `http://127.0.0.1:${port}`;
  const child = await startReadyChildProcess(
    [...profile, ...heapSampler, options.callsyncEntry ?? 'dist/main.js'],
    { ...env, ...heapProfile, CALLSYNC_HOST: '127.0.0.1', CALLSYNC_PORT: String(port) },
    `${url}/readyz`,
    READY_TIMEOUT_MS,
  );
  return { child, url };
}

async function startOnSqlite(
  env: Record<string, string>,
  sandboxes: BenchSandboxes,
  options: CallsyncContenderOptions,
): Promise<Running> {
  const { child, url } = await startProcess(
    { ...env, CALLSYNC_STORE: `sqlite:${join(sandboxes.dir, 'callsync.db')}` },
    options,
  );
  return { children: [child], url, processUrls: [url], close: () => child.stop() };
}

async function startOnPostgres(
  env: Record<string, string>,
  options: CallsyncContenderOptions,
  processes: number,
  postgresUrl: string,
): Promise<Running> {
  const schema = `callsync_bench_${randomBytes(6).toString('hex')}`;
  const storeUrl = new URL(postgresUrl);
  storeUrl.searchParams.set('schema', schema);
  const db = new pg.Client({ connectionString: postgresUrl });
  await db.connect();
  const started: { child: ChildProcess; url: string }[] = [];
  let proxy: RoundRobinProxy | undefined;
  const close = async () => {
    await Promise.all(started.map(({ child }) => child.stop()));
    await proxy?.close();
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await db.end();
  };
  try {
    // One after the other: the first applies the schema.
    for (let index = 1; index <= processes; index++) {
      started.push(
        await startProcess(
          { ...env, CALLSYNC_STORE: storeUrl.toString(), CALLSYNC_INSTANCE_ID: `bench-${index}` },
          options,
        ),
      );
    }
    proxy = await startRoundRobinProxy(
      started.map(({ url }, index) => {
        const { hostname, port } = new URL(url);
        return { name: `bench-${index + 1}`, host: hostname, port: Number(port) };
      }),
    );
  } catch (error) {
    await close();
    throw error;
  }
  return {
    children: started.map(({ child }) => child),
    url: proxy.url,
    processUrls: started.map(({ url }) => url),
    close,
  };
}

export async function startCallsyncContender(
  sandboxes: BenchSandboxes,
  options: CallsyncContenderOptions,
): Promise<Contender> {
  const entry = options.callsyncEntry ?? join(REPO_ROOT, 'dist', 'main.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\` first`);
  const env = {
    LIVEKIT_URL: sandboxes.liveKitUrl,
    LIVEKIT_API_KEY,
    LIVEKIT_API_SECRET,
    CRM_BASE_URL: sandboxes.crmUrl,
    CRM_API_KEY,
    CALLSYNC_EGRESS_STORAGE: 'local',
    CALLSYNC_RECORDINGS_DIR: sandboxes.recordingsDir,
    LOG_LEVEL: options.logLevel,
  };
  const store = options.store ?? { kind: 'sqlite' };
  const running =
    store.kind === 'sqlite'
      ? await startOnSqlite(env, sandboxes, options)
      : await startOnPostgres(env, options, store.processes, store.url ?? POSTGRES_URL_DEFAULT);
  sandboxes.emulator.addWebhookUrl(`${running.url}/livekit/webhook`);
  // Behind the proxy, a request a backend dropped under load is a 502 or a broken connection:
  // sent again, as the agent's reporter does (src/agent/reporter.ts), within a minute.
  const retry =
    store.kind === 'postgres' ? { deadlineMs: PROXY_RETRY_DEADLINE_MS, maxDelayMs: 2_000 } : undefined;
  // Each agent on its own connection, as each agent job is a process of its own.
  const agents = agentConnections(running.url);
  const apis = new Map<string, CallsyncClient>();
  const apiOf = (call: BenchCall): CallsyncClient => {
    let api = apis.get(call.roomName);
    if (api === undefined) {
      api = createCallsyncClient({ baseUrl: running.url, retry, dispatcher: agents.of(call.roomName) });
      apis.set(call.roomName, api);
    }
    return api;
  };
  const direct: CallsyncClient[] = running.processUrls.map((baseUrl) => createCallsyncClient({ baseUrl }));
  const callIds = new Map<string, string>();
  const callIdOf = (call: BenchCall) => {
    const callId = callIds.get(call.roomName);
    if (callId === undefined) throw new Error(`no callsync call for ${call.roomName}`);
    return callId;
  };

  return {
    name: 'callsync',
    pids: running.children.map((child) => child.pid),
    async startCall(call, startedAtMs) {
      const answer = (await apiOf(call).post(
        '/v1/calls',
        {
          roomName: call.roomName,
          callerNumber: call.callerNumber,
          config: BENCH_PERSONA_CONFIG,
          direction: 'inbound',
          startedAt: new Date(startedAtMs).toISOString(),
        },
        [201],
      )) as { callId: string };
      callIds.set(call.roomName, answer.callId);
    },
    async reportTurns(call, startedAtMs) {
      for (const turn of call.turns) {
        await apiOf(call).post(
          `/v1/calls/${callIdOf(call)}/transcript`,
          {
            items: [
              {
                id: turn.id,
                role: turn.role,
                content: turn.content,
                timestamp: new Date(startedAtMs + turn.offsetMs).toISOString(),
                transcriptConfidence: turn.transcriptConfidence,
              },
            ],
          },
          [202],
        );
      }
    },
    async endCall(call, _startedAtMs, endedAtMs) {
      await apiOf(call).post(
        `/v1/calls/${callIdOf(call)}/end`,
        { endedAt: new Date(endedAtMs).toISOString(), status: 'completed', reason: 'agent said goodbye' },
        [202],
      );
    },
    crmCallIdOf: callIdOf,
    async eventLoopDelay() {
      // The worst process's: a fleet is as slow as its busiest member.
      const delays = await Promise.all(
        direct.map(async (client) => {
          const text = await client.getText('/metrics');
          return {
            p50Ms: sampleValue(text, 'nodejs_eventloop_lag_p50_seconds') * SECONDS_TO_MS,
            p99Ms: sampleValue(text, 'nodejs_eventloop_lag_p99_seconds') * SECONDS_TO_MS,
            maxMs: sampleValue(text, 'nodejs_eventloop_lag_max_seconds') * SECONDS_TO_MS,
          };
        }),
      );
      return {
        p50Ms: Math.max(...delays.map((delay) => delay.p50Ms)),
        p99Ms: Math.max(...delays.map((delay) => delay.p99Ms)),
        maxMs: Math.max(...delays.map((delay) => delay.maxMs)),
      };
    },
    async close() {
      await agents.close();
      await running.close();
    },
  };
}
