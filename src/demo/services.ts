/**
 * The three services of the demo, started in one process on free loopback ports: the LiveKit
 * API emulator, the CRM sandbox, and callsync itself with its production wiring
 * (`createCallsyncApp`), its webhooks wired from the emulator to `${appUrl}/livekit/webhook`.
 *
 * Everything lives in one temp directory: the SQLite store, the recordings volume shared by
 * the emulated egress and callsync, and the CRM's stored files. A temp dir rather than
 * `./data/demo-<timestamp>.db` because the emulator and the CRM sandbox keep their state in
 * memory: a store kept across runs would hold calls whose rooms, egresses and CRM records no
 * longer exist, and callsync would try to resume them at the next start. A run leaves nothing
 * behind unless it is asked to keep its files (`--keep-running`), and then it says where.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type DestinationStream } from 'pino';
import { createCallsyncApp, type CallsyncApp } from '../app.ts';
import { loadConfig } from '../config.ts';
import { createLogger, type Logger } from '../logging/logger.ts';
import { createCrmSandbox, type CrmSandbox } from '../sandbox/crm/index.ts';
import { createLiveKitEmulator, type LiveKitEmulator } from '../sandbox/livekit/index.ts';
import { createCallsyncClient, type CallsyncClient } from './api-client.ts';

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

export interface DemoServicesOptions {
  /** pino level of callsync's and the emulator's logs. Default `warn`, so the summary stays readable. */
  logLevel?: string | undefined;
  /** Where log lines go; stderr by default, keeping stdout for the summary. */
  logDestination?: DestinationStream | undefined;
  departureTimeoutMs?: number | undefined;
}

export interface DemoServices {
  app: CallsyncApp;
  emulator: LiveKitEmulator;
  crm: CrmSandbox;
  /** callsync's HTTP API, as the voice-agent jobs would call it. */
  api: CallsyncClient;
  logger: Logger;
  urls: { app: string; liveKit: string; crm: string };
  /** The temp dir holding the store, the recordings and the CRM's files. */
  dir: string;
  storePath: string;
  recordingsDir: string;
  /** Closes callsync, then the emulator and the sandbox; removes `dir` when `removeFiles`. Safe twice. */
  close(options: { removeFiles: boolean }): Promise<void>;
}

export async function startDemoServices(options: DemoServicesOptions = {}): Promise<DemoServices> {
  const dir = await mkdtemp(join(tmpdir(), 'callsync-demo-'));
  const recordingsDir = join(dir, 'recordings');
  // The volume the egress shares with callsync: it must exist before callsync starts.
  await mkdir(recordingsDir, { recursive: true });
  const storePath = join(dir, 'callsync.db');
  const emulator = createLiveKitEmulator({
    keys: { [LIVEKIT_API_KEY]: LIVEKIT_API_SECRET },
    recordingsDir,
    activateAfterMs: EGRESS_ACTIVATE_AFTER_MS_DEFAULT,
    finalizeAfterMs: EGRESS_FINALIZE_AFTER_MS_DEFAULT,
    departureTimeoutMs: options.departureTimeoutMs ?? DEPARTURE_TIMEOUT_MS_DEFAULT,
  });
  const crm = createCrmSandbox({ storageDir: join(dir, 'crm'), apiKey: CRM_API_KEY });
  let app: CallsyncApp | undefined;
  let logger: Logger | undefined;

  let closing: Promise<void> | undefined;
  const close = ({ removeFiles }: { removeFiles: boolean }) => {
    closing ??= (async () => {
      // Each step on its own: a failing close must not leave the others open.
      const steps: [string, () => Promise<void>][] = [
        ['callsync', async () => app?.close()],
        ['LiveKit emulator', () => emulator.close()],
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
    const [{ url: liveKitUrl }, { url: crmUrl }] = await Promise.all([emulator.start(), crm.start()]);
    // callsync's own config schema, so a bad LOG_LEVEL fails with callsync's one-line message.
    const config = loadConfig({
      LIVEKIT_URL: liveKitUrl,
      LIVEKIT_API_KEY,
      LIVEKIT_API_SECRET,
      CRM_BASE_URL: crmUrl,
      CRM_API_KEY,
      CALLSYNC_HOST: '127.0.0.1',
      CALLSYNC_PORT: '0',
      CALLSYNC_STORE: `sqlite:${storePath}`,
      CALLSYNC_RECORDINGS_DIR: recordingsDir,
      LOG_LEVEL: options.logLevel?.trim() ? options.logLevel : 'warn',
    });
    const log = createLogger({
      level: config.logLevel,
      destination: options.logDestination ?? pino.destination({ dest: 2, sync: true }),
    });
    logger = log;
    emulator.events.on('emulator:error', ({ error, context }) =>
      log.error({ err: error, context, component: 'livekit-emulator' }, 'LiveKit emulator error'),
    );
    app = createCallsyncApp(config, {
      logger: log,
      limits: { egressPollIntervalMs: EGRESS_POLL_INTERVAL_MS },
    });
    const { url: appUrl } = await app.start();
    emulator.addWebhookUrl(`${appUrl}/livekit/webhook`);
    return {
      app,
      emulator,
      crm,
      api: createCallsyncClient({ baseUrl: appUrl, ingestToken: config.http.ingestToken }),
      logger: log,
      urls: { app: appUrl, liveKit: liveKitUrl, crm: crmUrl },
      dir,
      storePath,
      recordingsDir,
      close,
    };
  } catch (error) {
    await close({ removeFiles: true });
    throw error;
  }
}
