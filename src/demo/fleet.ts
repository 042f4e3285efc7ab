/**
 * The fleet demo's services (`npm run demo -- --fleet N`): the LiveKit emulator and the CRM
 * sandbox in this process as in the normal demo (`startDemoSandboxes`), and N supervisor
 * processes (supervisor-process.ts) on one PostgreSQL schema of their own, behind a round-robin
 * proxy (round-robin-proxy.ts) as the README's "Running a fleet" asks: the simulated agents and
 * the emulator's webhooks go to the proxy, so any instance takes any request.
 *
 * - Store: `${DEMO_POSTGRES_URL ?? postgres://postgres@127.0.0.1:5432/test}?schema=callsync_demo_<random>`,
 *   created by the supervisors' store when it opens, dropped at the close. PostgreSQL is checked
 *   first: when it cannot be reached the demo fails with one line saying so
 *   (`DemoPostgresUnavailableError`).
 * - Instances `demo-1`…`demo-N`, each on its own free port, `CALLSYNC_LEASE_SECONDS=3` so a
 *   take-over comes within about 4 s. Each writes its JSON log to `<dir>/<id>.log` (`logFiles`);
 *   at `LOG_LEVEL` the lines are also echoed to stderr (prefixed with the instance), and
 *   `logs()` gives each process's last lines for a failure.
 * - The fault: `killBusiest()` SIGKILLs the instance driving the most calls right now (read
 *   from the store: its live calls, `status = 'active'`, whose owner is that instance; see
 *   src/store/postgres-store.ts), `waitTakenOver()` waits for the others' `call taken over` log
 *   lines for every one of them, and `restart()` starts it again under the same id and port.
 * - The emulator resends a webhook that was not answered 2xx (an instance died under it), and
 *   the agents' client sends again what a reporter would (api-client.ts, `retry`).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { loadConfig } from '../config.ts';
import { createLogger } from '../logging/logger.ts';
import type { CrmSandbox } from '../sandbox/crm/index.ts';
import { freePort } from '../sandbox/free-port.ts';
import type { LiveKitEmulator } from '../sandbox/livekit/index.ts';
import { describeStorage } from '../services/storage/index.ts';
import { createCallsyncClient, type CallsyncClient } from './api-client.ts';
import type { DemoStorageKind } from './args.ts';
import { FLEET_LEASE_SECONDS, POSTGRES_URL_DEFAULT } from './fleet-settings.ts';
import { startRoundRobinProxy, type RoundRobinProxy } from './round-robin-proxy.ts';
import type { DemoTarget } from './run-demo.ts';
import { startDemoSandboxes, type DemoSandboxes, type DemoStorageReadout } from './services.ts';
import { startSupervisorProcess, type LogLine, type SupervisorProcess } from './supervisor-process.ts';

const POSTGRES_CONNECT_TIMEOUT_MS = 3_000;
/** tsx compiles on the fly; N processes starting at once on two busy cores take a while. */
const SUPERVISOR_READY_TIMEOUT_MS = 60_000;
/** A SIGTERM'd supervisor drains; one that is not gone by then is SIGKILLed. */
const SUPERVISOR_STOP_GRACE_MS = 10_000;
/** The agents' client: how long one request may be retried, and the longest pause between. */
const REQUEST_RETRY_DEADLINE_MS = 30_000;
const REQUEST_RETRY_MAX_DELAY_MS = 2_000;
/** A webhook that hit a dying instance is sent again (through the proxy, to the next one). */
const WEBHOOK_RETRY = { maxAttempts: 5, baseDelayMs: 50 };
/** Log lines kept per process for a failure's read-out. */
const LOG_TAIL_LINES = 40;

const PINO_LEVELS: Record<string, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};

/** PostgreSQL cannot be reached: the message is the one line to print. */
export class DemoPostgresUnavailableError extends Error {
  override readonly name = 'DemoPostgresUnavailableError';
  readonly code = 'DEMO_POSTGRES_UNAVAILABLE';
}

export interface DemoFleetOptions {
  size: number;
  storage?: DemoStorageKind | undefined;
  /** `LOG_LEVEL`: the supervisors' log lines at or above it are echoed to stderr; none when unset. */
  logLevel?: string | undefined;
  /** `DEMO_POSTGRES_URL`; the machines' PostgreSQL by default. */
  postgresUrl?: string | undefined;
  departureTimeoutMs?: number | undefined;
  /** Aborted while starting (Ctrl-C): what was started is closed, and the start rejects. */
  signal?: AbortSignal | undefined;
}

