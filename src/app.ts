/**
 * The composition root: builds every dependency from a parsed `Config` and wires them into a
 * supervisor and its HTTP API. Opens no port and installs no signal handler (that is
 * `main.ts`), so tests and the demo run the exact production wiring in-process.
 */
import { createRequire } from 'node:module';
import { Registry } from 'prom-client';
import type { Config } from './config.ts';
import { listenOnPort } from './http/listen.ts';
import {
  buildHttpServer,
  HTTP_LISTEN_BACKLOG,
  type HttpServer,
  type HttpServerOptions,
} from './http/server.ts';
import { createLogger, type Logger } from './logging/logger.ts';
import { createCallLogic } from './machines/call.actors.ts';
import type { CallLimits } from './machines/call.types.ts';
import { systemTime, type TimeSource } from './machines/timer.actor.ts';
import { createMetrics } from './metrics/metrics.ts';
import { createMetricsRecorder } from './metrics/metrics.recorder.ts';
import { withStoreMetrics } from './metrics/metrics.store.ts';
import { createCrmEffects } from './services/crm-effects.ts';
import { createCrmClient, type CrmClient } from './services/crm.client.ts';
import { gateCallDataOnStoredSnapshot } from './services/call-data-gate.ts';
import { guardCrmEffects, guardLiveKitEffects } from './services/lease-guard.ts';
import { createLiveKitEffects } from './services/livekit-effects.ts';
import { LiveKitWebhookVerifier } from './services/livekit-webhook.ts';
import { createRecordingStorage, type RecordingStorage } from './services/storage/index.ts';
import { createCallStore } from './store/open-store.ts';
import { PostgresCallStore } from './store/postgres-store.ts';
import { Supervisor } from './supervisor.ts';

const { version: CALLSYNC_VERSION } = createRequire(import.meta.url)('../package.json') as {
  version: string;
};

/** `/readyz` asks the store at most this often; a probe every second must not cost a request each. */
const STORAGE_PROBE_CACHE_MS = 5_000;
const STORAGE_PROBE_TIMEOUT_MS = 2_000;

/** The storage's `check()` as a readiness probe: bounded in time, its last answer reused briefly. */
function storageProbe(storage: RecordingStorage) {
  let last: { at: number; answer: Promise<{ ok: true } | { ok: false; message: string }> } | undefined;
  return () => {
    const now = Date.now();
    if (last === undefined || now - last.at >= STORAGE_PROBE_CACHE_MS) {
      last = {
        at: now,
        answer: storage.check(AbortSignal.timeout(STORAGE_PROBE_TIMEOUT_MS)).then(
          () => ({ ok: true as const }),
          (error: unknown) => ({
            ok: false as const,
            message: `${storage.description}: ${error instanceof Error ? error.message : String(error)}`,
          }),
        ),
      };
    }
    return last.answer;
  };
}

/**
 * A shared volume that is not there is a deployment error: refuse to start. A bucket store that
 * does not answer may be a blip: start, say so, and let `/readyz` report it.
 */
async function checkStorageAtStart(storage: RecordingStorage, logger: Logger): Promise<void> {
  try {
    await storage.check(AbortSignal.timeout(STORAGE_PROBE_TIMEOUT_MS));
    logger.info({ storage: storage.description }, 'recording storage reachable');
  } catch (error) {
    if (storage.kind === 'local') throw error;
    logger.warn({ err: error, storage: storage.description }, 'recording storage not reachable at start');
  }
}

export interface CallsyncApp {
  config: Config;
  logger: Logger;
  registry: Registry;
  supervisor: Supervisor;
  http: HttpServer;
  /** Starts the supervisor (store + recovery), then listens. Resolves with the base URL. Safe twice. */
  start(): Promise<{ url: string }>;
  /** Refuses new calls and lets ended calls finish delivering, up to `drainTimeoutSeconds`. */
  drain(): Promise<void>;
  /** Stops listening and every actor, closes the store and the CRM client. Safe twice. */
  close(): Promise<void>;
}

export interface CallsyncAppOptions {
  logger?: Logger;
  time?: TimeSource;
  /** Tests tune timings the environment does not expose (poll interval, per-attempt timeouts). */
  limits?: Partial<CallLimits> | undefined;
  /** Tests shrink the HTTP connection limits (see `http/server.ts`). */
  connectionLimits?: HttpServerOptions['connectionLimits'];
}

