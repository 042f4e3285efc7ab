/**
 * The upload machine (one CRM step with retries) as a test model, like call.model.ts for the
 * call machine: which events can happen in each state (`uploadModelEvents`), which states count
 * as the same (`uploadModelKey`), what to compare between the model and the real actor
 * (`uploadProjection`), the paths the tests drive (`uploadModel`), and how to drive one through
 * a real actor (`runUploadPath`).
 *
 * Families: every shortest path over the full schedule (`MAX_ATTEMPTS`), every simple path with the
 * schedule cut to 4 attempts (the paths double with each attempt, since an attempt can fail two
 * ways).
 */
import { expect } from 'vitest';
import type { AnyMachineSnapshot, AnyStateMachine, SnapshotFrom } from 'xstate';
import { getAdjacencyMap, getShortestPaths, getSimplePaths, type StatePath } from 'xstate/graph';
import { MAX_ATTEMPTS, jitterSample, retryDelayMs } from '../../src/machines/retry-policy.ts';
import { uploadMachine, type UploadInput } from '../../src/machines/upload.machine.ts';
import type { Coverage } from './coverage.ts';
import { armedTimerDues, restartTime } from './crash.ts';
import {
  CALL_ID,
  DELIVERED_RECORDING,
  RECORDING_FILE,
  REFERENCE_TIMESTAMP,
  UploadHarness,
  fatalError,
  retryableError,
} from './harness.ts';
import {
  ModelReplay,
  edgeTour,
  eventsOf,
  expectEqual,
  type Adjacency,
  type ModelEvent,
  type ModelEvents,
} from './model-paths.ts';

export type UploadSnapshot = SnapshotFrom<typeof uploadMachine>;
type UploadPath = StatePath<UploadSnapshot, ModelEvent>;

export const UPLOAD_KEY = `${CALL_ID}:recording`;
const RETRY_AFTER_MS = 30_000;
/** The attempts the simple paths are cut to. */
export const SIMPLE_MAX_ATTEMPTS = 4;

export function uploadInput(maxAttempts?: number): UploadInput {
  return {
    request: { step: 'recording', callId: CALL_ID, idempotencyKey: UPLOAD_KEY, file: RECORDING_FILE },
    now: REFERENCE_TIMESTAMP,
    attemptTimeoutMs: 60_000,
    maxAttempts,
  };
}

const failure = (code: string, retryable: boolean, retryAfterMs?: number) => ({
  info: { code, message: code, retryable, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) },
  at: REFERENCE_TIMESTAMP,
});

function uploadModelEvents(snapshot: UploadSnapshot): ModelEvent[] {
  if (snapshot.matches('attempting')) {
    return [
      {
        type: 'xstate.done.actor.deliver',
        output: { result: { step: 'recording', recording: DELIVERED_RECORDING }, at: REFERENCE_TIMESTAMP },
      },
      { type: 'xstate.error.actor.deliver', error: failure('CRM_UNAVAILABLE', true) },
      { type: 'xstate.error.actor.deliver', error: failure('CRM_RATE_LIMITED', true, RETRY_AFTER_MS) },
      { type: 'xstate.error.actor.deliver', error: failure('CRM_REJECTED', false) },
      { type: 'timer.attempt_timeout', at: REFERENCE_TIMESTAMP },
    ];
  }
  if (snapshot.matches('backoff')) return [{ type: 'timer.retry_due', at: REFERENCE_TIMESTAMP }];
  return [];
}

function uploadModelKey(snapshot: AnyMachineSnapshot): string {
  const { context } = snapshot as UploadSnapshot;
  return JSON.stringify([snapshot.status, snapshot.value, context.attempt, context.failures]);
}

function uploadProjection(snapshot: AnyMachineSnapshot) {
  const { context, output } = snapshot as UploadSnapshot;
  const last = context.lastFailure;
  return {
    status: snapshot.status,
    value: snapshot.value as unknown,
    attempt: context.attempt,
    failures: context.failures,
    lastFailure:
      last === null
        ? null
        : {
            attempt: last.attempt,
            code: last.error.code,
            lane: last.lane,
            retrying: last.nextAttemptAt !== null,
          },
    ack: context.ack,
    output:
      output === undefined
        ? null
        : {
            status: output.status,
            attempts: output.attempts,
            code: output.status === 'failed' ? output.error.code : null,
          },
  };
}

type UploadProjection = ReturnType<typeof uploadProjection>;

function traversal(maxAttempts?: number) {
  return {
    input: uploadInput(maxAttempts),
    events: uploadModelEvents,
    serializeState: uploadModelKey,
    filterEvents: (snapshot: UploadSnapshot, event: ModelEvent) =>
      snapshot.status === 'active' && snapshot.can(event as never),
  } as never;
}

/** One family of paths and the schedule (attempts) it runs with. */
export interface UploadFamily {
  readonly family: string;
  readonly maxAttempts: number | undefined;
  readonly paths: readonly ModelEvents[];
  /** The model's exact states along a path, replayed once per distinct prefix. */
  readonly replay: ModelReplay<UploadProjection>;
}

function family(
  family: string,
  maxAttempts: number | undefined,
  paths: ModelEvents[],
  replay = new ModelReplay(
    uploadMachine as AnyStateMachine,
    uploadInput(maxAttempts),
    uploadProjection,
    uploadModelKey,
  ),
): UploadFamily {
  return { family, maxAttempts, paths, replay };
}

