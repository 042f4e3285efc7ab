/**
 * The metrics against the real thing: a real Prometheus scrapes the real supervisor's `/metrics`
 * (production wiring from `createCallsyncApp`, through the harness) while calls go through it
 * the way LiveKit and an agent drive them, evaluates the committed rules, and must answer every
 * PromQL expression of the dashboard and the rules with data.
 *
 * `test/metrics/prometheus-live.test.ts` proves the expressions against `createMetrics()` fed by
 * a simulated recorder; this one proves the supervisor's wiring: that every fact the dashboard
 * reads is actually recorded when real calls flow. So the batch covers what each panel and alert
 * needs: calls delivered (one outbound), one partial (the egress fails), one refused by the CRM
 * (422) and re-driven into a second refusal (failed outcome counted once,
 * `callsync_calls_failed_waiting`, re-drives), one delivered after a CRM 503 (retries), one whose webhooks are all dropped (the
 * `poll` egress source), one left waiting for an egress that never finalises (the
 * `awaitingEgress` series the stuck-calls alert reads), and one left in conversation by a first
 * app and resumed by a second one on the same store (restores).
 *
 * Three checks, each failing on a renamed or unfed metric:
 * - every expression returns data in Prometheus (alerts: every vector selector they read, since
 *   an alert returns data only while firing), and every rule evaluates without error;
 * - every metric those expressions read has a non-zero sample in the supervisor's own
 *   `/metrics` (a registered-but-never-observed metric still "returns data" as zeros);
 * - the finished calls and the 5m delivery error ratio in Prometheus are what the batch did.
 *
 * No expression needs a special case for a short run: the 3d and 30d windows (`rate(…[3d])`,
 * `sum_over_time(…[30d])`) are answered as soon as two scrapes, or one rule evaluation, exist.
 * Waiting is event-driven for the calls (CRM sandbox, emulator and supervisor events) and a
 * bounded poll of Prometheus's query API for the scrapes (`pollUntil`).
 */
import { join } from 'node:path';
import { EgressStatus } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RoomBehaviour } from '../../src/sandbox/livekit/room-behaviour.ts';
import type { CrmFault } from '../../src/sandbox/crm/faults.ts';
import { REPO_ROOT, RULES_PATH } from '../../src/metrics/observability.generate.ts';
import { DELIVERY_SLO_DEFAULTS } from '../../src/metrics/slo.ts';
import { allExpressions, type NamedExpr } from '../metrics/expressions.ts';
import { startCallsyncHarness, type CallsyncHarness } from '../helpers/callsync-harness.ts';
import {
  pollUntil,
  startPrometheus,
  unanswered,
  waitUntilAnswered,
  type PrometheusServer,
} from '../helpers/prometheus.ts';
import { metricNames } from '../helpers/prometheus-promql.ts';

/** Scrapes and rule evaluations every second: a few of each after the batch suffice. */
const ALL_ANSWERED_TIMEOUT_MS = 45_000;
const JOB = DELIVERY_SLO_DEFAULTS.job;
/**
 * Metrics the dashboard reads that a healthy run cannot make non-zero, and why. Each is fed
 * (see where) and its expressions must still return data.
 */
const ZERO_IN_A_HEALTHY_RUN: Readonly<Record<string, string>> = {
  callsync_store_write_errors_total:
    'counts failed store writes; fed by withStoreMetrics (src/metrics/metrics.store.ts) around the SQLite store',
  callsync_recordings_missing_total:
    'the storage reasons (CallsyncRecordingsUnreadable) need a broken store; every reason is fed in test/e2e/recording-missing.test.ts',
};

type Outcome = 'delivered' | 'partial' | 'failed';

interface CallSpec {
  room: string;
  direction?: 'inbound' | 'outbound';
  behaviour?: RoomBehaviour;
  /** CRM faults queued just before the call ends (the batch runs one call at a time). */
  callDataFaults?: CrmFault[];
  withLead?: boolean;
}

let h: CallsyncHarness;
let prometheus: PrometheusServer | undefined;
let exprs: NamedExpr[];
/** Calls the batch finished, per outcome, as the supervisor counts them (a re-driven failure counts again). */
const finished: Record<Outcome, number> = { delivered: 0, partial: 0, failed: 0 };