export interface FleetInstance {
  id: string;
  port: number;
  /** Every process started under this id, oldest first; the last one is the current one. */
  processes: SupervisorProcess[];
}

export interface FleetKill {
  instanceId: string;
  pid: number;
  /** Epoch ms, just before the signal. */
  atMs: number;
  /** Its live calls in the store at the kill: what the others must take over. */
  callIds: string[];
}

/** One `call taken over` log line. */
export interface FleetTakeOver {
  callId: string;
  previousOwner: string;
  /** The instance that took it. */
  by: string;
  /** Epoch ms, the line's own time. */
  atMs: number;
}

export interface DemoFleet extends DemoTarget {
  size: number;
  leaseSeconds: number;
  /** The PostgreSQL schema the supervisors share (dropped at the close). */
  schema: string;
  /** Where PostgreSQL is, without a password. */
  postgres: string;
  instances: readonly FleetInstance[];
  proxy: RoundRobinProxy;
  emulator: LiveKitEmulator;
  crm: CrmSandbox;
  /** The temp dir holding the recordings and the CRM's files. */
  dir: string;
  /** SIGKILLs the instance driving the most live calls now, and waits until it is gone. */
  killBusiest(): Promise<FleetKill>;
  /** Resolves once every call of `kill` was taken over by another instance; rejects after `timeoutMs`. */
  waitTakenOver(kill: FleetKill, timeoutMs: number): Promise<FleetTakeOver[]>;
  /** Starts the instance again under the same id and port, and waits until it is ready. */
  restart(instanceId: string): Promise<SupervisorProcess>;
  /** Every `call taken over` line of every process so far. */
  takeOvers(): FleetTakeOver[];
  /** The tail of each process's output, for a failure. */
  logs(): string;
  /** Each instance's log file, `<dir>/<instance id>.log` (a restart appends to it). */
  logFiles(): string[];
  /** Stops the supervisors (SIGTERM, SIGKILL after a grace), the proxy, drops the schema, closes the rest. */
  close(options: { removeFiles: boolean }): Promise<void>;
}

function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}

/** Connects, or throws the one line to print. The client stays open for the fleet's queries. */
async function connectPostgres(url: string): Promise<pg.Client> {
  const shown = withoutPassword(url);
  let client: pg.Client;
  try {
    client = new pg.Client({ connectionString: url, connectionTimeoutMillis: POSTGRES_CONNECT_TIMEOUT_MS });
  } catch (error) {
    throw new DemoPostgresUnavailableError(
      `DEMO_POSTGRES_URL is not a PostgreSQL URL (${shown}): ${(error as Error).message}`,
    );
  }
  try {
    await client.connect();
    await client.query('SELECT 1');
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    const reason = (error as { code?: string }).code ?? (error as Error).message;
    throw new DemoPostgresUnavailableError(
      `--fleet needs PostgreSQL and it cannot be reached at ${shown} (${reason}); start it there, or set DEMO_POSTGRES_URL=postgres://user@host:port/database to use another`,
    );
  }
}

/** A pino line's time in epoch ms (callsync logs ISO-8601; a number is taken as it is). */
export function lineTimeMs(line: LogLine): number {
  const { time } = line;
  return typeof time === 'number' ? time : Date.parse(String(time));
}

