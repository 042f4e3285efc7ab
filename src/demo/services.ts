/**
 * The services of the demo, started in one process on free loopback ports: the LiveKit API
 * emulator and the CRM sandbox (`startDemoSandboxes`, shared with the fleet demo, fleet.ts), and
 * callsync itself in-process with its production wiring (`createCallsyncApp`), its webhooks
 * wired from the emulator to `${appUrl}/livekit/webhook` (`startDemoServices`).
 *
 * Where recordings live (`storage`):
 * - `local` (the default): a recordings volume shared by the emulated egress and callsync,
 *   like a self-hosted egress writing to local disk.
 * - `s3`: an S3-compatible server (s3rver, s3-server.ts) is the fourth service. The emulator
 *   runs in LiveKit Cloud mode (`requireStorage`: a file output without upload settings is
 *   refused) and callsync is configured with `CALLSYNC_EGRESS_STORAGE=s3`, so every egress
 *   request carries the bucket and keys, the egress uploads each file there, and callsync
 *   reads it back from the bucket. callsync's `CALLSYNC_RECORDINGS_DIR` names a directory that
 *   does not exist and the egress host's directory stays empty: no local file is involved.
 *
 * Everything lives in one temp directory: the SQLite store, the recordings (volume or the S3
 * server's objects), and the CRM's stored files. A temp dir rather than
 * `./data/demo-<timestamp>.db` because the emulator and the CRM sandbox keep their state in
 * memory: a store kept across runs would hold calls whose rooms, egresses and CRM records no
 * longer exist, and callsync would try to resume them at the next start. A run leaves nothing
 * behind unless it is asked to keep its files (`--keep-running`), and then it says where.
 */
import type { EventEmitter } from 'node:events';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type DestinationStream } from 'pino';
import { createCallsyncApp, type CallsyncApp } from '../app.ts';
import { loadConfig } from '../config.ts';
import { describeStorage } from '../services/storage/index.ts';
import { createLogger, type Logger } from '../logging/logger.ts';
import { createCrmSandbox, type CrmSandbox } from '../sandbox/crm/index.ts';
import {
  createLiveKitEmulator,
  type LiveKitEmulator,
  type WebhookRetryOptions,
} from '../sandbox/livekit/index.ts';
import type { SupervisorEventMap } from '../supervisor.ts';
import { createCallsyncClient, type CallsyncClient } from './api-client.ts';
import type { DemoStorageKind } from './args.ts';
import type { DemoS3Server } from './s3-server.ts';

const LIVEKIT_API_KEY = 'APIdemo';
/** The emulator signs webhooks with it and callsync verifies them; HS256 wants 32+ bytes. */
const LIVEKIT_API_SECRET = 'demo-secret-long-enough-for-hs256-signing';
const CRM_API_KEY = 'crm-demo-key';
/** The emulator's own defaults; each demo room sets its own (call-plan.ts). */
const EGRESS_ACTIVATE_AFTER_MS_DEFAULT = 300;
const EGRESS_FINALIZE_AFTER_MS_DEFAULT = 300;
/**
 * Caller hung up → room closed (room_finished). LiveKit waits 20 s; the demo keeps its wall time
 * short, and the delivery clock of a hang-up call starts at room_finished anyway.
 */
export const DEPARTURE_TIMEOUT_MS_DEFAULT = 1_000;
/** How often callsync asks LiveKit for an egress whose final webhook has not arrived. */
const EGRESS_POLL_INTERVAL_MS = 500;

/** What the recordings' store holds after a run, for the summary. */
export interface DemoStorageReadout {
  kind: DemoStorageKind;
  /** callsync's own description of its storage (no secret in it). */
  description: string;
  /** Whether the egress ran in LiveKit Cloud mode (a file output without upload settings refused). */
  cloudMode: boolean;
  /** Files the egress uploaded to a bucket with the settings of its request. */
  egressUploads: number;
  egressUploadFailures: number;
  /** Objects in the bucket; null for the shared volume. */
  bucketObjects: { count: number; bytes: number; sampleKey: string | null } | null;
  /** Regular files on the egress host's disk (the shared volume in `local` mode). */
  localFiles: number;
  /** `GET /readyz`'s storage check: `ok`, or what it said. */
  readiness: string;
}

export interface DemoSandboxesOptions {
  /** Where recordings live; `local` (a shared volume) by default. */
  storage?: DemoStorageKind | undefined;
  departureTimeoutMs?: number | undefined;
  /** How the emulator resends a webhook that was not answered 2xx; its own default otherwise. */
  webhookRetry?: WebhookRetryOptions | undefined;
  /** The temp dir's name prefix; `callsync-demo-` by default. */
  dirPrefix?: string | undefined;
}

