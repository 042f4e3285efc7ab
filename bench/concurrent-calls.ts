/**
 * Scale bench for the supervisor: `npm run bench` (after the upload bench).
 *
 * Claim under test: one process holds 10,000 concurrent calls, and a burst of hang-ups is
 * delivered without per-call work that grows with the number of calls. The real supervisor,
 * machines and SQLite store (a file, WAL) run here; LiveKit and the CRM are replaced by
 * in-memory effects that answer at once, so the figures are callsync's own cost, not the
 * network's (the end-to-end tests cover the real clients).
 *
 * Printed: heap per idle call (in conversation, after a GC), time to create the calls, time to
 * take one transcript item per call, and for the burst of `end`s: throughput and the p50 / p95
 * / max seconds from `end` to "delivered".
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { createCallLogic } from '../src/machines/call.actors.ts';
import { systemTime } from '../src/machines/timer.actor.ts';
import { createMetrics } from '../src/metrics/metrics.ts';
import { createMetricsRecorder } from '../src/metrics/metrics.recorder.ts';
import { Registry } from 'prom-client';
import { SqliteCallStore } from '../src/store/sqlite-store.ts';
import { Supervisor } from '../src/supervisor.ts';

const CALLS = Number(process.env.BENCH_CALLS ?? 10_000);
const MIB = 1024 * 1024;
const PERSONA = { campaigns: [{ _id: 'camp', client: 'client', voiceAgents: [{ _id: 'va' }] }] };

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

const dir = await mkdtemp(join(tmpdir(), 'callsync-scale-'));
const registry = new Registry();
const recorder = createMetricsRecorder(createMetrics({ registry, processMetrics: false }));
const logic = createCallLogic({
  time: systemTime,
  liveKit: {
    open: () => ({}),
    close: () => undefined,
    startEgress: (_client, input) => Promise.resolve({ egressId: `EG_${input.callId}` }),
    stopEgress: () => Promise.resolve({ alreadyEnded: false }),
    checkEgress: (_client, input) =>
      Promise.resolve({
        status: 'complete',
        file: {
          filename: `${input.roomName}.ogg`,
          location: `/rec/${input.roomName}.ogg`,
          sizeBytes: 100_000,
          durationSeconds: 60,
        },
      }),
  },
  crm: {
    uploadRecording: (request) =>
      Promise.resolve({
        url: `https://crm.example/files/${request.callId}.ogg`,
        sizeBytes: 100_000,
        durationSeconds: 60,
      }),
    postCallData: () => Promise.resolve({ status: 201 }),
  },
});
const supervisor = new Supervisor({
  store: new SqliteCallStore(join(dir, 'callsync.db')),
  logic,
  webhooks: {
    verify: () => {
      throw new Error('no webhooks in this bench');
    },
  },
  logger: pino({ level: 'silent' }),
  metrics: recorder,
  renderMetrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
  time: systemTime,
  // Poll at once after the stop: the in-memory egress is already complete.
  limits: { egressPollIntervalMs: 10 },
});
await supervisor.start();

gc();
const heapBefore = process.memoryUsage().heapUsed;
let started = performance.now();
const callIds: string[] = [];
for (let i = 0; i < CALLS; i++) {
  const { callId } = await supervisor.createCall({
    roomName: `room-${i}`,
    callerNumber: `+1555${String(i).padStart(7, '0')}`,
    config: PERSONA,
  });
  callIds.push(callId);
}
const createSeconds = (performance.now() - started) / 1000;
// Let every egress start settle, so the calls are idle in conversation.
while ((supervisor.activeCallsByState().get('inConversation') ?? 0) < CALLS)
  await new Promise((r) => setImmediate(r));
gc();
const heapPerCallKiB = (process.memoryUsage().heapUsed - heapBefore) / CALLS / 1024;

started = performance.now();
for (const callId of callIds) {
  await supervisor.addTranscript(callId, {
    items: [
      {
        id: 'i1',
        role: 'user',
        content: 'Hello, I would like to know more.',
        timestamp: new Date().toISOString(),
      },
    ],
  });
}
const transcriptSeconds = (performance.now() - started) / 1000;

const endedAt = new Map<string, number>();
const latencies: number[] = [];
const allDelivered = new Promise<void>((resolve) => {
  supervisor.events.on('call:finished', ({ callId }) => {
    latencies.push((performance.now() - endedAt.get(callId)!) / 1000);
    if (latencies.length === CALLS) resolve();
  });
});
started = performance.now();
for (const callId of callIds) {
  endedAt.set(callId, performance.now());
  await supervisor.endCall(callId, {});
}
await allDelivered;
const burstSeconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
await new Promise((r) => setTimeout(r, 100)); // let stopped actors' cleanups run before measuring
gc();
const heapAfterMiB = (process.memoryUsage().heapUsed - heapBefore) / MIB;

console.log(`concurrent-calls bench: ${CALLS} calls, SQLite store in ${dir}`);
console.log(
  `create            ${createSeconds.toFixed(2)} s (${((createSeconds / CALLS) * 1e6).toFixed(0)} µs per call)`,
);
console.log(
  `heap per idle call ${heapPerCallKiB.toFixed(1)} KiB (in conversation, after GC${'gc' in globalThis ? '' : ' — run with --expose-gc for a stable figure'})`,
);
console.log(`transcript items  ${transcriptSeconds.toFixed(2)} s for one item per call`);
console.log(
  `burst of ends     ${CALLS} delivered in ${burstSeconds.toFixed(2)} s (${(CALLS / burstSeconds).toFixed(0)} calls/s); ` +
    `end → delivered p50 ${percentile(latencies, 50).toFixed(2)} s, p95 ${percentile(latencies, 95).toFixed(2)} s, max ${latencies.at(-1)!.toFixed(2)} s`,
);
console.log(
  `heap after        ${heapAfterMiB.toFixed(1)} MiB above the start once every call is done (live actors: ${supervisor.liveCallCount})`,
);

await supervisor.close();
await rm(dir, { recursive: true, force: true });
