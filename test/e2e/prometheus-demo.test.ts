/**
 * The dashboard and rules: a real Prometheus (Debian's package) scrapes a supervisor while
 * the demo's calls flow (`runDemo`, the same code as `npm run demo`), then every PromQL expression of the
 * dashboard and of the rules must parse and return data. A renamed metric leaves its
 * expressions without data and fails here. `prometheus-supervisor.test.ts` adds the failed,
 * re-driven, stuck and restored calls the demo does not make.
 */
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDemo } from '../../src/demo/run-demo.ts';
import { startDemoServices, type DemoServices } from '../../src/demo/services.ts';
import { REPO_ROOT, RULES_PATH } from '../../src/metrics/observability.generate.ts';
import { DELIVERY_SLO_DEFAULTS } from '../../src/metrics/slo.ts';
import { allExpressions, type NamedExpr } from '../metrics/expressions.ts';
import { pollUntil, startPrometheus, unanswered, type PrometheusServer } from '../helpers/prometheus.ts';

const DEMO_CALLS = 16;
/** A few 1 s scrapes and rule evaluations after the calls. */
const ALL_ANSWERED_TIMEOUT_MS = 45_000;

let services: DemoServices;
let prometheus: PrometheusServer;
let expressions: NamedExpr[];

beforeAll(async () => {
  expressions = await allExpressions();
  services = await startDemoServices({
    logDestination: new Writable({ write: (_chunk, _encoding, done) => done() }),
  });
  prometheus = await startPrometheus({
    scrapeUrl: `${services.urls.app}/metrics`,
    jobName: DELIVERY_SLO_DEFAULTS.job,
    ruleFiles: [join(REPO_ROOT, RULES_PATH)],
    intervalSeconds: 1,
  });
  const live = prometheus;
  await pollUntil(async () => ((await live.targetHealth()) === 'up' ? true : undefined), {
    timeoutMs: ALL_ANSWERED_TIMEOUT_MS,
    description: 'the first scrape of the demo supervisor',
  });
}, 90_000);

afterAll(async () => {
  await prometheus?.stop();
  await services?.close({ removeFiles: true });
});

describe('a real Prometheus scraping the demo', () => {
  it('answers every dashboard and rule expression with data once the demo calls have flowed', async () => {
    const summary = await runDemo({ services, calls: DEMO_CALLS, staggerMs: 0, turnGapMs: 0 });
    expect(summary.missing).toEqual([]);

    const live = prometheus;
    let problems: string[] = [];
    let finished = 0;
    await pollUntil(
      async () => {
        problems = await unanswered(live, expressions);
        const answer = await live.query('sum(callsync_calls_finished_total)');
        finished = answer.ok ? Number(answer.result[0]?.value[1] ?? 0) : 0;
        return problems.length === 0 && finished === DEMO_CALLS ? true : undefined;
      },
      {
        timeoutMs: ALL_ANSWERED_TIMEOUT_MS,
        description: 'every expression to answer, every demo call counted',
      },
    ).catch(() => undefined);
    expect(problems).toEqual([]);
    expect(finished).toBe(DEMO_CALLS);
  }, 120_000);
});