/** The LiveKit emulator and the CRM sandbox (and the S3 server), and how callsync reaches them. */
export interface DemoSandboxes {
  emulator: LiveKitEmulator;
  crm: CrmSandbox;
  /** The S3 server, with `--storage s3`. */
  s3: DemoS3Server | undefined;
  storageKind: DemoStorageKind;
  /** `s3`: the bucket's path-style URL (a GET lists it), with `--storage s3`. */
  urls: { liveKit: string; crm: string; s3?: string | undefined };
  /** The temp dir holding the recordings and the CRM's files (and an in-process store). */
  dir: string;
  /** The egress host's local disk: shared with callsync in `local` mode, unused with `s3`. */
  recordingsDir: string;
  /**
   * callsync's environment for these services: LiveKit, the CRM, where recordings live. The
   * caller adds the store, host, port and log level.
   */
  callsyncEnv: Record<string, string>;
  /** What the recordings' store holds now; `api` answers `/readyz`, `description` is callsync's. */
  readout(api: CallsyncClient, description: string): Promise<DemoStorageReadout>;
  /** Logs the emulator's own errors to `logger` from now on. */
  logEmulatorErrors(logger: Logger): void;
  /** Closes the emulator, the S3 server and the sandbox; removes `dir` when `removeFiles`. Safe twice. */
  close(options: { removeFiles: boolean }): Promise<void>;
}

/** Regular files under `dir`, at any depth; 0 when it does not exist. */
async function countFiles(dir: string): Promise<number> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((entry) => entry.isFile()).length;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}

export async function startDemoSandboxes(options: DemoSandboxesOptions = {}): Promise<DemoSandboxes> {
  const storageKind = options.storage ?? 'local';
  const dir = await mkdtemp(join(tmpdir(), options.dirPrefix ?? 'callsync-demo-'));
  // `local`: the volume the egress shares with callsync; it must exist before callsync starts.
  // `s3`: the egress host's own disk, which nothing else sees (and nothing should land on).
  const recordingsDir = join(dir, storageKind === 'local' ? 'recordings' : 'egress-host');
  await mkdir(recordingsDir, { recursive: true });
  const emulator = createLiveKitEmulator({
    keys: { [LIVEKIT_API_KEY]: LIVEKIT_API_SECRET },
    recordingsDir,
    // LiveKit Cloud refuses file outputs without upload settings; the S3 demo proves callsync sends them.
    requireStorage: storageKind === 's3',
    activateAfterMs: EGRESS_ACTIVATE_AFTER_MS_DEFAULT,
    finalizeAfterMs: EGRESS_FINALIZE_AFTER_MS_DEFAULT,
    departureTimeoutMs: options.departureTimeoutMs ?? DEPARTURE_TIMEOUT_MS_DEFAULT,
    ...(options.webhookRetry === undefined ? {} : { webhookRetry: options.webhookRetry }),
  });
  const uploads = { done: 0, failed: 0 };
  emulator.events.on('egress:uploaded', () => (uploads.done += 1));
  emulator.events.on('egress:upload-failed', () => (uploads.failed += 1));
  const crm = createCrmSandbox({ storageDir: join(dir, 'crm'), apiKey: CRM_API_KEY });
  let s3: DemoS3Server | undefined;
  let logger: Logger | undefined;

  let closing: Promise<void> | undefined;
  const close = ({ removeFiles }: { removeFiles: boolean }) => {
    closing ??= (async () => {
      // Each step on its own: a failing close must not leave the others open.
      const steps: [string, () => Promise<void>][] = [
        ['LiveKit emulator', () => emulator.close()],
        ['S3 server', async () => s3?.close()],
        ['CRM sandbox', () => crm.close()],
        ['temp dir', () => (removeFiles ? rm(dir, { recursive: true, force: true }) : Promise.resolve())],
      ];
      for (const [what, step] of steps) {
        await step().catch((error: unknown) => {
          if (logger) logger.error({ err: error }, `closing the ${what} failed`);
          else process.stderr.write(`closing the ${what} failed: ${String(error)}\n`);
        });
      }
    })();
    return closing;
  };

  try {
    if (storageKind === 's3') {
      // Loaded here only: the default demo never loads s3rver.
      const { startDemoS3Server } = await import('./s3-server.ts');
      const directory = join(dir, 's3');
      await mkdir(directory, { recursive: true });
      s3 = await startDemoS3Server({ directory });
    }
    const storageEnv: Record<string, string> =
      s3 === undefined
        ? { CALLSYNC_EGRESS_STORAGE: 'local', CALLSYNC_RECORDINGS_DIR: recordingsDir }
        : {
            CALLSYNC_EGRESS_STORAGE: 's3',
            CALLSYNC_EGRESS_SEND_STORAGE: 'true',
            CALLSYNC_S3_BUCKET: s3.bucket,
            CALLSYNC_S3_REGION: s3.region,
            CALLSYNC_S3_ENDPOINT: s3.endpoint,
            CALLSYNC_S3_FORCE_PATH_STYLE: 'true',
            CALLSYNC_S3_ACCESS_KEY_ID: s3.accessKeyId,
            CALLSYNC_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
            // Deliberately a directory that does not exist: nothing may be read from a volume.
            CALLSYNC_RECORDINGS_DIR: join(dir, 'no-local-recordings'),
          };
    const [{ url: liveKitUrl }, { url: crmUrl }] = await Promise.all([emulator.start(), crm.start()]);
    const server = s3;
    const readout = async (api: CallsyncClient, description: string): Promise<DemoStorageReadout> => {
      const ready = await api.get('/readyz').then(
        (answer) => (answer as { checks?: { storage?: string } }).checks?.storage ?? 'not reported',
        (error: unknown) => (error instanceof Error ? error.message : String(error)),
      );
      const listed = server === undefined ? null : await server.list();
      return {
        kind: storageKind,
        description,
        cloudMode: server !== undefined,
        egressUploads: uploads.done,
        egressUploadFailures: uploads.failed,
        bucketObjects:
          listed === null
            ? null
            : { count: listed.objects, bytes: listed.bytes, sampleKey: listed.sampleKey },
        localFiles: await countFiles(recordingsDir),
        readiness: ready,
      };
    };
    return {
      emulator,
      crm,
      s3,
      storageKind,
      urls: {
        liveKit: liveKitUrl,
        crm: crmUrl,
        s3: s3 === undefined ? undefined : `${s3.endpoint}/${s3.bucket}`,
      },
      dir,
      recordingsDir,
      callsyncEnv: {
        LIVEKIT_URL: liveKitUrl,
        LIVEKIT_API_KEY,
        LIVEKIT_API_SECRET,
        CRM_BASE_URL: crmUrl,
        CRM_API_KEY,
        ...storageEnv,
      },
      readout,
      logEmulatorErrors(log) {
        logger = log;
        emulator.events.on('emulator:error', ({ error, context }) =>
          log.error({ err: error, context, component: 'livekit-emulator' }, 'LiveKit emulator error'),
        );
      },
      close,
    };
  } catch (error) {
    await close({ removeFiles: true });
    throw error;
  }
}

