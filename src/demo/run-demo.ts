/**
 * The demo itself, as a function: push a planned batch of calls through callsync (bounded
 * concurrency, staggered starts), wait until each one reached the CRM or the deadline passed,
 * then read callsync's view of every call, its metrics, the CRM sandbox's read-out and what
 * the recordings' store holds, and reduce them to a `DemoSummary`. It starts and stops
 * nothing: the caller owns the services (main.ts for `npm run demo`, the test for its own
 * batch).
 *
 * Waiting is event-driven. Per call, callsync's `call:finished` event says the call reached a
 * final state; then, unless it failed, the CRM sandbox's `waitForCallData` confirms the
 * document is stored. One deadline, counted from the moment the last call ended, bounds it all.
 */
import type { EventEmitter } from 'node:events';
import { z } from 'zod';
import { MISSING_RECORDING_REASONS } from '../machines/recording-policy.ts';
import type { SupervisorEventMap } from '../supervisor.ts';
import { planCalls } from './call-plan.ts';
import { runPooled } from './pool.ts';
import { sampleValue } from './prometheus-text.ts';
import type { DemoServices } from './services.ts';
import { simulateCall, type CallRun } from './simulate-call.ts';
import { buildSummary, type CallView, type DemoSummary, type FinalOutcome } from './summary.ts';

export const DEMO_CALLS_DEFAULT = 50;
export const CONCURRENCY_DEFAULT = 10;
export const STAGGER_MS_DEFAULT = 120;
export const TURN_GAP_MS_DEFAULT = 120;
export const DEADLINE_MS_DEFAULT = 120_000;
/** Reading the calls back afterwards: a few at a time is plenty for a local SQLite store. */
const READ_CONCURRENCY = 10;

export interface RunDemoOptions {
  services: DemoServices;
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
  services: DemoServices,
  finished: FinishedCalls,
  deadlineMs: number,
): Promise<string | null> {
  const { callId } = run;
  if (callId === null) return run.error ?? 'never created';
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
  const { api, emulator, crm, app } = services;
  const progress = options.onProgress ?? (() => undefined);
  const startedAtMs = Date.now();
  const plans = planCalls(options.calls ?? DEMO_CALLS_DEFAULT, options.seed);
  const concurrency = options.concurrency ?? CONCURRENCY_DEFAULT;
  const finished = new FinishedCalls(app.supervisor.events);

  try {
    progress(`pushing ${plans.length} calls through ${services.urls.app} (${concurrency} at a time)…`);
    const runs = await runPooled(
      plans,
      { concurrency, staggerMs: options.staggerMs ?? STAGGER_MS_DEFAULT, signal: options.signal },
      (plan) =>
        simulateCall(plan, {
          api,
          emulator,
          crm,
          turnGapMs: options.turnGapMs ?? TURN_GAP_MS_DEFAULT,
          signal: options.signal,
        }),
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
    const exposition = await api.getText('/metrics');
    const missingReasons: Record<string, number> = {};
    for (const reason of MISSING_RECORDING_REASONS) {
      const count = sampleValue(exposition, 'callsync_recordings_missing_total', { reason });
      if (count > 0) missingReasons[reason] = count;
    }
    const storage = await services.storage.readout();

    return buildSummary({
      runs,
      views,
      waitProblems,
      received: crm.received(),
      retries: {
        upload: sampleValue(exposition, 'callsync_crm_retries_total', { endpoint: 'upload' }),
        callData: sampleValue(exposition, 'callsync_crm_retries_total', { endpoint: 'call_data' }),
      },
      missingReasons,
      storage,
      targetSeconds: app.config.uploadTargetSeconds,
      wallSeconds,
      urls: services.urls,
    });
  } finally {
    finished.dispose();
  }
}