export function createCallsyncApp(config: Config, options: CallsyncAppOptions = {}): CallsyncApp {
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  const time = options.time ?? systemTime;
  const registry = new Registry();
  const metrics = createMetrics({
    registry,
    targetSeconds: config.uploadTargetSeconds,
    version: CALLSYNC_VERSION,
    // Read at scrape time, after `supervisor` below exists.
    activeCallsByState: () => supervisor.activeCallsByState(),
    oldestCallAgeSecondsByState: () => supervisor.oldestCallAgeSecondsByState(),
    failedCallsWaiting: () => supervisor.failedCallsWaiting(),
    callsOwned: () => supervisor.liveCallCount,
  });
  const recorder = createMetricsRecorder(metrics);
  const store = withStoreMetrics(
    createCallStore(config.store.url, {
      timeoutMs: config.store.timeoutMs,
      fleet: {
        instanceId: config.fleet.instanceId,
        leaseMs: config.fleet.leaseSeconds * 1000,
        time,
        logger,
      },
    }),
    recorder,
  );
  // In a fleet, no request goes to LiveKit or the CRM unless this instance trusts its lease.
  const trusted = () => store.fleet?.trusted() ?? true;
  const crm: CrmClient = createCrmClient({
    baseUrl: config.crm.baseUrl,
    apiKey: config.crm.apiKey,
    onRequest: recorder.crmRequest,
  });
  const storage = createRecordingStorage(config.egressStorage);
  const logic = createCallLogic({
    liveKit: guardLiveKitEffects(
      createLiveKitEffects({
        url: config.liveKit.url,
        apiKey: config.liveKit.apiKey,
        apiSecret: config.liveKit.apiSecret,
        recordingFilepath: config.recordingFilepath,
        upload: storage.egressUpload,
      }),
      trusted,
    ),
    // The call data waits for the call's snapshot (read when a call sends it, after `supervisor` exists).
    crm: gateCallDataOnStoredSnapshot(
      guardCrmEffects(createCrmEffects({ crm, storage }), trusted),
      (callId) => supervisor.snapshotStored(callId),
    ),
    time,
    onCloseError: (error, call) =>
      logger.warn({ err: error, callId: call.callId }, 'LiveKit client close failed'),
  });
  const supervisor: Supervisor = new Supervisor({
    store,
    logic,
    webhooks: new LiveKitWebhookVerifier({
      apiKey: config.liveKit.apiKey,
      apiSecret: config.liveKit.apiSecret,
    }),
    logger,
    metrics: recorder,
    renderMetrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    time,
    retentionDays: config.retentionDays,
    limits: {
      maxCallDurationMs: config.maxCallDurationSeconds * 1000,
      egressDeadlineMs: config.egressDeadlineSeconds * 1000,
      deliveryTargetMs: config.uploadTargetSeconds * 1000,
      ...options.limits,
    },
  });
  const http = buildHttpServer({
    api: supervisor,
    logger,
    ingestToken: config.http.ingestToken,
    adminToken: config.http.adminToken,
    readiness: [
      { name: 'store', check: () => Promise.resolve(supervisor.storeStatus()) },
      { name: 'storage', check: storageProbe(storage) },
      // A fleet member whose lease is not renewed drives no calls; the balancer may send elsewhere.
      ...(store instanceof PostgresCallStore
        ? [
            {
              name: 'lease',
              check: () =>
                Promise.resolve(
                  trusted()
                    ? { ok: true as const }
                    : {
                        ok: false as const,
                        message: 'the fleet lease is not renewed; calls go to other instances',
                      },
                ),
            },
          ]
        : []),
    ],
    connectionLimits: {
      ...(config.http.maxConnections === undefined ? {} : { maxConnections: config.http.maxConnections }),
      ...options.connectionLimits,
    },
  });

  let starting: Promise<{ url: string }> | undefined;
  let closing: Promise<void> | undefined;
  return {
    config,
    logger,
    registry,
    supervisor,
    http,
    start() {
      starting ??= (async () => {
        await checkStorageAtStart(storage, logger);
        await supervisor.start();
        const address = await listenOnPort(http, {
          host: config.http.host,
          port: config.http.port,
          backlog: HTTP_LISTEN_BACKLOG,
          logger,
        });
        logger.info({ address }, 'callsync listening');
        const { port } = http.server.address() as { port: number };
        return {
          url: `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${port}`,
        };
      })();
      return starting;
    },
    drain: () => supervisor.drain(config.drainTimeoutSeconds * 1000),
    close() {
      closing ??= (async () => {
        // A signal during start-up (main.ts) closes while start() runs: let it finish first, or
        // its listen() would open the port after the close and leave the process serving.
        await starting?.catch(() => undefined);
        // Every step runs even when one fails; the first failure is thrown at the end.
        const failures: unknown[] = [];
        for (const [name, close] of [
          ['HTTP', () => http.close()],
          ['supervisor', () => supervisor.close()],
          ['CRM client', () => crm.close()],
          ['recording storage', () => storage.close()],
        ] as const) {
          await close().catch((error: unknown) => {
            failures.push(error);
            logger.warn({ err: error }, `${name} close failed`);
          });
        }
        if (failures.length > 0) throw failures[0];
      })();
      return closing;
    },
  };
}