export interface DemoServicesOptions {
  /** Where recordings live; `local` (a shared volume) by default. */
  storage?: DemoStorageKind | undefined;
  /** pino level of callsync's and the emulator's logs. Default `warn`, so the summary stays readable. */
  logLevel?: string | undefined;
  /** Where log lines go; stderr by default, keeping stdout for the summary. */
  logDestination?: DestinationStream | undefined;
  /**
   * Write callsync's log lines to `<dir>/callsync.log` (`logFile`) instead, and echo to stderr
   * only those at `error` and above, or every one with `echo: 'all'`. `npm run demo` uses it so
   * the warnings for the faults it injects on purpose do not print before its summary.
   */
  logFile?: { echo: 'problems' | 'all' } | undefined;
  departureTimeoutMs?: number | undefined;
}

/** The log file `logFile` writes, in the services' temp dir. */
export const DEMO_LOG_FILE_NAME = 'callsync.log';

/** A pino line's level (callsync writes its label) at `error` or above. */
function isProblemLine(line: string): boolean {
  try {
    const { level } = JSON.parse(line) as { level?: unknown };
    const value = typeof level === 'number' ? level : pino.levels.values[String(level)];
    return value === undefined || value >= (pino.levels.values.error ?? 50);
  } catch {
    return true;
  }
}

/**
 * Every line to `path`; to stderr too when `echo` is `all`, or when it is an error. Both
 * synchronous, so nothing is lost at `process.exit`; the file stays open until the process exits
 * (a line logged while closing must still have somewhere to go).
 */
function fileLogDestination(path: string, echo: 'problems' | 'all'): DestinationStream {
  const file = pino.destination({ dest: path, sync: true });
  const stderr = pino.destination({ dest: 2, sync: true });
  return {
    write(line: string) {
      file.write(line);
      if (echo === 'all' || isProblemLine(line)) stderr.write(line);
    },
  };
}

