/**
 * One contender through one workload: fresh sandboxes, the contender's process, the calls
 * created (bounded concurrency) and talked through until each egress records, then every call
 * ended in the same burst, and the CRM watched until it has every call's data or stops
 * receiving. CPU and memory come from the contender's /proc entries, timings from the
 * emulator's egress events and the CRM sandbox's `receivedAt`.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { EgressStatus } from '@livekit/protocol';
import { runPooled } from '../../src/demo/pool.ts';
import type { LiveKitEmulator } from '../../src/sandbox/livekit/index.ts';
import type { Contender, ContenderName } from './contender.ts';
import type { BenchCall } from './plan.ts';
import { totalCpuTimeMs, totalPeakRssMiB } from './proc-stats.ts';
import { startBenchSandboxes, type BenchSandboxes } from './sandboxes.ts';
import type { LoopDelay } from './stats.ts';

/** Calls being set up at once (creating calls is not what is measured). */
const SETUP_CONCURRENCY = 50;
const EGRESS_ACTIVE_TIMEOUT_MS = 30_000;
/** How often the bench looks at what the CRM has (each look copies its read-out). */
const CRM_POLL_INTERVAL_MS = 1_000;
/**
 * The CRM received nothing new for this long: whatever is missing is lost. Longer than
 * callsync's first slow-lane wait (1 min + 10 %, src/machines/retry-policy.ts), so a call that
 * failed six attempts in a row under faults is seen delivered, not taken for lost.
 */
const CRM_QUIET_MS = 75_000;
const RUN_TIMEOUT_MS = 600_000;
/** After the last call is in, a pause so late retries and the loop settle before the reads. */
const SETTLE_MS = 1_000;

export interface WorkloadSpec {
  calls: BenchCall[];
  /** Percentage of CRM requests that fail transiently; 0 for none. */
  crmFaultPercent: number;
  seed: number;
  /** The only webhook events LiveKit sends (its `webhook.filter_params`); all when absent. */
  webhookIncludeEvents?: readonly string[] | undefined;
}

export interface RunResult {
  contender: ContenderName;
  calls: number;
  delivered: number;
  /** Delivered with a recording URL (not partial). */
  withRecording: number;
  /** CRM has the call data − egress COMPLETE, per delivered call, in ms. */
  addedLatencyMs: number[];
  /** CRM has the call data − the agent's end, per delivered call, in ms. */
  endToCrmMs: number[];
  /** The egress ENDING (the contender's StopEgress took effect) − the agent's end, per call, in ms. */
  endToStopMs: number[];
  /** The contender answered the agent's end − the agent sent it, per call, in ms. */
  endAnsweredMs: number[];
  /** CPU time of the contender's process over the calls' whole life (setup, burst, delivery). */
  cpuMs: number;
  /** CPU time from the burst of ends until the last delivery. */
  burstCpuMs: number;
  /** From the burst of ends to the CRM's last call data, in ms (null when nothing arrived). */
  burstToLastMs: number | null;
  peakRssMiB: number;
  /** Over the burst and delivery. */
  loopDelay: LoopDelay;
  /** Requests the CRM saw on `/upload` and `/call-data`, faulted ones included. */
  crmRequests: number;
  /** LiveKit API requests the contender made, and webhooks LiveKit delivered to it, over `cpuMs`'s window. */
  liveKitRequests: number;
  webhooksDelivered: number;
  /** CPU time of this process (the emulator and the CRM sandbox) over the same window as `cpuMs`. */
  sandboxesCpuMs: number;
  /**
   * This process's own event-loop delay from the burst to the last delivery, in ms: when it is
   * large, the sandboxes answered (and the agents' requests went out) late, whoever was measured.
   */
  sandboxesLoopDelayMaxMs: number;
}

const US_PER_MS = 1_000;
const NS_PER_MS = 1_000_000;

function ownCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / US_PER_MS;
}

/** Resolves once the room's egress has gone past STARTING. */
async function egressRecording(emulator: LiveKitEmulator, room: string): Promise<void> {
  const deadlineMs = Date.now() + EGRESS_ACTIVE_TIMEOUT_MS;
  const [existing] = emulator.listEgress({ roomName: room });
  const egress =
    existing ??
    (
      await emulator.waitForEvent('egress:updated', ({ info }) => info.roomName === room, {
        timeoutMs: EGRESS_ACTIVE_TIMEOUT_MS,
      })
    ).info;
  await emulator.waitForEgress(egress.egressId, (info) => info.status !== EgressStatus.EGRESS_STARTING, {
    timeoutMs: Math.max(1, deadlineMs - Date.now()),
  });
}

async function setUpCall(sandboxes: BenchSandboxes, contender: Contender, call: BenchCall): Promise<number> {
  const { emulator } = sandboxes;
  emulator.setRoomBehaviour(call.roomName, {
    recordingSeconds: call.recordingSeconds,
    activateAfterMs: call.activateAfterMs,
    finalizeAfterMs: call.finalizeAfterMs,
  });
  emulator.createRoom({ name: call.roomName });
  emulator.startSipCall({ room: call.roomName, callerNumber: call.callerNumber });
  // The call "started" recordingSeconds ago, so its duration matches its recording.
  const startedAtMs = Date.now() - call.recordingSeconds * 1000;
  const recording = egressRecording(emulator, call.roomName);
  // A failed start leaves this wait pending until the sandboxes close: not an unhandled rejection.
  recording.catch(() => undefined);
  await contender.startCall(call, startedAtMs);
  await contender.reportTurns(call, startedAtMs);
  await recording;
  return startedAtMs;
}

