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
import { Writable } from 'node:stream';
import { EgressStatus } from 'livekit-server-sdk';
import { createCallsyncApp, type CallsyncApp, type CallsyncAppOptions } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logging/logger.ts';
import type { CrmSandbox } from '../../src/sandbox/crm/index.ts';
import type { LiveKitEmulator, LiveKitEmulatorOptions } from '../../src/sandbox/livekit/index.ts';
import { CALLER_NUMBER, PERSONA_CONFIG, callsyncApi, type ApiAnswer } from './callsync-api.ts';
import { closeStep, egressIdOf, startSandboxes } from './sandboxes.ts';

export const API_KEY = 'APIe2ekey';
export const API_SECRET = 'e2e-secret-that-is-long-enough-for-hs256';
export const INGEST_TOKEN = 'ingest-token-for-tests';

export { CALLER_NUMBER, PERSONA_CONFIG, PERSONA_DOCUMENT, type ApiAnswer } from './callsync-api.ts';

export interface CallsyncHarness {
  /** The running app (the new one after `restartApp`). */
  readonly app: CallsyncApp;
  /** Its base URL; the same across restarts. */
  readonly url: string;
  /** The environment the app was configured from (what `callsync config check` would read). */
  readonly env: Readonly<Record<string, string>>;
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
  /**
   * `POST /v1/calls` for `room`: from `CALLER_NUMBER` with `PERSONA_CONFIG`, then `body`'s
   * fields. Fails unless the answer is 201; the call's id.
   */
  createCall(room: string, body?: Record<string, unknown>): Promise<string>;
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

export interface HarnessOptions {
  env?: Record<string, string>;
  connectionLimits?: CallsyncAppOptions['connectionLimits'];
  /** Emulator options over the harness's (storage endpoints, Cloud mode, server storage…). */
  emulator?: Partial<LiveKitEmulatorOptions>;
  limits?: Record<string, number>;
  departureTimeoutMs?: number;
}

export async function startCallsyncHarness(options: HarnessOptions = {}): Promise<CallsyncHarness> {
  const sandboxes = await startSandboxes({
    prefix: 'callsync-e2e-',
    liveKit: { apiKey: API_KEY, apiSecret: API_SECRET },
    ingestToken: INGEST_TOKEN,
    emulator: { departureTimeoutMs: options.departureTimeoutMs ?? 200, ...options.emulator },
  });
  const { emulator, crm, recordingsDir } = sandboxes;

  const logLines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line) logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const env: Record<string, string> = {
    ...sandboxes.env,
    CALLSYNC_PORT: '0',
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
  const api: CallsyncHarness['api'] = (method, path, body, headers = {}) =>
    callsyncApi(url, method, path, body, { token: INGEST_TOKEN, headers });

  return {
    get app() {
      return app;
    },
    url,
    env,
    emulator,
    crm,
    recordingsDir,
    logLines,
    api,
    async createCall(room, body = {}) {
      const created = await api('POST', '/v1/calls', {
        roomName: room,
        callerNumber: CALLER_NUMBER,
        config: PERSONA_CONFIG,
        ...body,
      });
      if (created.status !== 201) {
        throw new Error(`POST /v1/calls for ${room}: ${created.status} ${JSON.stringify(created.body)}`);
      }
      return created.body.callId as string;
    },
    egressOf: (room) => egressIdOf(emulator, room),
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
    startLiveKitCall(room, callerNumber = CALLER_NUMBER) {
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
      await sandboxes.close();
    },
  };
}