const at = (offsetSeconds: number) => new Date(Date.now() + offsetSeconds * 1000).toISOString();

async function createCall(spec: CallSpec): Promise<string> {
  h.startLiveKitCall(spec.room);
  if (spec.behaviour) h.emulator.setRoomBehaviour(spec.room, spec.behaviour);
  const callId = await h.createCall(spec.room, {
    direction: spec.direction ?? 'inbound',
    startedAt: at(-20),
  });
  const transcript = await h.api('POST', `/v1/calls/${callId}/transcript`, {
    items: [
      { id: `${spec.room}_1`, role: 'assistant', content: 'Hello, how can I help?', timestamp: at(-19) },
      { id: `${spec.room}_2`, role: 'user', content: 'Call me back, please.', timestamp: at(-15) },
    ],
  });
  expect(transcript.status).toBe(202);
  if (spec.withLead) {
    expect(
      (
        await h.api('POST', `/v1/calls/${callId}/leads`, {
          leadId: `lead_${spec.room}`,
          data: { name: 'Priya' },
        })
      ).status,
    ).toBe(202);
  }
  await egressActive(spec.room);
  return callId;
}

/** The room's egress once it records (emulator events, checked in the same tick). */
async function egressActive(room: string): Promise<string> {
  for (;;) {
    const [egress] = h.emulator.listEgress({ roomName: room });
    if (egress) {
      await h.emulator.waitForEgress(egress.egressId, (info) => info.status === EgressStatus.EGRESS_ACTIVE);
      return egress.egressId;
    }
    await h.emulator.waitForEvent('egress:updated');
  }
}

/** Resolves with the outcome of the next time `callId` reaches `done` or `failed`. Subscribe before acting. */
function nextFinish(callId: string): Promise<Outcome> {
  const { events } = h.app.supervisor;
  return new Promise((resolve) => {
    const listener = (event: { callId: string; outcome: Outcome }) => {
      if (event.callId !== callId) return;
      events.off('call:finished', listener);
      resolve(event.outcome);
    };
    events.on('call:finished', listener);
  });
}

/** Ends `callId` (faults queued first) and waits for its outcome. */
async function endAndFinish(callId: string, spec: Pick<CallSpec, 'callDataFaults'> = {}): Promise<Outcome> {
  if (spec.callDataFaults) h.crm.injectFaults('call-data', spec.callDataFaults);
  const outcome = nextFinish(callId);
  expect(
    (await h.api('POST', `/v1/calls/${callId}/end`, { endedAt: at(0), status: 'completed' })).status,
  ).toBe(202);
  finished[await outcome] += 1;
  return outcome;
}

async function runCall(spec: CallSpec): Promise<Outcome> {
  return endAndFinish(await createCall(spec), spec);
}

/** Sample name → sum of its values, from a Prometheus text exposition. */
function sampleSums(text: string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})?\s+(\S+)/.exec(line);
    if (!match?.[1] || match[2] === undefined) continue;
    const value = Number(match[2]);
    if (Number.isFinite(value)) sums.set(match[1], (sums.get(match[1]) ?? 0) + Math.abs(value));
  }
  return sums;
}

/**
 * Metrics the expressions read (recording rules and `up` aside) that have no non-zero sample in
 * the supervisor's `/metrics`: registered but never observed. A histogram counts by `_count`.
 */
function unfedMetrics(named: readonly NamedExpr[], exposition: string): string[] {
  const sums = sampleSums(exposition);
  const problems: string[] = [];
  for (const name of new Set(named.flatMap(({ expr }) => metricNames(expr)))) {
    if (name === 'up' || name.includes(':') || name in ZERO_IN_A_HEALTHY_RUN) continue;
    const sample = name.replace(/_(bucket|sum)$/, '_count');
    const sum = sums.get(sample);
    if (sum === undefined || sum <= 0)
      problems.push(`${sample}: ${sum === undefined ? 'no sample' : 'only zero samples'}`);
  }
  return problems;
}

