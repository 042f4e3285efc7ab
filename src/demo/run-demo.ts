/**
 * The demo itself, as a function: push a planned batch of calls through callsync (bounded
 * concurrency, staggered starts), wait until each one reached the CRM or the deadline passed,
 * then read callsync's view of every call, its metrics, the CRM sandbox's read-out and what
 * the recordings' store holds, and reduce them to a `DemoSummary`. It starts and stops
 * nothing: the caller owns the services (main.ts for `npm run demo`, the test for its own
 * batch), either callsync in-process (services.ts) or a fleet of supervisor processes behind a
 * proxy (fleet.ts).
 *
 * Waiting is event-driven. In-process, per call, callsync's `call:finished` event says the call
 * reached a final state; then, unless it failed, the CRM sandbox's `waitForCallData` confirms
 * the document is stored. A fleet's supervisors are other processes: there the CRM sandbox's
 * `waitForCallData` alone is awaited (the plan has no call meant to end `failed`, so one that
 * does waits out the deadline and is reported as not delivered). One deadline, counted from the
 * moment the last call ended, bounds it all.
 */
import type { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { MISSING_RECORDING_REASONS } from '../machines/recording-policy.ts';
import type { CrmSandbox } from '../sandbox/crm/index.ts';
import type { LiveKitEmulator } from '../sandbox/livekit/index.ts';
import type { SupervisorEventMap } from '../supervisor.ts';
import type { CallsyncClient } from './api-client.ts';
import { planCalls } from './call-plan.ts';
import { runPooled } from './pool.ts';
import { sampleValue } from './prometheus-text.ts';
import type { DemoStorageReadout } from './services.ts';
import { simulateCall, type CallRun } from './simulate-call.ts';
import { buildSummary, type CallView, type DemoSummary, type FinalOutcome } from './summary.ts';

export const DEMO_CALLS_DEFAULT = 50;
export const CONCURRENCY_DEFAULT = 10;
export const STAGGER_MS_DEFAULT = 120;
export const TURN_GAP_MS_DEFAULT = 120;
export const DEADLINE_MS_DEFAULT = 120_000;
/** Reading the calls back afterwards: a few at a time is plenty for a local SQLite store. */
const READ_CONCURRENCY = 10;
/** A fleet: between two reads of a delivered call's view, until it shows its final state. */
const FINAL_STATE_POLL_MS = 100;
const FINAL_STATES: ReadonlySet<string> = new Set(['done', 'failed']);

/** What the demo drives and reads: callsync in-process (`DemoServices`) or a fleet (`DemoFleet`). */
export interface DemoTarget {
  /** callsync's HTTP API as the agents reach it: the process itself, or the fleet's proxy. */
  api: CallsyncClient;
  emulator: LiveKitEmulator;
  crm: CrmSandbox;
  urls: { app: string; liveKit: string; crm: string; s3?: string | undefined };
  storage: { readout(): Promise<DemoStorageReadout> };
  /** callsync's upload target (`CALLSYNC_UPLOAD_TARGET_SECONDS`). */
  targetSeconds: number;
  /** The in-process supervisor's events; absent for a fleet (its supervisors are other processes). */
  supervisorEvents?: EventEmitter<SupervisorEventMap> | undefined;
  /** `/metrics` of every running callsync process; counters are summed over them. */
  metricsExpositions(): Promise<string[]>;
}

export interface RunDemoOptions {
  services: DemoTarget;
  /** How many calls; default 50. */
  calls?: number | undefined;
  /** Calls in progress at once; default 10. */
  concurrency?: number | undefined;
  /** Minimum spacing between call starts, in milliseconds; default 120. */
  staggerMs?: number | undefined;
  /** Pause between transcript turns, in milliseconds; default 120. */
  turnGapMs?: number | undefined;
  /** How long after the last call ended every call must have reached the CRM; default 120 s. */
  deadlineMs?: number | undefined;
  /** Seed of the call plan; the same seed pushes the same calls. */
  seed?: number | undefined;
  /** Called as each simulated call starts, with how many have started so far (1-based). */
  onCallStarted?: ((started: number, total: number) => void) | undefined;
  /** One line at each phase, for a person watching. */
  onProgress?: ((message: string) => void) | undefined;
  signal?: AbortSignal | undefined;
}

const callViewSchema = z.looseObject({
  callId: z.string(),
  state: z.string(),
  outcome: z.enum(['delivered', 'partial']).nullable(),
  endReason: z.string().nullable(),
  endedAt: z.string().nullable(),
  callDataAcknowledgedAt: z.string().nullable(),
  lastError: z
    .looseObject({ code: z.string().optional(), status: z.number().optional() })
    .nullable()
    .optional(),
});

/** Remembers every `call:finished` from the moment it is created, and lets a caller await one. */
class FinishedCalls {
  readonly #outcomes = new Map<string, FinalOutcome>();
  readonly #waiters = new Map<string, Set<(outcome: FinalOutcome) => void>>();
  readonly #events: EventEmitter<SupervisorEventMap>;
  readonly #onFinished = ({ callId, outcome }: SupervisorEventMap['call:finished'][0]) => {
    this.#outcomes.set(callId, outcome);
    for (const wake of this.#waiters.get(callId) ?? []) wake(outcome);
    this.#waiters.delete(callId);
  };

  constructor(events: EventEmitter<SupervisorEventMap>) {
    // One listener for every call: a listener per waiting call would trip Node's leak warning.
    this.#events = events;
    events.on('call:finished', this.#onFinished);
  }

  /** The call's final outcome, or null if none came by `deadlineMs` (epoch ms). */
  wait(callId: string, deadlineMs: number): Promise<FinalOutcome | null> {
    const known = this.#outcomes.get(callId);
    if (known !== undefined) return Promise.resolve(known);
    return new Promise((resolve) => {
      const waiters = this.#waiters.get(callId) ?? new Set();
      this.#waiters.set(callId, waiters);
      const wake = (outcome: FinalOutcome | null) => {
        clearTimeout(timer);
        waiters.delete(wake);
        resolve(outcome);
      };
      const timer = setTimeout(() => wake(null), Math.max(1, deadlineMs - Date.now()));
      waiters.add(wake);
    });
  }

  dispose(): void {
    this.#events.off('call:finished', this.#onFinished);
  }
}

/** Why the call is not in the CRM, or null once its call-data document is stored. */
async function awaitDelivery(
  run: CallRun,
  services: DemoTarget,
  finished: FinishedCalls | null,
  deadlineMs: number,
): Promise<string | null> {
  const { callId } = run;
  if (callId === null) return run.error ?? 'never created';
  if (finished === null) {
    try {
      await services.crm.waitForCallData(callId, { timeoutMs: Math.max(1, deadlineMs - Date.now()) });
    } catch {
      return 'call data not in the CRM by the deadline';
    }
    // The CRM has it; the instance driving the call writes its final state right after, so the
    // view is read until it says so (bounded by the deadline; the summary reports one that never does).
    while (Date.now() < deadlineMs) {
      const view = callViewSchema.safeParse(await services.api.get(`/v1/calls/${callId}`).catch(() => null));
      if (view.success && FINAL_STATES.has(view.data.state)) break;
      await delay(FINAL_STATE_POLL_MS);
    }
    return null;
  }
  const outcome = await finished.wait(callId, deadlineMs);
  const inCrm = () => services.crm.received().callData.some((item) => item.callId === callId);
  if (outcome === 'failed') return inCrm() ? null : 'callsync gave up (state failed)';
  try {
    // Acknowledged implies stored; this also covers a call whose finish event never came.
    await services.crm.waitForCallData(callId, { timeoutMs: Math.max(1, deadlineMs - Date.now()) });
    return null;
  } catch {
    return outcome === null ? 'no final state and no call data by the deadline' : 'call data not in the CRM';
  }
}

export async function runDemo(options: RunDemoOptions): Promise<DemoSummary> {
  const { services } = options;
  const { api, emulator, crm } = services;
  const progress = options.onProgress ?? (() => undefined);
  const startedAtMs = Date.now();
  const plans = planCalls(options.calls ?? DEMO_CALLS_DEFAULT, options.seed);
  const concurrency = options.concurrency ?? CONCURRENCY_DEFAULT;
  const finished = services.supervisorEvents ? new FinishedCalls(services.supervisorEvents) : null;
  let started = 0;

  try {
    progress(`pushing ${plans.length} calls through ${services.urls.app} (${concurrency} at a time)…`);
    const runs = await runPooled(
      plans,
      { concurrency, staggerMs: options.staggerMs ?? STAGGER_MS_DEFAULT, signal: options.signal },
      (plan) => {
        started += 1;
        options.onCallStarted?.(started, plans.length);
        return simulateCall(plan, {
          api,
          emulator,
          crm,
          turnGapMs: options.turnGapMs ?? TURN_GAP_MS_DEFAULT,
          signal: options.signal,
        });
      },
    );
    const deadlineMs = Date.now() + (options.deadlineMs ?? DEADLINE_MS_DEFAULT);
    progress(
      `all ${runs.length} calls ended after ${((Date.now() - startedAtMs) / 1000).toFixed(1)} s; waiting for the CRM…`,
    );

    const problems = await Promise.all(runs.map((run) => awaitDelivery(run, services, finished, deadlineMs)));
    const waitProblems = new Map<string, string>();
    runs.forEach((run, index) => {
      const problem = problems[index];
      if (run.callId !== null && problem) waitProblems.set(run.callId, problem);
    });
    const wallSeconds = (Date.now() - startedAtMs) / 1000;

    const views = new Map<string, CallView>();
    await runPooled(runs, { concurrency: READ_CONCURRENCY, staggerMs: 0 }, async (run) => {
      if (run.callId === null) return;
      const parsed = callViewSchema.safeParse(await api.get(`/v1/calls/${run.callId}`).catch(() => null));
      if (parsed.success) views.set(run.callId, parsed.data);
    });
    const expositions = await services.metricsExpositions();
    const sum = (name: string, labels: Record<string, string>) =>
      expositions.reduce((total, exposition) => total + sampleValue(exposition, name, labels), 0);
    const missingReasons: Record<string, number> = {};
    for (const reason of MISSING_RECORDING_REASONS) {
      const count = sum('callsync_recordings_missing_total', { reason });
      if (count > 0) missingReasons[reason] = count;
    }
    const storage = await services.storage.readout();

    return buildSummary({
      runs,
      views,
      waitProblems,
      received: crm.received(),
      retries: {
        upload: sum('callsync_crm_retries_total', { endpoint: 'upload' }),
        callData: sum('callsync_crm_retries_total', { endpoint: 'call_data' }),
      },
      missingReasons,
      storage,
      targetSeconds: services.targetSeconds,
      wallSeconds,
      urls: services.urls,
    });
  } finally {
    finished?.dispose();
  }
}
