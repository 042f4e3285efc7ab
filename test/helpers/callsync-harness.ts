/**
 * The whole pipeline in one test process: the LiveKit emulator, the CRM sandbox and the real
 * callsync app (production wiring from `createCallsyncApp`, SQLite store in a temp dir),
 * driven only through callsync's HTTP API and LiveKit's side (rooms, SIP callers, webhooks).
 *
 * The app can be stopped and started again (`stopApp`, `restartApp`) while the emulator and the
 * CRM sandbox stay up: a restart builds a new app from the same config, on the port the first
 * one got (so the agent's reporter, LiveKit's webhooks and a Prometheus scrape keep one URL) and
 * over the same SQLite file (so recovery resumes the calls it left).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { EgressStatus } from 'livekit-server-sdk';
import { request } from 'undici';
import { createCallsyncApp, type CallsyncApp, type CallsyncAppOptions } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logging/logger.ts';
import { createCrmSandbox, type CrmSandbox } from '../../src/sandbox/crm/index.ts';
import {
  createLiveKitEmulator,
  type LiveKitEmulator,
  type LiveKitEmulatorOptions,
} from '../../src/sandbox/livekit/index.ts';

export const API_KEY = 'APIe2ekey';
export const API_SECRET = 'e2e-secret-that-is-long-enough-for-hs256';
export const INGEST_TOKEN = 'ingest-token-for-tests';

export const PERSONA_CONFIG = {
  campaigns: [{ _id: 'camp_e2e', client: 'client_e2e', voiceAgents: [{ _id: 'va_e2e' }] }],
};

export interface CallsyncHarness {
  /** The running app (the new one after `restartApp`). */
  readonly app: CallsyncApp;
  /** Its base URL; the same across restarts. */
  readonly url: string;
  emulator: LiveKitEmulator;
  crm: CrmSandbox;
  recordingsDir: string;
  /** Every log line the app wrote, parsed. */
  logLines: Record<string, unknown>[];
  api(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<ApiAnswer>;
  /** The room's (first) egress id, once LiveKit has one (awaited on the emulator's events). */
  egressOf(room: string): Promise<string>;
  /** The id of the room's egress that is ACTIVE (recording), once there is one. */
  recordingStarted(room: string): Promise<string>;
  /** Creates the LiveKit room with a SIP caller and the agent, as a dispatch rule would. */
  startLiveKitCall(room: string, callerNumber?: string): void;
  /** Stops the app (HTTP, actors, store) as a shutdown would; LiveKit and the CRM stay up. Safe twice. */
  stopApp(): Promise<void>;
  /** Stops the app if it runs, then starts a new one on the same port and store (recovery runs). */
  restartApp(): Promise<void>;
  close(): Promise<void>;
}

export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
}

export interface HarnessOptions {
  env?: Record<string, string>;
  connectionLimits?: CallsyncAppOptions['connectionLimits'];
  /** Emulator options over the harness's (storage endpoints, Cloud mode, server storage…). */
  emulator?: Partial<LiveKitEmulatorOptions>;
  limits?: Record<string, number>;
  departureTimeoutMs?: number;
}

export async function startCallsyncHarness(options: HarnessOptions = {}): Promise<CallsyncHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'callsync-e2e-'));
  const recordingsDir = join(dir, 'recordings');
  // The volume the egress shares with callsync: it must exist before callsync starts.
  await mkdir(recordingsDir, { recursive: true });
  const emulator = createLiveKitEmulator({
    keys: { [API_KEY]: API_SECRET },
    recordingsDir,
    activateAfterMs: 10,
    finalizeAfterMs: 50,
    departureTimeoutMs: options.departureTimeoutMs ?? 200,
    webhookRetry: { maxAttempts: 3, baseDelayMs: 20 },
    ...options.emulator,
  });
  const crm = createCrmSandbox({ storageDir: join(dir, 'crm') });
  const [{ url: liveKitUrl }, { url: crmUrl }] = await Promise.all([emulator.start(), crm.start()]);

  const logLines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line) logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const env: Record<string, string> = {
    LIVEKIT_URL: liveKitUrl,
    LIVEKIT_API_KEY: API_KEY,
    LIVEKIT_API_SECRET: API_SECRET,
    CRM_BASE_URL: crmUrl,
    CALLSYNC_PORT: '0',
    CALLSYNC_STORE: `sqlite:${join(dir, 'callsync.db')}`,
    CALLSYNC_RECORDINGS_DIR: recordingsDir,
    CALLSYNC_INGEST_TOKEN: INGEST_TOKEN,
    LOG_LEVEL: 'debug',
    ...options.env,
  };
  const logger = createLogger({ level: loadConfig(env).logLevel, destination: sink });
  const limits = { egressPollIntervalMs: 200, ...options.limits };
  const appOptions = { logger, limits, connectionLimits: options.connectionLimits };
  let app = createCallsyncApp(loadConfig(env), appOptions);
  const { url } = await app.start();
  emulator.addWebhookUrl(`${url}/livekit/webhook`);
  // A restart listens where the first app did (the port the OS gave it), so every client of
  // callsync (the agent's reporter, LiveKit's webhooks, a Prometheus scrape) keeps its URL.
  const restartConfig = loadConfig({ ...env, CALLSYNC_PORT: new URL(url).port });

  return {
    get app() {
      return app;
    },
    url,
    emulator,
    crm,
    recordingsDir,
    logLines,
    async api(method, path, body, headers = {}) {
      const answer = await request(`${url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${INGEST_TOKEN}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await answer.body.text();
      return { status: answer.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
    },
    egressOf: (room) => egressOf(emulator, room),
    async recordingStarted(room) {
      // The room's egress that is recording now (an earlier call in a room of the same name
      // may have left a finished one).
      for (;;) {
        const active = emulator
          .listEgress({ roomName: room })
          .find((egress) => egress.status === EgressStatus.EGRESS_ACTIVE);
        if (active) return active.egressId;
        await emulator.waitForEvent('egress:updated');
      }
    },
    startLiveKitCall(room, callerNumber = '+918655066243') {
      emulator.createRoom({ name: room });
      emulator.startSipCall({ room, callerNumber, attributes: { 'sip.ruleID': 'SDR_e2e' } });
    },
    async stopApp() {
      await app.close();
    },
    async restartApp() {
      await app.close();
      app = createCallsyncApp(restartConfig, appOptions);
      const restarted = await app.start();
      if (restarted.url !== url) throw new Error(`restarted on ${restarted.url}, not ${url}`);
    },
    async close() {
      // Each step is named if it hangs, so a stuck shutdown says which part held on.
      await closeStep('callsync app', () => app.close());
      await closeStep('LiveKit emulator', () => emulator.close());
      await closeStep('CRM sandbox', () => crm.close());
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Checked and awaited in one tick, so no egress event is missed between the two. */
async function egressOf(emulator: LiveKitEmulator, room: string): Promise<string> {
  for (;;) {
    const [egress] = emulator.listEgress({ roomName: room });
    if (egress) return egress.egressId;
    await emulator.waitForEvent('egress:updated');
  }
}

/** How long one part may take to close before the test fails naming it. */
const CLOSE_STEP_TIMEOUT_MS = 10_000;

async function closeStep(name: string, close: () => Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${name} did not close within ${CLOSE_STEP_TIMEOUT_MS} ms`)),
      CLOSE_STEP_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([close(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
