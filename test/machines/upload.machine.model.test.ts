/**
 * Model-based tests of the upload machine (one CRM step with retries), driven through real
 * actors like the call machine's: every shortest path over the full 16-attempt schedule, every
 * simple path with the schedule cut to 4 attempts (the paths double with each attempt, since an
 * attempt can fail two ways), each also with a crash before every step.
 */
import { afterAll, describe, expect, it } from 'vitest';
import {
  getInitialSnapshot,
  getNextSnapshot,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  type EventObject,
  type SnapshotFrom,
} from 'xstate';
import { getShortestPaths, getSimplePaths, type StatePath } from 'xstate/graph';
import {
  FAST_LANE_DELAYS_MS,
  MAX_ATTEMPTS,
  jitterSample,
  retryDelayMs,
} from '../../src/machines/retry-policy.ts';
import { uploadMachine, type UploadInput } from '../../src/machines/upload.machine.ts';
import { Coverage } from './coverage.ts';
import { armedTimerDues, restartTime } from './crash.ts';
import {
  CALL_ID,
  DELIVERED_RECORDING,
  RECORDING_FILE,
  REFERENCE_TIMESTAMP,
  UploadHarness,
  brokenTimers,
  fatalError,
  retryableError,
} from './harness.ts';

type UploadSnapshot = SnapshotFrom<typeof uploadMachine>;
type ModelEvent = EventObject & Record<string, unknown>;
type UploadPath = StatePath<UploadSnapshot, ModelEvent>;

const KEY = `${CALL_ID}:recording`;
const RETRY_AFTER_MS = 30_000;