/** Waits until the CRM has call data for every id, or has been quiet too long; first arrival per id. */
async function crmArrivals(sandboxes: BenchSandboxes, callIds: ReadonlySet<string>) {
  const startedMs = Date.now();
  let lastChangeMs = startedMs;
  let seen = 0;
  for (;;) {
    await delay(CRM_POLL_INTERVAL_MS);
    const received = sandboxes.crm.received();
    const arrivals = new Map<string, number>();
    let withRecording = 0;
    for (const entry of received.callData) {
      if (callIds.has(entry.callId) && !arrivals.has(entry.callId)) {
        arrivals.set(entry.callId, Date.parse(entry.receivedAt));
        if (entry.document.callDetails.recordingUrl !== null) withRecording += 1;
      }
    }
    const requests = received.requests.upload + received.requests['call-data'];
    if (requests !== seen) {
      seen = requests;
      lastChangeMs = Date.now();
    }
    const now = Date.now();
    if (
      arrivals.size === callIds.size ||
      now - lastChangeMs > CRM_QUIET_MS ||
      now - startedMs > RUN_TIMEOUT_MS
    ) {
      return { arrivals, requests, withRecording };
    }
  }
}

export async function runOnce(
  spec: WorkloadSpec,
  startContender: (sandboxes: BenchSandboxes) => Promise<Contender>,
): Promise<RunResult> {
  const sandboxes = await startBenchSandboxes({ webhookIncludeEvents: spec.webhookIncludeEvents });
  let contender: Contender | undefined;
  try {
    contender = await startContender(sandboxes);
    const running = contender;
    const cpuAtStartMs = totalCpuTimeMs(running.pids);
    const ownCpuAtStartMs = ownCpuMs();
    const trafficAtStart = sandboxes.liveKitTraffic();
    const startedAtMs = await runPooled(
      spec.calls,
      { concurrency: SETUP_CONCURRENCY, staggerMs: 0 },
      (call) => setUpCall(sandboxes, running, call),
    );
    process.stderr.write(`  ${running.name}: ${spec.calls.length} calls set up; ending them all\n`);
    if (spec.crmFaultPercent > 0) {
      // Room for every retry: each call makes at most a handful of requests per route.
      sandboxes.injectTransientFaults(spec.crmFaultPercent, spec.calls.length * 4, spec.seed);
    }
    await running.eventLoopDelay(); // starts the window
    const ownLoop = monitorEventLoopDelay({ resolution: 10 });
    ownLoop.enable();
    const cpuAtBurstMs = totalCpuTimeMs(running.pids);
    const endedAtMs = new Map<string, number>();
    const endAnsweredMs: number[] = [];
    const burstAtMs = Date.now();
    await Promise.all(
      spec.calls.map(async (call, index) => {
        const ended = Date.now();
        endedAtMs.set(running.crmCallIdOf(call), ended);
        await running.endCall(call, startedAtMs[index]!, ended);
        endAnsweredMs.push(Date.now() - ended);
        // The agent hangs up the SIP leg after `end` (src/demo/simulate-call.ts).
        sandboxes.emulator.hangUp({ room: call.roomName });
      }),
    );
    process.stderr.write(`  ${running.name}: every end accepted; waiting for the CRM\n`);
    const { arrivals, requests, withRecording } = await crmArrivals(sandboxes, new Set(endedAtMs.keys()));
    const cpuAtEndMs = totalCpuTimeMs(running.pids);
    const ownCpuAtEndMs = ownCpuMs();
    const trafficAtEnd = sandboxes.liveKitTraffic();
    ownLoop.disable();
    await delay(SETTLE_MS);
    const loopDelay = await running.eventLoopDelay();
    const addedLatencyMs: number[] = [];
    const endToCrmMs: number[] = [];
    const endToStopMs: number[] = [];
    for (const call of spec.calls) {
      const callId = running.crmCallIdOf(call);
      const endingMs = sandboxes.egressEndingAtMs.get(call.roomName);
      const callEndedMs = endedAtMs.get(callId);
      if (endingMs !== undefined && callEndedMs !== undefined) endToStopMs.push(endingMs - callEndedMs);
      const arrivedMs = arrivals.get(callId);
      if (arrivedMs === undefined) continue;
      endToCrmMs.push(arrivedMs - (endedAtMs.get(callId) ?? arrivedMs));
      const completeMs = sandboxes.egressCompleteAtMs.get(call.roomName);
      if (completeMs !== undefined) addedLatencyMs.push(arrivedMs - completeMs);
    }
    return {
      contender: running.name,
      calls: spec.calls.length,
      delivered: arrivals.size,
      withRecording,
      addedLatencyMs,
      endToCrmMs,
      endToStopMs,
      endAnsweredMs,
      cpuMs: cpuAtEndMs - cpuAtStartMs,
      burstCpuMs: cpuAtEndMs - cpuAtBurstMs,
      burstToLastMs: arrivals.size === 0 ? null : Math.max(...arrivals.values()) - burstAtMs,
      peakRssMiB: totalPeakRssMiB(running.pids),
      loopDelay,
      crmRequests: requests,
      liveKitRequests: trafficAtEnd.apiRequests - trafficAtStart.apiRequests,
      webhooksDelivered: trafficAtEnd.webhooksDelivered - trafficAtStart.webhooksDelivered,
      sandboxesCpuMs: ownCpuAtEndMs - ownCpuAtStartMs,
      sandboxesLoopDelayMaxMs: ownLoop.max / NS_PER_MS,
    };
  } catch (error) {
    process.stderr.write(`  ${contender?.name ?? 'contender'}: the run failed: ${String(error)}\n`);
    throw error;
  } finally {
    await contender?.close();
    await sandboxes.close();
  }
}
