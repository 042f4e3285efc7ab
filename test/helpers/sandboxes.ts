/**
 * What callsync runs against in the end-to-end tests, in this process: the LiveKit emulator and
 * the CRM sandbox, over a temporary directory that also holds the recordings volume (the egress
 * writes it, callsync reads it) and callsync's SQLite store; and the environment that points
 * callsync at them. callsync itself runs in-process (`callsync-harness.ts`) or as a child
 * (`child-pipeline.ts`).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCrmSandbox, type CrmSandbox } from '../../src/sandbox/crm/index.ts';
import {
  createLiveKitEmulator,
  type LiveKitEmulator,
  type LiveKitEmulatorOptions,
} from '../../src/sandbox/livekit/index.ts';

export interface SandboxOptions {
  /** The temporary directory's name prefix. */
  prefix: string;
  liveKit: { apiKey: string; apiSecret: string };
  /** The CRM sandbox's API key (none: it accepts any request). */
  crmApiKey?: string;
  /** callsync's `CALLSYNC_INGEST_TOKEN`. */
  ingestToken: string;
  /** Emulator options over the defaults here (fast egress, webhooks retried a little). */
  emulator?: Partial<LiveKitEmulatorOptions>;
}

export interface Sandboxes {
  dir: string;
  recordingsDir: string;
  emulator: LiveKitEmulator;
  crm: CrmSandbox;
  /**
   * callsync's environment for these sandboxes: LiveKit, the CRM, a SQLite store in `dir`, the
   * recordings volume and the ingest token (port, host and log level are the caller's).
   */
  env: Record<string, string>;
  /** Closes the emulator and the CRM sandbox (each named if it hangs) and removes `dir`. */
  close(): Promise<void>;
}

export async function startSandboxes(options: SandboxOptions): Promise<Sandboxes> {
  const dir = await mkdtemp(join(tmpdir(), options.prefix));
  const recordingsDir = join(dir, 'recordings');
  // The volume the egress shares with callsync: it must exist before callsync starts.
  await mkdir(recordingsDir, { recursive: true });
  const emulator = createLiveKitEmulator({
    keys: { [options.liveKit.apiKey]: options.liveKit.apiSecret },
    recordingsDir,
    activateAfterMs: 10,
    finalizeAfterMs: 50,
    webhookRetry: { maxAttempts: 3, baseDelayMs: 20 },
    ...options.emulator,
  });
  const crm = createCrmSandbox({
    storageDir: join(dir, 'crm'),
    ...(options.crmApiKey === undefined ? {} : { apiKey: options.crmApiKey }),
  });
  const [{ url: liveKitUrl }, { url: crmUrl }] = await Promise.all([emulator.start(), crm.start()]);
  return {
    dir,
    recordingsDir,
    emulator,
    crm,
    env: {
      LIVEKIT_URL: liveKitUrl,
      LIVEKIT_API_KEY: options.liveKit.apiKey,
      LIVEKIT_API_SECRET: options.liveKit.apiSecret,
      CRM_BASE_URL: crmUrl,
      ...(options.crmApiKey === undefined ? {} : { CRM_API_KEY: options.crmApiKey }),
      CALLSYNC_STORE: `sqlite:${join(dir, 'callsync.db')}`,
      CALLSYNC_RECORDINGS_DIR: recordingsDir,
      CALLSYNC_INGEST_TOKEN: options.ingestToken,
    },
    async close() {
      await closeStep('LiveKit emulator', () => emulator.close());
      await closeStep('CRM sandbox', () => crm.close());
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The room's (first) egress id, once there is one (checked and awaited in one tick: no event
 * missed). Only a failing test waits `timeoutMs` for an egress update.
 */
export async function egressIdOf(
  emulator: LiveKitEmulator,
  room: string,
  timeoutMs = 20_000,
): Promise<string> {
  for (;;) {
    const [egress] = emulator.listEgress({ roomName: room });
    if (egress) return egress.egressId;
    await emulator.waitForEvent('egress:updated', (event) => event.info.roomName === room, { timeoutMs });
  }
}

/** How long one part may take to close before the test fails naming it. */
const CLOSE_STEP_TIMEOUT_MS = 10_000;

/** Runs `close`, failing with `name` if it takes longer than `CLOSE_STEP_TIMEOUT_MS`. */
export async function closeStep(name: string, close: () => Promise<void>): Promise<void> {
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
