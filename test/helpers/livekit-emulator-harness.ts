/**
 * One LiveKit emulator per test, with what most emulator tests need around it: a temp
 * recordings directory, a webhook sink registered as the webhook URL, real SDK clients
 * signed with the emulator's key, and a WebhookReceiver for that key. `close()` tears it all
 * down (safe to call from afterEach even if the test already closed parts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  EgressClient,
  EgressStatus,
  EncodedFileOutput,
  EncodedFileType,
  RoomServiceClient,
  ServerError,
  WebhookReceiver,
} from 'livekit-server-sdk';
import type { EgressInfo, EncodedOutputs, WebhookEvent } from 'livekit-server-sdk';
import { afterEach } from 'vitest';
import { createLiveKitEmulator } from '../../src/sandbox/livekit/index.ts';
import type { LiveKitEmulator, LiveKitEmulatorOptions } from '../../src/sandbox/livekit/index.ts';
import type { ReceivedWebhook, WebhookSink } from './livekit-webhook-sink.ts';
import { startWebhookSink } from './livekit-webhook-sink.ts';

export const TEST_API_KEY = 'APItestkey';
export const TEST_API_SECRET = 'test-secret-that-is-long-enough-for-hs256';
/** The SIP caller of the emulator tests' calls. */
export const TEST_CALLER = '+15551230000';
/** 2026-03-01T12:00:00Z: the clock the emulator tests pin (`now`) where times must be exact. */
export const TEST_REFERENCE_MS = Date.UTC(2026, 2, 1, 12, 0, 0);

/** The output callsync asks for: one audio-only OGG file. */
export function oggOutput(filepath = 'calls/{room_name}-{time}.ogg'): EncodedOutputs {
  return { file: new EncodedFileOutput({ fileType: EncodedFileType.OGG, filepath }) };
}

export const hasStatus =
  (status: EgressStatus) =>
  (info: EgressInfo): boolean =>
    info.status === status;

export const hasEnded = (info: EgressInfo): boolean => info.status >= EgressStatus.EGRESS_COMPLETE;

export interface LiveKitHarness {
  emulator: LiveKitEmulator;
  url: string;
  recordingsDir: string;
  sink: WebhookSink;
  egress: EgressClient;
  rooms: RoomServiceClient;
  receiver: WebhookReceiver;
  /** The next webhook delivery, verified and decoded with the SDK's WebhookReceiver. */
  nextEvent(): Promise<{ delivery: ReceivedWebhook; event: WebhookEvent }>;
  close(): Promise<void>;
}

export type LiveKitHarnessOptions = Partial<LiveKitEmulatorOptions> & {
  /** The webhook sink's answer to each delivery (an HTTP status). */
  respond?: (delivery: ReceivedWebhook, index: number) => number;
};

export async function startLiveKitHarness(options: LiveKitHarnessOptions = {}): Promise<LiveKitHarness> {
  const { respond, ...emulatorOptions } = options;
  const recordingsDir = await mkdtemp(join(tmpdir(), 'livekit-emulator-'));
  const sink = await startWebhookSink(respond ? { respond } : {});
  const emulator = createLiveKitEmulator({
    keys: { [TEST_API_KEY]: TEST_API_SECRET },
    recordingsDir,
    webhookUrls: [sink.url],
    webhookRetry: { maxAttempts: 3, baseDelayMs: 5 },
    // Faster than the emulator's defaults; tests that depend on timing set their own.
    activateAfterMs: 10,
    finalizeAfterMs: 10,
    ...emulatorOptions,
  });
  const { url } = await emulator.start();
  const receiver = new WebhookReceiver(TEST_API_KEY, TEST_API_SECRET);
  return {
    emulator,
    url,
    recordingsDir,
    sink,
    egress: new EgressClient(url, TEST_API_KEY, TEST_API_SECRET),
    rooms: new RoomServiceClient(url, TEST_API_KEY, TEST_API_SECRET),
    receiver,
    async nextEvent() {
      const delivery = await sink.next();
      return { delivery, event: await receiver.receive(delivery.rawBody, delivery.authorization) };
    },
    async close() {
      await emulator.close();
      await sink.close();
      await rm(recordingsDir, { recursive: true, force: true });
    },
  };
}

/**
 * For a test file whose tests each start their own emulator: the function returned starts one,
 * and an `afterEach` registered here closes every one the test started.
 */
export function liveKitHarnessPerTest(): (options?: LiveKitHarnessOptions) => Promise<LiveKitHarness> {
  const started: LiveKitHarness[] = [];
  afterEach(async () => {
    for (const harness of started.splice(0)) await harness.close();
  });
  return async (options = {}) => {
    const harness = await startLiveKitHarness(options);
    started.push(harness);
    return harness;
  };
}

/** The SDK's error for a rejected call; fails the test if the call succeeded or threw something else. */
export async function serverErrorOf(call: Promise<unknown>): Promise<ServerError> {
  try {
    await call;
  } catch (error) {
    if (error instanceof ServerError) return error;
    throw error;
  }
  throw new Error('expected the call to fail with a ServerError');
}