export interface DemoServices {
  app: CallsyncApp;
  emulator: LiveKitEmulator;
  crm: CrmSandbox;
  /** callsync's HTTP API, as the voice-agent jobs would call it. */
  api: CallsyncClient;
  logger: Logger;
  /** `s3`: the bucket's path-style URL (a GET lists it), with `--storage s3`. */
  urls: { app: string; liveKit: string; crm: string; s3?: string | undefined };
  /** The temp dir holding the store, the recordings and the CRM's files. */
  dir: string;
  storePath: string;
  /** callsync's log lines, with the `logFile` option: `<dir>/callsync.log`. */
  logFile: string | undefined;
  /** The egress host's local disk: shared with callsync in `local` mode, unused with `s3`. */
  recordingsDir: string;
  storage: {
    kind: DemoStorageKind;
    /** The S3 server, with `--storage s3`. */
    s3: DemoS3Server | undefined;
    /** What the store holds now, and callsync's readiness check of it. */
    readout(): Promise<DemoStorageReadout>;
  };
  /** callsync's upload target (`CALLSYNC_UPLOAD_TARGET_SECONDS`), for the summary. */
  targetSeconds: number;
  /** The in-process supervisor's events: `call:finished` tells when a call is final. */
  supervisorEvents: EventEmitter<SupervisorEventMap>;
  /** callsync's `/metrics` exposition (one process: one text). */
  metricsExpositions(): Promise<string[]>;
  /** Closes callsync, then the emulator and the sandbox; removes `dir` when `removeFiles`. Safe twice. */
  close(options: { removeFiles: boolean }): Promise<void>;
}

export async function startDemoServices(options: DemoServicesOptions = {}): Promise<DemoServices> {
  const sandboxes = await startDemoSandboxes({
    storage: options.storage,
    departureTimeoutMs: options.departureTimeoutMs,
  });
  const { dir, emulator, crm } = sandboxes;
  const storePath = join(dir, 'callsync.db');
  const logFile = options.logFile === undefined ? undefined : join(dir, DEMO_LOG_FILE_NAME);
  let app: CallsyncApp | undefined;
  let logger: Logger | undefined;

  let closing: Promise<void> | undefined;
  const close = ({ removeFiles }: { removeFiles: boolean }) => {
    closing ??= (async () => {
      // callsync first, on its own: a failing close must not leave the others open.
      await (async () => app?.close())().catch((error: unknown) => {
        if (logger) logger.error({ err: error }, 'closing callsync failed');
        else process.stderr.write(`closing callsync failed: ${String(error)}\n`);
      });
      await sandboxes.close({ removeFiles });
    })();
    return closing;
  };

  try {
    // callsync's own config schema, so a bad LOG_LEVEL fails with callsync's one-line message.
    const config = loadConfig({
      ...sandboxes.callsyncEnv,
      CALLSYNC_HOST: '127.0.0.1',
      CALLSYNC_PORT: '0',
      CALLSYNC_STORE: `sqlite:${storePath}`,
      LOG_LEVEL: options.logLevel?.trim() ? options.logLevel : 'warn',
    });
    const log = createLogger({
      level: config.logLevel,
      destination:
        logFile !== undefined
          ? fileLogDestination(logFile, options.logFile?.echo ?? 'problems')
          : (options.logDestination ?? pino.destination({ dest: 2, sync: true })),
    });
    logger = log;
    sandboxes.logEmulatorErrors(log);
    app = createCallsyncApp(config, {
      logger: log,
      limits: { egressPollIntervalMs: EGRESS_POLL_INTERVAL_MS },
    });
    const { url: appUrl } = await app.start();
    emulator.addWebhookUrl(`${appUrl}/livekit/webhook`);
    const api = createCallsyncClient({ baseUrl: appUrl, ingestToken: config.http.ingestToken });
    const description = describeStorage(config.egressStorage.storage);
    return {
      app,
      emulator,
      crm,
      api,
      logger: log,
      urls: { app: appUrl, ...sandboxes.urls },
      dir,
      storePath,
      logFile,
      recordingsDir: sandboxes.recordingsDir,
      storage: {
        kind: sandboxes.storageKind,
        s3: sandboxes.s3,
        readout: () => sandboxes.readout(api, description),
      },
      targetSeconds: config.uploadTargetSeconds,
      supervisorEvents: app.supervisor.events,
      metricsExpositions: async () => [await api.getText('/metrics')],
      close,
    };
  } catch (error) {
    await close({ removeFiles: true });
    throw error;
  }
}