export async function startDemoFleet(options: DemoFleetOptions): Promise<DemoFleet> {
  const postgresUrl = options.postgresUrl?.trim() ? options.postgresUrl : POSTGRES_URL_DEFAULT;
  const db = await connectPostgres(postgresUrl);
  const schema = `callsync_demo_${randomBytes(6).toString('hex')}`;
  const storeUrl = new URL(postgresUrl);
  storeUrl.searchParams.set('schema', schema);

  const userLevel = options.logLevel?.trim() ? options.logLevel.trim() : undefined;
  const echoLevel = userLevel === undefined ? undefined : PINO_LEVELS[userLevel];
  // `call taken over` is logged at info: the supervisors log at least that, more when asked.
  const childLevel = userLevel === 'debug' || userLevel === 'trace' ? userLevel : 'info';

  let sandboxes: DemoSandboxes | undefined;
  let proxy: RoundRobinProxy | undefined;
  const instances: FleetInstance[] = [];
  const takeOvers: FleetTakeOver[] = [];
  const lineWaiters = new Set<() => void>();
  const running = () =>
    instances.flatMap((instance) => instance.processes).filter((child) => child.exitStatus() === null);

  let closing: Promise<void> | undefined;
  const close = ({ removeFiles }: { removeFiles: boolean }) => {
    closing ??= (async () => {
      const steps: [string, () => Promise<void>][] = [
        [
          'supervisors',
          async () => {
            const children = running();
            for (const child of children) child.signal('SIGTERM');
            await Promise.all(
              children.map(async (child) => {
                const timer = setTimeout(() => child.signal('SIGKILL'), SUPERVISOR_STOP_GRACE_MS);
                await child.exited;
                clearTimeout(timer);
              }),
            );
          },
        ],
        ['proxy', async () => proxy?.close()],
        ['PostgreSQL schema', async () => void (await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))],
        ['PostgreSQL connection', () => db.end()],
        ['sandboxes', async () => sandboxes?.close({ removeFiles })],
      ];
      for (const [what, step] of steps) {
        await step().catch((error: unknown) =>
          process.stderr.write(`closing the ${what} failed: ${String(error)}\n`),
        );
      }
    })();
    return closing;
  };

  // Aborted while starting: the supervisors starting are stopped, so their readiness waits end
  // at once; each step checks the signal, and the catch below closes what was started.
  const onAbort = () => {
    for (const child of running()) child.signal('SIGTERM');
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    options.signal?.throwIfAborted();
    sandboxes = await startDemoSandboxes({
      storage: options.storage,
      departureTimeoutMs: options.departureTimeoutMs,
      webhookRetry: WEBHOOK_RETRY,
      dirPrefix: 'callsync-demo-fleet-',
    });
    const { emulator, crm } = sandboxes;
    const env: Record<string, string> = {
      ...sandboxes.callsyncEnv,
      CALLSYNC_HOST: '127.0.0.1',
      CALLSYNC_STORE: storeUrl.toString(),
      CALLSYNC_LEASE_SECONDS: String(FLEET_LEASE_SECONDS),
      LOG_LEVEL: childLevel,
    };
    // callsync's own config schema, here first: a bad LOG_LEVEL fails with its one-line message.
    const config = loadConfig({
      ...env,
      LOG_LEVEL: userLevel ?? childLevel,
      CALLSYNC_PORT: '0',
      CALLSYNC_INSTANCE_ID: 'demo-1',
    });
    const logger = createLogger({
      level: userLevel ?? 'warn',
      destination: pino.destination({ dest: 2, sync: true }),
    });
    sandboxes.logEmulatorErrors(logger);

    for (let n = 1; n <= options.size; n++) {
      instances.push({ id: `demo-${n}`, port: await freePort(), processes: [] });
    }
    options.signal?.throwIfAborted();
    proxy = await startRoundRobinProxy(
      instances.map((instance) => ({ name: instance.id, host: '127.0.0.1', port: instance.port })),
    );
    emulator.addWebhookUrl(`${proxy.url}/livekit/webhook`);

    const onLine = (line: LogLine, child: SupervisorProcess) => {
      if (echoLevel !== undefined && typeof line.level === 'number' && line.level >= echoLevel) {
        process.stderr.write(`[${child.instanceId}] ${JSON.stringify(line)}\n`);
      }
      if (line.msg === 'call taken over' && typeof line.callId === 'string') {
        takeOvers.push({
          callId: line.callId,
          previousOwner: String(line.previousOwner),
          by: child.instanceId,
          atMs: lineTimeMs(line),
        });
        for (const wake of [...lineWaiters]) wake();
      }
    };
    const logFileOf = (instance: FleetInstance) => join(sandboxes!.dir, `${instance.id}.log`);
    const start = (instance: FleetInstance) => {
      // A process started once the close has begun (or the start was aborted) would outlive it.
      if (closing !== undefined || options.signal?.aborted) {
        throw new Error(`the fleet is closing: ${instance.id} not started`);
      }
      const child = startSupervisorProcess({
        instanceId: instance.id,
        port: instance.port,
        env: { ...env, CALLSYNC_INSTANCE_ID: instance.id },
        onLine,
        logFile: logFileOf(instance),
      });
      instance.processes.push(child);
      return child;
    };
    const byId = (instanceId: string) => {
      const instance = instances.find((candidate) => candidate.id === instanceId);
      if (instance === undefined) throw new Error(`no fleet instance ${instanceId}`);
      return instance;
    };
    await Promise.all(instances.map((instance) => start(instance).waitReady(SUPERVISOR_READY_TIMEOUT_MS)));
    options.signal?.throwIfAborted();
    options.signal?.removeEventListener('abort', onAbort);

    const api: CallsyncClient = createCallsyncClient({
      baseUrl: proxy.url,
      retry: { deadlineMs: REQUEST_RETRY_DEADLINE_MS, maxDelayMs: REQUEST_RETRY_MAX_DELAY_MS },
    });
    const description = describeStorage(config.egressStorage.storage);
    const box = sandboxes;

    const liveCallsBy = async (): Promise<Map<string, string[]>> => {
      const { rows } = await db.query<{ owner: string | null; call_id: string }>(
        `SELECT owner, call_id FROM ${schema}.calls WHERE status = 'active' ORDER BY call_id`,
      );
      const byOwner = new Map<string, string[]>();
      for (const row of rows) {
        if (row.owner === null) continue;
        byOwner.set(row.owner, [...(byOwner.get(row.owner) ?? []), row.call_id]);
      }
      return byOwner;
    };

    return {
      api,
      emulator,
      crm,
      proxy,
      size: options.size,
      leaseSeconds: FLEET_LEASE_SECONDS,
      schema,
      postgres: withoutPassword(postgresUrl),
      instances,
      dir: box.dir,
      urls: { app: proxy.url, ...box.urls },
      storage: { readout: (): Promise<DemoStorageReadout> => box.readout(api, description) },
      targetSeconds: config.uploadTargetSeconds,
      async metricsExpositions() {
        const texts = await Promise.all(
          running().map((child) =>
            createCallsyncClient({ baseUrl: child.url })
              .getText('/metrics')
              .catch(() => null),
          ),
        );
        return texts.filter((text): text is string => text !== null);
      },
      async killBusiest() {
        const live = await liveCallsBy();
        const count = (instance: FleetInstance) => live.get(instance.id)?.length ?? 0;
        const candidates = instances.filter((instance) => instance.processes.at(-1)?.exitStatus() === null);
        if (candidates.length === 0) throw new Error('no running supervisor to kill');
        const victim = candidates.reduce((best, instance) =>
          count(instance) > count(best) ? instance : best,
        );
        const child = victim.processes.at(-1)!;
        const atMs = Date.now();
        child.signal('SIGKILL');
        await child.exited;
        // Read again now it is gone: a call it created meanwhile is orphaned too.
        const callIds = (await liveCallsBy()).get(victim.id) ?? [];
        return { instanceId: victim.id, pid: child.pid, atMs, callIds };
      },
      waitTakenOver(kill, timeoutMs) {
        const taken = () =>
          kill.callIds.map((callId) =>
            takeOvers.find(
              (line) =>
                line.callId === callId && line.previousOwner === kill.instanceId && line.atMs >= kill.atMs,
            ),
          );
        return new Promise((resolve, reject) => {
          const check = () => {
            const found = taken().filter((line) => line !== undefined);
            if (found.length === kill.callIds.length) {
              done();
              resolve(found);
            }
          };
          const timer = setTimeout(() => {
            done();
            const missing = kill.callIds.filter((_, index) => taken()[index] === undefined);
            reject(
              new Error(
                `${missing.length} of ${kill.instanceId}'s ${kill.callIds.length} calls were not taken over within ${timeoutMs} ms: ${missing.join(', ')}`,
              ),
            );
          }, timeoutMs);
          const done = () => {
            clearTimeout(timer);
            lineWaiters.delete(check);
          };
          lineWaiters.add(check);
          check();
        });
      },
      async restart(instanceId) {
        const child = start(byId(instanceId));
        await child.waitReady(SUPERVISOR_READY_TIMEOUT_MS);
        return child;
      },
      takeOvers: () => [...takeOvers],
      logs() {
        const out: string[] = [];
        for (const instance of instances) {
          for (const [n, child] of instance.processes.entries()) {
            const exit = child.exitStatus();
            out.push(
              `--- ${instance.id} #${n + 1} (pid ${child.pid}, ${exit ? `exited ${exit.code ?? exit.signal}` : 'running'}), its last ${LOG_TAIL_LINES} lines:`,
              ...child.output().trimEnd().split('\n').slice(-LOG_TAIL_LINES),
            );
          }
        }
        return `${out.join('\n')}\n`;
      },
      logFiles: () => instances.map(logFileOf),
      close,
    };
  } catch (error) {
    options.signal?.removeEventListener('abort', onAbort);
    await close({ removeFiles: true });
    throw error;
  }
}