function uploadInput(maxAttempts?: number): UploadInput {
  return {
    request: { step: 'recording', callId: CALL_ID, idempotencyKey: KEY, file: RECORDING_FILE },
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

function traversal(maxAttempts?: number) {
  return {
    input: uploadInput(maxAttempts),
    events: uploadModelEvents,
    serializeState: uploadModelKey,
    filterEvents: (snapshot: UploadSnapshot, event: ModelEvent) =>
      snapshot.status === 'active' && snapshot.can(event as never),
  } as never;
}

function expectedSnapshots(path: UploadPath, maxAttempts?: number): AnyMachineSnapshot[] {
  const machine = uploadMachine as AnyStateMachine;
  let snapshot: AnyMachineSnapshot = getInitialSnapshot(machine, uploadInput(maxAttempts));
  const snapshots = [snapshot];
  for (const step of path.steps.slice(1)) {
    snapshot = getNextSnapshot(machine, snapshot, step.event);
    snapshots.push(snapshot);
  }
  return snapshots;
}

function describeUploadPath(path: UploadPath): string {
  return (
    path.steps
      .slice(1)
      .map(({ event }) =>
        event.type === 'xstate.error.actor.deliver'
          ? `error(${(event.error as { info: { code: string } }).info.code})`
          : event.type.replace('xstate.', ''),
      )
      .join(' → ') || '(initial state)'
  );
}

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

const coverage = new Coverage();
const drivenStates = new Set<string>();

/** The retry timing the actor scheduled must be the policy's, measured from the failure. */
function expectPolicyTiming(h: UploadHarness): void {
  const last = h.context.lastFailure;
  if (last === null || last.nextAttemptAt === null) return;
  const expected = retryDelayMs({
    attempt: last.attempt,
    retryAfterMs: last.error.retryAfterMs,
    random: jitterSample(KEY, last.attempt),
  });
  expect(last.nextAttemptAt - last.at).toBe(expected);
}

async function runPath(path: UploadPath, crash: boolean, maxAttempts?: number): Promise<void> {
  const h = new UploadHarness({ input: uploadInput(maxAttempts), coverage });
  const [initial, ...expected] = expectedSnapshots(path, maxAttempts);
  expect(uploadProjection(h.snapshot)).toEqual(uploadProjection(initial!));
  drivenStates.add(uploadModelKey(initial!));
  for (const [index, step] of path.steps.slice(1).entries()) {
    if (crash) {
      expect(h.persistedIsCurrent).toBe(true);
      const before = uploadProjection(h.snapshot);
      const now = h.clock.now();
      await h.crash(
        restartTime(now, armedTimerDues(JSON.parse(h.persistedJson)), dueOf(h, step.event)) - now,
      );
      expect(uploadProjection(h.snapshot)).toEqual(before);
    }
    await driveUploadStep(h, step.event);
    expect(uploadProjection(h.snapshot), `after ${step.event.type}`).toEqual(
      uploadProjection(expected[index]!),
    );
    expect(h.problems()).toEqual([]);
    expectPolicyTiming(h);
    drivenStates.add(uploadModelKey(expected[index]!));
  }
  // Each attempt reached the CRM once (a crash re-runs the one in flight), at most one ack.
  expect(h.effects.crmAcks.get(KEY) ?? 0).toBe(h.snapshot.output?.status === 'succeeded' ? 1 : 0);
  const succeeded = h.emitted.filter((event) => event.type === 'upload.succeeded').length;
  expect(succeeded).toBe(h.snapshot.output?.status === 'succeeded' ? 1 : 0);
  h.actor.stop();
}

const shortestPaths = getShortestPaths(
  uploadMachine as AnyStateMachine,
  traversal(),
) as unknown as UploadPath[];
const SIMPLE_MAX_ATTEMPTS = 4;
const simplePaths = getSimplePaths(
  uploadMachine as AnyStateMachine,
  traversal(SIMPLE_MAX_ATTEMPTS),
) as unknown as UploadPath[];

for (const crash of [false, true]) {
  describe(crash ? 'upload machine with a crash before every step' : 'upload machine', () => {
    describe(`shortest paths (${MAX_ATTEMPTS} attempts)`, () => {
      for (const path of shortestPaths) it(describeUploadPath(path), () => runPath(path, crash));
    });
    describe(`simple paths (${SIMPLE_MAX_ATTEMPTS} attempts)`, () => {
      for (const path of simplePaths) {
        it(describeUploadPath(path), () => runPath(path, crash, SIMPLE_MAX_ATTEMPTS));
      }
    });
  });
}

describe('upload machine behaviour', () => {
  it('runs the whole schedule: a fast lane inside 30 s, then a slow lane of days, then fails', async () => {
    const h = new UploadHarness({ input: uploadInput(), coverage });
    const started = h.clock.now();
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      expect(h.context.attempt).toBe(attempt);
      await h.reject('uploadRecording', retryableError('CRM_UNAVAILABLE'));
      if (attempt === FAST_LANE_DELAYS_MS.length + 1) {
        // The fast lane is over: its retries all started within the delivery target.
        expect(h.clock.now() - started).toBeLessThan(30_000);
      }
      if (attempt < MAX_ATTEMPTS) await h.advanceTo(h.context.lastFailure!.nextAttemptAt!);
    }
    expect(h.snapshot.status).toBe('done');
    expect(h.snapshot.output).toMatchObject({
      status: 'failed',
      attempts: MAX_ATTEMPTS,
      error: { code: 'CRM_UNAVAILABLE' },
    });
    const days = (h.clock.now() - started) / 86_400_000;
    expect(days).toBeGreaterThan(2.5);
    expect(days).toBeLessThan(3.2);
    expect(h.effects.crmRequests.get(KEY)).toBe(MAX_ATTEMPTS);
    const lanes = h.emitted.flatMap((event) => (event.type === 'upload.attempt_failed' ? [event.lane] : []));
    expect(lanes).toEqual([
      ...FAST_LANE_DELAYS_MS.map(() => 'fast'),
      ...Array.from({ length: MAX_ATTEMPTS - 1 - FAST_LANE_DELAYS_MS.length }, () => 'slow'),
      null,
    ]);
    expect(h.emitted.at(-1)).toMatchObject({ type: 'upload.failed', attempts: MAX_ATTEMPTS });
  });

  it('honours Retry-After', async () => {
    const h = new UploadHarness({ input: uploadInput(), coverage });
    await h.reject('uploadRecording', retryableError('CRM_RATE_LIMITED', 120_000));
    expect(h.context.lastFailure!.nextAttemptAt! - h.context.lastFailure!.at).toBe(120_000);
    await h.advanceTo(h.clock.now() + 119_999);
    expect(h.snapshot.value).toBe('backoff');
    await h.advanceTo(h.clock.now() + 1);
    expect(h.snapshot.value).toBe('attempting');
  });

  it('fails at once on a non-retryable answer, keeping it', async () => {
    const h = new UploadHarness({ input: uploadInput(), coverage });
    await h.reject('uploadRecording', fatalError('CRM_REJECTED'));
    expect(h.snapshot.output).toMatchObject({
      status: 'failed',
      attempts: 1,
      error: { code: 'CRM_REJECTED', status: 422 },
    });
    expect(h.effects.crmRequests.get(KEY)).toBe(1);
  });

  it('a hung attempt times out and is retried; its late answer is ignored', async () => {
    const h = new UploadHarness({ input: uploadInput(), coverage });
    const hung = h.effects.take('uploadRecording');
    await h.advanceTo(h.context.attemptDeadlineAt);
    expect(h.context.lastFailure).toMatchObject({ error: { code: 'ATTEMPT_TIMEOUT', retryable: true } });
    expect(hung.signal.aborted).toBe(true);
    hung.resolve(DELIVERED_RECORDING);
    await h.advanceTo(h.context.lastFailure!.nextAttemptAt!);
    expect(h.snapshot.value).toBe('attempting');
    expect(h.effects.crmAcks.get(KEY) ?? 0).toBe(0);
  });

  it('a backoff whose time passed while the process was down fires as soon as it is restored', async () => {
    const h = new UploadHarness({ input: uploadInput(), coverage });
    await h.reject('uploadRecording', retryableError());
    const due = h.context.lastFailure!.nextAttemptAt!;
    await h.crash(due - h.clock.now() + 3_600_000);
    expect(h.snapshot.value).toBe('backoff');
    await h.advanceTo(h.clock.now());
    expect(h.snapshot.value).toBe('attempting');
    expect(h.context.attemptStartedAt).toBe(h.clock.now());
  });
});

describe('upload machine faults', () => {
  it('a broken attempt timer loses only its bound; a broken retry timer retries at once', async () => {
    const h = new UploadHarness({
      input: uploadInput(),
      coverage,
      adapt: (logic, clock) =>
        logic.provide({
          actors: { timer: brokenTimers(clock, new Set(['timer.attempt_timeout', 'timer.retry_due'])) },
        }),
    });
    expect(h.snapshot.value).toBe('attempting');
    await h.reject('uploadRecording', retryableError());
    expect(h.snapshot.value).toBe('attempting');
    expect(h.context.attempt).toBe(2);
    await h.resolve('uploadRecording', DELIVERED_RECORDING);
    expect(h.snapshot.output).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(h.problems()).toEqual([]);
  });
});

describe('upload machine coverage', () => {
  it('covers every state node and every transition', () => {
    const report = coverage.report(uploadMachine);
    expect(report.uncoveredNodes).toEqual([]);
    expect(report.uncoveredTransitions).toEqual([]);
    expect(report.nodes.covered).toBe(report.nodes.total);
    expect(report.transitions.covered).toBe(report.transitions.total);
  });

  afterAll(() => {
    const report = coverage.report(uploadMachine);
    console.info(
      `upload machine model: ${shortestPaths.length} shortest + ${simplePaths.length} simple paths, ` +
        `model states ${drivenStates.size}, state nodes ${report.nodes.covered}/${report.nodes.total}, ` +
        `transitions ${report.transitions.covered}/${report.transitions.total}`,
    );
  });
});
