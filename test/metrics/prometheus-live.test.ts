/**
 * The live half of "a renamed metric fails this test": a real Prometheus (the Debian package's
 * server) scrapes a `/metrics` endpoint built on `createMetrics()` while calls flow through the
 * recorder, evaluates the committed rules, and answers every PromQL expression of the
 * dashboard and the rules with data.
 *
 * Until the supervisor exists, the endpoint is a small prom-client server whose calls are
 * simulated through `createMetricsRecorder()` (a batch per scrape, so counters move between
 * scrapes and rates are real). Pointed at the supervisor while the demo's calls flow, the same
 * check (`unanswered`) proves the wiring too.
 *
 * "Data" means: a panel query, variable query or recording rule returns at least one sample; an
 * alert (which returns data only while firing) has every vector selector it reads return data,
 * and its rule evaluates without error.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { createMetricsRecorder, type MetricsRecorder } from '../../src/metrics/metrics.recorder.ts';
import { REPO_ROOT, RULES_PATH } from '../../src/metrics/observability.generate.ts';
import { DELIVERY_SLO_DEFAULTS } from '../../src/metrics/slo.ts';
import {
  pollUntil,
  startPrometheus,
  unanswered,
  waitUntilAnswered,
  type PrometheusServer,
} from '../helpers/prometheus.ts';

import { allExpressions, type NamedExpr } from './expressions.ts';

/** How long every expression may take to have data: a few 1 s scrapes and rule evaluations. */
const ALL_ANSWERED_TIMEOUT_MS = 45_000;

/** One batch of simulated calls: every outcome, egress source, CRM endpoint and code, store write. */
function simulateCalls(recorder: MetricsRecorder) {
  const awaitingEgress = DELIVERY_SLO_DEFAULTS.awaitingEgressState;
  recorder.callStarted({ direction: 'inbound' });
  recorder.callStarted({ direction: 'outbound' });
  recorder.webhookReceived({ event: 'egress_ended', result: 'accepted' });
  recorder.webhookReceived({ event: 'room_finished', result: 'ignored' });
  recorder.stateExited({ state: 'inConversation', durationSeconds: 95 });
  recorder.stateExited({ state: awaitingEgress, durationSeconds: 4 });
  recorder.egressSettled({ source: 'webhook', status: 'complete', waitSeconds: 4 });
  recorder.egressSettled({ source: 'poll', status: 'complete', waitSeconds: 9 });
  recorder.egressSettled({ source: 'deadline', status: 'timed_out', waitSeconds: 120 });
  recorder.recordingUploaded({ sizeBytes: 480_000 });
  recorder.recordingMissing({ reason: 'egress_timed_out' });
  recorder.recordingMissing({ reason: 'storage_refused' });
  recorder.crmRequest({ endpoint: 'upload', code: '201', durationSeconds: 0.8 });
  recorder.crmRequest({ endpoint: 'call_data', code: '503', durationSeconds: 0.1 });
  recorder.crmRetry({ endpoint: 'call_data' });
  recorder.crmRequest({ endpoint: 'call_data', code: '200', durationSeconds: 0.2 });
  recorder.callFinished({ outcome: 'delivered', deliverySeconds: 12 });
  recorder.callFinished({ outcome: 'partial', deliverySeconds: 41 });
  recorder.callFinished({ outcome: 'failed' });
  for (const operation of ['create_call', 'commit'] as const) {
    recorder.storeWrite({ operation, durationSeconds: 0.002, ok: true });
  }
}

describe('a real Prometheus scraping createMetrics() while calls flow', () => {
  let server: Server;
  let prometheus: PrometheusServer | undefined;
  let exprs: NamedExpr[];
  let scrapes = 0;

  beforeAll(async () => {
    exprs = await allExpressions();
    const registry = new Registry();
    const recorder = createMetricsRecorder(
      createMetrics({
        registry,
        version: 'test',
        activeCallsByState: () =>
          new Map([
            [DELIVERY_SLO_DEFAULTS.awaitingEgressState, 2],
            ['inConversation', 5],
          ]),
        oldestCallAgeSecondsByState: () => new Map([[DELIVERY_SLO_DEFAULTS.awaitingEgressState, 7]]),
        failedCallsWaiting: () => 1,
      }),
    );
    recorder.callsRestored({ restored: 2, skipped: 1 });
    recorder.callRedriven();
    server = createServer((request, response) => {
      if (request.url !== '/metrics') {
        response.writeHead(404).end();
        return;
      }
      scrapes += 1;
      simulateCalls(recorder);
      registry.metrics().then(
        (body) => response.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (error: unknown) => response.writeHead(500).end(String(error)),
      );
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    prometheus = await startPrometheus({
      scrapeUrl: `http://127.0.0.1:${address.port}/metrics`,
      jobName: DELIVERY_SLO_DEFAULTS.job,
      ruleFiles: [join(REPO_ROOT, RULES_PATH)],
      intervalSeconds: 1,
    });
  }, 60_000);

  afterAll(async () => {
    await prometheus?.stop();
    if (server?.listening) {
      server.close();
      await once(server, 'close');
    }
  });

  it(
    'answers every dashboard and rule expression with data, and evaluates every rule without error',
    async () => {
      const live = prometheus!;
      const last = await waitUntilAnswered(live, exprs, ALL_ANSWERED_TIMEOUT_MS);
      expect(last, `after ${scrapes} scrapes; Prometheus log:\n${live.log()}`).toEqual([]);
      expect(scrapes).toBeGreaterThanOrEqual(2);
    },
    ALL_ANSWERED_TIMEOUT_MS + 15_000,
  );

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
  });

  it('computes the SLI the rules define from what the recorder counted', async () => {
    // Per batch: 3 calls finished, 1 within 30 s (delivered at 12 s; partial at 41 s; failed).
    const answer = await pollUntil(
      async () => {
        const result = await prometheus!.query(
          `${'callsync:delivery_error:ratio_rate5m'}{job="${DELIVERY_SLO_DEFAULTS.job}"}`,
        );
        return result.ok && result.result.length > 0 ? result.result : undefined;
      },
      { timeoutMs: ALL_ANSWERED_TIMEOUT_MS, description: 'the 5m error ratio' },
    );
    expect(Number(answer[0]?.value[1])).toBeCloseTo(2 / 3, 5);
  });
});
