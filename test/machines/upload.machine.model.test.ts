/**
 * Model-based tests of the upload machine (one CRM step with retries), driven through real
 * actors like the call machine's (`runUploadPath` in upload.model.ts): every shortest path over
 * the full schedule, every simple path with the schedule cut to 4 attempts. The same paths with a
 * crash before every step run in upload.machine.crash.model.test.ts.
 *
 * Also here: behaviour the paths do not spell out, the faults they cannot reach, and the
 * coverage test, which drives what it counts itself and so passes alone and in any order.
 */
import { describe, expect, it } from 'vitest';
import { FAST_LANE_DELAYS_MS, MAX_ATTEMPTS } from '../../src/machines/retry-policy.ts';
import { uploadMachine } from '../../src/machines/upload.machine.ts';
import { Coverage } from './coverage.ts';
import { DELIVERED_RECORDING, UploadHarness, brokenTimers, fatalError, retryableError } from './harness.ts';
import { UPLOAD_KEY, describeUploadPath, runUploadPath, uploadInput, uploadModel } from './upload.model.ts';

describe('upload machine', () => {
  for (const family of uploadModel().families) {
    describe(family.family, () => {
      for (const events of family.paths) {
        it(describeUploadPath(events), () => runUploadPath(family, events, false));
      }
    });
  }
});

describe('upload machine behaviour', () => {
  it('runs the whole schedule: a fast lane inside 30 s, then a slow lane of days, then fails', async () => {
    const h = new UploadHarness({ input: uploadInput() });
    const started = h.clock.now();
    const lanes: unknown[] = [];
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      expect(h.context.attempt).toBe(attempt);
      await h.reject('uploadRecording', retryableError('CRM_UNAVAILABLE'));
      lanes.push(h.context.lastFailure?.lane);
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
    expect(h.effects.crmRequests.get(UPLOAD_KEY)).toBe(MAX_ATTEMPTS);
    expect(lanes).toEqual([
      ...FAST_LANE_DELAYS_MS.map(() => 'fast'),
      ...Array.from({ length: MAX_ATTEMPTS - 1 - FAST_LANE_DELAYS_MS.length }, () => 'slow'),
      null,
    ]);
  });

  it('honours Retry-After', async () => {
    const h = new UploadHarness({ input: uploadInput() });
    await h.reject('uploadRecording', retryableError('CRM_RATE_LIMITED', 120_000));
    expect(h.context.lastFailure!.nextAttemptAt! - h.context.lastFailure!.at).toBe(120_000);
    await h.advanceTo(h.clock.now() + 119_999);
    expect(h.snapshot.value).toBe('backoff');
    await h.advanceTo(h.clock.now() + 1);
    expect(h.snapshot.value).toBe('attempting');
  });

  it('fails at once on a non-retryable answer, keeping it', async () => {
    const h = new UploadHarness({ input: uploadInput() });
    await h.reject('uploadRecording', fatalError('CRM_REJECTED'));
    expect(h.snapshot.output).toMatchObject({
      status: 'failed',
      attempts: 1,
      error: { code: 'CRM_REJECTED', status: 422 },
    });
    expect(h.effects.crmRequests.get(UPLOAD_KEY)).toBe(1);
  });

  it('a hung attempt times out and is retried; its late answer is ignored', async () => {
    const h = new UploadHarness({ input: uploadInput() });
    const hung = h.effects.take('uploadRecording');
    await h.advanceTo(h.context.attemptDeadlineAt);
    expect(h.context.lastFailure).toMatchObject({ error: { code: 'ATTEMPT_TIMEOUT', retryable: true } });
    expect(hung.signal.aborted).toBe(true);
    hung.resolve(DELIVERED_RECORDING);
    await h.advanceTo(h.context.lastFailure!.nextAttemptAt!);
    expect(h.snapshot.value).toBe('attempting');
    expect(h.effects.crmAcks.get(UPLOAD_KEY) ?? 0).toBe(0);
  });

  it('a backoff whose time passed while the process was down fires as soon as it is restored', async () => {
    const h = new UploadHarness({ input: uploadInput() });
    await h.reject('uploadRecording', retryableError());
    const due = h.context.lastFailure!.nextAttemptAt!;
    await h.crash(due - h.clock.now() + 3_600_000);
    expect(h.snapshot.value).toBe('backoff');
    await h.advanceTo(h.clock.now());
    expect(h.snapshot.value).toBe('attempting');
    expect(h.context.attemptStartedAt).toBe(h.clock.now());
  });
});

/** What the model cannot reach: timers that fail to start. */
const faultScenarios: Array<[name: string, run: (coverage?: Coverage) => Promise<void>]> = [
  [
    'a broken attempt timer loses only its bound; a broken retry timer retries at once',
    async (coverage) => {
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
    },
  ],
];

describe('upload machine faults', () => {
  for (const [name, run] of faultScenarios) it(name, () => run());
});

describe('upload machine coverage', () => {
  it('covers every state node and every transition', async () => {
    // The fault scenarios, then edge-tour paths until nothing is left uncovered: the tour takes
    // every model edge, the scenarios reach what the model cannot.
    const coverage = new Coverage();
    for (const [, run] of faultScenarios) await run(coverage);
    const { tour } = uploadModel();
    let driven = 0;
    for (const events of tour.paths) {
      const { uncoveredNodes, uncoveredTransitions } = coverage.report(uploadMachine);
      if (uncoveredNodes.length === 0 && uncoveredTransitions.length === 0) break;
      await runUploadPath(tour, events, false, coverage);
      driven += 1;
    }
    const report = coverage.report(uploadMachine);
    console.info(
      `upload machine: ${faultScenarios.length} fault scenario(s) and ${driven} of ${tour.paths.length} edge-tour paths cover ` +
        `state nodes ${report.nodes.covered}/${report.nodes.total}, ` +
        `transitions ${report.transitions.covered}/${report.transitions.total}`,
    );
    expect(report.uncoveredNodes).toEqual([]);
    expect(report.uncoveredTransitions).toEqual([]);
  });
});
