/**
 * The LiveKit emulator and the CRM sandbox for one contender's run, in the bench's own process
 * (so neither contender's process pays for them), on a fresh temp dir each run. Records, per
 * room, when its egress became COMPLETE, and injects the CRM's transient faults.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EgressStatus } from '@livekit/protocol';
import { seededRandom } from '../../src/demo/call-plan.ts';
import { createCrmSandbox, type CrmFault, type CrmSandbox } from '../../src/sandbox/crm/index.ts';
import { createLiveKitEmulator, type LiveKitEmulator } from '../../src/sandbox/livekit/index.ts';

export const LIVEKIT_API_KEY = 'benchkey';
export const LIVEKIT_API_SECRET = 'bench-secret-long-enough-for-hs256-signing';
export const CRM_API_KEY = 'crm-bench-key';
/** Caller hung up → room closed; as in the demo (src/demo/services.ts). */
const DEPARTURE_TIMEOUT_MS = 1_000;

export interface BenchSandboxes {
  emulator: LiveKitEmulator;
  crm: CrmSandbox;
  liveKitUrl: string;
  crmUrl: string;
  dir: string;
  /** The volume the egress writes recordings to, shared with the contender. */
  recordingsDir: string;
  /** Epoch ms at which each room's egress was first seen COMPLETE. */
  egressCompleteAtMs: ReadonlyMap<string, number>;
  /** Epoch ms at which each room's egress was first seen ENDING: the contender's StopEgress took effect. */
  egressEndingAtMs: ReadonlyMap<string, number>;
  /** What the contender exchanged with LiveKit so far: API requests it made, webhooks it took. */
  liveKitTraffic(): { apiRequests: number; webhooksDelivered: number };
  /**
   * Queues, on both CRM routes, `requests` entries of which `percent` % (seeded) are a transient
   * fault (a 503 or a connection reset, alternately) and the rest pass (`delayMs: 0`).
   */
  injectTransientFaults(percent: number, requests: number, seed: number): void;
  close(): Promise<void>;
}

export async function startBenchSandboxes(
  options: {
    /** LiveKit's `webhook.filter_params.include_events`; every event when absent. */
    webhookIncludeEvents?: readonly string[] | undefined;
  } = {},
): Promise<BenchSandboxes> {
  const dir = await mkdtemp(join(tmpdir(), 'callsync-bench-'));
  const recordingsDir = join(dir, 'recordings');
  await mkdir(recordingsDir, { recursive: true });
  const emulator = createLiveKitEmulator({
    keys: { [LIVEKIT_API_KEY]: LIVEKIT_API_SECRET },
    recordingsDir,
    departureTimeoutMs: DEPARTURE_TIMEOUT_MS,
    webhookFilter: { includeEvents: options.webhookIncludeEvents },
  });
  const crm = createCrmSandbox({ storageDir: join(dir, 'crm'), apiKey: CRM_API_KEY });
  const egressCompleteAtMs = new Map<string, number>();
  const egressEndingAtMs = new Map<string, number>();
  emulator.events.on('egress:updated', ({ info }) => {
    if (info.status === EgressStatus.EGRESS_ENDING && !egressEndingAtMs.has(info.roomName)) {
      egressEndingAtMs.set(info.roomName, Date.now());
    }
    if (info.status === EgressStatus.EGRESS_COMPLETE && !egressCompleteAtMs.has(info.roomName)) {
      egressCompleteAtMs.set(info.roomName, Date.now());
    }
  });
  const traffic = { apiRequests: 0, webhooksDelivered: 0 };
  emulator.events.on('twirp:request', () => {
    traffic.apiRequests += 1;
  });
  emulator.events.on('webhook:delivered', () => {
    traffic.webhooksDelivered += 1;
  });
  const [{ url: liveKitUrl }, { url: crmUrl }] = await Promise.all([emulator.start(), crm.start()]);
  return {
    emulator,
    crm,
    liveKitUrl,
    crmUrl,
    dir,
    recordingsDir,
    egressCompleteAtMs,
    egressEndingAtMs,
    liveKitTraffic: () => ({ ...traffic }),
    injectTransientFaults(percent, requests, seed) {
      const random = seededRandom(seed);
      for (const endpoint of ['upload', 'call-data'] as const) {
        let faulted = 0;
        const script = Array.from({ length: requests }, (): CrmFault => {
          if (random() * 100 >= percent) return { delayMs: 0 };
          faulted += 1;
          return faulted % 2 === 0 ? { reset: true } : { status: 503 };
        });
        crm.injectFaults(endpoint, script);
      }
    },
    async close() {
      await emulator.close().catch(() => undefined);
      await crm.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