describe('a real Prometheus scraping the real supervisor while calls flow', () => {
  let restoredCallId: string;

  beforeAll(async () => {
    exprs = await allExpressions();
    // The egress deadline is far away so the call whose egress never finalises stays waiting.
    h = await startCallsyncHarness({ env: { CALLSYNC_EGRESS_DEADLINE_SECONDS: '3600' } });

    // A call the first app leaves in conversation; the second one resumes it from the store.
    restoredCallId = await createCall({ room: 'prom-restored', withLead: true });
    await h.restartApp();

    prometheus = await startPrometheus({
      scrapeUrl: `${h.url}/metrics`,
      jobName: JOB,
      ruleFiles: [join(REPO_ROOT, RULES_PATH)],
      intervalSeconds: 1,
    });
    // A first scrape before any call finishes: every counter's first sample is its start value.
    const live = prometheus;
    await pollUntil(async () => ((await live.targetHealth()) === 'up' ? true : undefined), {
      timeoutMs: ALL_ANSWERED_TIMEOUT_MS,
      description: 'the first scrape of the supervisor',
    });

    // One call at a time, so each CRM fault meets the call it is meant for.
    expect(await endAndFinish(restoredCallId)).toBe('delivered');
    expect(await runCall({ room: 'prom-delivered', withLead: true })).toBe('delivered');
    expect(await runCall({ room: 'prom-outbound', direction: 'outbound' })).toBe('delivered');
    expect(await runCall({ room: 'prom-partial', behaviour: { egressOutcome: 'failed' } })).toBe('partial');
    expect(
      await runCall({
        room: 'prom-crm-503',
        callDataFaults: [{ status: 503, body: { error: 'deploying' } }],
      }),
    ).toBe('delivered');
    expect(await runCall({ room: 'prom-polled', behaviour: { webhooks: { drop: true } } })).toBe('delivered');
    const refused = await createCall({ room: 'prom-refused' });
    const refusal: CrmFault = { status: 422, body: { error: 'campaign closed' } };
    expect(await endAndFinish(refused, { callDataFaults: [refusal] })).toBe('failed');
    // An operator re-drives it; the CRM refuses again, so it waits failed, counted once: a call's
    // first final outcome is its finish (the SLO's denominator counts calls, not attempts).
    h.crm.injectFaults('call-data', [refusal]);
    const refusedAgain = nextFinish(refused);
    expect((await h.api('POST', `/v1/calls/${refused}/retry`)).status).toBe(202);
    expect(await refusedAgain).toBe('failed');

    // Left waiting: the egress reaches ENDING (the supervisor stopped it) and never finalises.
    const stuck = await createCall({ room: 'prom-stuck', behaviour: { egressOutcome: 'stuck_ending' } });
    const egressId = await egressActive('prom-stuck');
    expect((await h.api('POST', `/v1/calls/${stuck}/end`, {})).status).toBe(202);
    await h.emulator.waitForEgress(egressId, (info) => info.status === EgressStatus.EGRESS_ENDING);
    expect((await h.api('GET', `/v1/calls/${stuck}`)).body).toMatchObject({ state: 'awaitingEgress' });
  }, 120_000);

  afterAll(async () => {
    await prometheus?.stop();
    await h?.close();
  });

  it(
    'answers every dashboard and rule expression with data, and evaluates every rule without error',
    async () => {
      const live = prometheus!;
      const last = await waitUntilAnswered(live, exprs, ALL_ANSWERED_TIMEOUT_MS);
      expect(last, `Prometheus log:\n${live.log()}`).toEqual([]);
    },
    ALL_ANSWERED_TIMEOUT_MS + 15_000,
  );

  it('feeds every metric the dashboard and the rules read: each has a non-zero sample', async () => {
    const response = await fetch(`${h.url}/metrics`);
    expect(response.status).toBe(200);
    expect(unfedMetrics(exprs, await response.text())).toEqual([]);
  });

  it('counts in Prometheus exactly what the batch did: finished calls, the 5m delivery error ratio, each scenario', async () => {
    const live = prometheus!;
    // Failed calls: one refusal (its re-drive is no second finish). Everything delivered or partial
    // took seconds, within 30 s.
    expect(finished).toEqual({ delivered: 5, partial: 1, failed: 1 });
    const byOutcome = await pollUntil(
      async () => {
        const answer = await live.query(`sum by (outcome) (callsync_calls_finished_total{job="${JOB}"})`);
        if (!answer.ok) return undefined;
        const counts: Record<string, number> = Object.fromEntries(
          answer.result.map((sample): [string, number] => [
            sample.metric.outcome ?? '',
            Number(sample.value[1]),
          ]),
        );
        return counts.failed === finished.failed ? counts : undefined;
      },
      { timeoutMs: ALL_ANSWERED_TIMEOUT_MS, description: 'the finished calls in Prometheus' },
    );
    expect(byOutcome).toEqual(finished);
    const total = finished.delivered + finished.partial + finished.failed;
    // The recording rule is evaluated every second, so it may trail the counters by one evaluation.
    const expected = finished.failed / total;
    let ratio = Number.NaN;
    await pollUntil(
      async () => {
        const answer = await live.query(`callsync:delivery_error:ratio_rate5m{job="${JOB}"}`);
        ratio = answer.ok ? Number(answer.result[0]?.value[1]) : Number.NaN;
        return Math.abs(ratio - expected) < 1e-6 ? true : undefined;
      },
      { timeoutMs: ALL_ANSWERED_TIMEOUT_MS, description: 'the 5m error ratio of the batch' },
    ).catch(() => undefined);
    expect(ratio).toBeCloseTo(expected, 5);
    // Each scenario of the batch, as the series it should have moved. Gauges read at scrape time
    // (failed waiting, active) may trail the counters by a scrape: polled, bounded.
    /** `[query, wanted]`: an exact value, or `[at least]`. */
    const expectations: [query: string, wanted: number | [number]][] = [
      [`sum(callsync_calls_started_total{job="${JOB}", direction="inbound"})`, 6],
      [`sum(callsync_calls_started_total{job="${JOB}", direction="outbound"})`, 1],
      [`sum(callsync_calls_restored_total{job="${JOB}", result="restored"})`, 1],
      [`sum(callsync_crm_retries_total{job="${JOB}", endpoint="call_data"})`, 1],
      [`sum(callsync_call_redrives_total{job="${JOB}"})`, 1],
      [`sum(callsync_calls_failed_waiting{job="${JOB}"})`, 1],
      [`sum(callsync_calls_active{job="${JOB}", state="awaitingEgress"})`, 1],
      // The webhook-dropped call for sure; another call's poll may beat its webhook.
      [`sum(callsync_egress_completions_total{job="${JOB}", source="poll"})`, [1]],
      [`sum(callsync_egress_completions_total{job="${JOB}", status="failed"})`, 1],
      [`sum(callsync_crm_request_duration_seconds_count{job="${JOB}", code="422"})`, 2],
      [`sum(callsync_crm_request_duration_seconds_count{job="${JOB}", code="503"})`, 1],
    ];
    let mismatches: string[] = [];
    await pollUntil(
      async () => {
        mismatches = [];
        for (const [query, wanted] of expectations) {
          const answer = await live.query(query);
          const value = answer.ok ? Number(answer.result[0]?.value[1]) : Number.NaN;
          const holds = Array.isArray(wanted) ? value >= wanted[0] : value === wanted;
          if (!holds)
            mismatches.push(
              `${query}: ${value}, wanted ${Array.isArray(wanted) ? `>= ${wanted[0]}` : wanted}`,
            );
        }
        return mismatches.length === 0 ? true : undefined;
      },
      { timeoutMs: ALL_ANSWERED_TIMEOUT_MS, description: "the batch's series in Prometheus" },
    ).catch(() => undefined);
    expect(mismatches).toEqual([]);
  });

  it('reports a renamed metric as unanswered', async () => {
    const renamed = exprs
      .filter((named) => named.expr.includes('callsync_calls_finished_total'))
      .map((named) => ({
        ...named,
        expr: named.expr.replaceAll('callsync_calls_finished_total', 'callsync_calls_completed_total'),
      }));
    expect(renamed.length).toBeGreaterThan(0);
    const problems = await unanswered(prometheus!, renamed);
    expect(problems.filter((line) => line.includes('callsync_calls_completed_total'))).not.toEqual([]);
    expect(
      unfedMetrics(
        [{ source: 'renamed', expr: 'rate(callsync_calls_completed_total[1m])', kind: 'panel' }],
        await (await fetch(`${h.url}/metrics`)).text(),
      ),
    ).toEqual(['callsync_calls_completed_total: no sample']);
  });
});