interface UploadModel {
  /** What the model tests drive: every shortest path and every simple path. */
  readonly families: readonly UploadFamily[];
  /**
   * Paths that together take every model edge of the schedule cut to 4 attempts (short, and the
   * same transitions as the full one), for the coverage test.
   */
  readonly tour: UploadFamily;
}

let model: UploadModel | undefined;

/** The upload model's paths, built once per module instance. */
export function uploadModel(): UploadModel {
  if (model !== undefined) return model;
  const machine = uploadMachine as AnyStateMachine;
  const shortestPaths = getShortestPaths(machine, traversal()) as unknown as UploadPath[];
  const cut = family(
    `simple paths (${SIMPLE_MAX_ATTEMPTS} attempts)`,
    SIMPLE_MAX_ATTEMPTS,
    (getSimplePaths(machine, traversal(SIMPLE_MAX_ATTEMPTS)) as unknown as UploadPath[]).map(eventsOf),
  );
  const adjacency = getAdjacencyMap(
    machine,
    traversal(SIMPLE_MAX_ATTEMPTS),
  ) as unknown as Adjacency<UploadSnapshot>;
  const cutShortest = getShortestPaths(machine, traversal(SIMPLE_MAX_ATTEMPTS)) as unknown as UploadPath[];
  model = {
    families: [
      family(`shortest paths (${MAX_ATTEMPTS} attempts)`, undefined, shortestPaths.map(eventsOf)),
      cut,
    ],
    tour: family(
      `edge tour (${SIMPLE_MAX_ATTEMPTS} attempts)`,
      SIMPLE_MAX_ATTEMPTS,
      edgeTour(adjacency, cutShortest, uploadModelKey),
      cut.replay,
    ),
  };
  return model;
}

export function describeUploadPath(events: ModelEvents): string {
  return (
    events
      .map((event) =>
        event.type === 'xstate.error.actor.deliver'
          ? `error(${(event.error as { info: { code: string } }).info.code})`
          : event.type.replace('xstate.', ''),
      )
      .join(' → ') || '(initial state)'
  );
}

// ---------------------------------------------------------------------------------------------
// Driving a model path

async function driveUploadStep(h: UploadHarness, event: ModelEvent): Promise<void> {
  switch (event.type) {
    case 'xstate.done.actor.deliver':
      await h.resolve('uploadRecording', DELIVERED_RECORDING);
      return;
    case 'xstate.error.actor.deliver': {
      const { info } = event.error as ReturnType<typeof failure>;
      await h.reject(
        'uploadRecording',
        info.retryable ? retryableError(info.code, info.retryAfterMs) : fatalError(info.code),
      );
      return;
    }
    case 'timer.attempt_timeout':
      await h.advanceTo(h.context.attemptDeadlineAt);
      return;
    case 'timer.retry_due':
      await h.advanceTo(h.context.lastFailure?.nextAttemptAt ?? h.clock.now());
      return;
    default:
      throw new Error(`cannot drive ${event.type}`);
  }
}

function dueOf(h: UploadHarness, event: ModelEvent): number | null {
  if (event.type === 'timer.attempt_timeout') return h.context.attemptDeadlineAt;
  if (event.type === 'timer.retry_due') return h.context.lastFailure?.nextAttemptAt ?? null;
  return null;
}

/** The retry timing the actor scheduled must be the policy's, measured from the failure. */
function expectPolicyTiming(h: UploadHarness): void {
  const last = h.context.lastFailure;
  if (last === null || last.nextAttemptAt === null) return;
  const expected = retryDelayMs({
    attempt: last.attempt,
    retryAfterMs: last.error.retryAfterMs,
    random: jitterSample(UPLOAD_KEY, last.attempt),
  });
  expect(last.nextAttemptAt - last.at).toBe(expected);
}

/**
 * Drives a model path through a real actor, with a crash before every step when `crash` is set:
 * after every step the actor agrees with the model, has no problems, and scheduled its retry
 * when the retry policy says; each attempt reached the CRM once, at most one acknowledgement.
 */
export async function runUploadPath(
  { maxAttempts, replay }: UploadFamily,
  events: ModelEvents,
  crash: boolean,
  coverage?: Coverage,
): Promise<void> {
  const h = new UploadHarness({ input: uploadInput(maxAttempts), coverage });
  const [initial, ...expected] = replay.along(events);
  expectEqual(uploadProjection(h.snapshot), initial!.projection);
  for (const [index, event] of events.entries()) {
    if (crash) {
      expect(h.persistedIsCurrent).toBe(true);
      const before = uploadProjection(h.snapshot);
      const now = h.clock.now();
      await h.crash(restartTime(now, armedTimerDues(JSON.parse(h.persistedJson)), dueOf(h, event)) - now);
      expectEqual(uploadProjection(h.snapshot), before);
    }
    await driveUploadStep(h, event);
    expectEqual(uploadProjection(h.snapshot), expected[index]!.projection, `after ${event.type}`);
    expectEqual(h.problems(), []);
    expectPolicyTiming(h);
  }
  // Each attempt reached the CRM once (a crash re-runs the one in flight), at most one ack.
  expect(h.effects.crmAcks.get(UPLOAD_KEY) ?? 0).toBe(h.snapshot.output?.status === 'succeeded' ? 1 : 0);
  h.actor.stop();
}
