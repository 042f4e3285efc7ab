/**
 * The metrics dashboards and alerts outside this repo read (the README's Monitoring section): each
 * must be registered by `createMetrics()` under its exact name, type and label names, with the
 * label values the contract lists. The operator metrics the dashboard and rules read are held
 * to the same standard. A rename, a retype or a relabel fails here.
 */
import { Registry, register as globalRegistry } from 'prom-client';
import { beforeEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { createMetricsRecorder } from '../../src/metrics/metrics.recorder.ts';
import { registeredMetrics, seriesLabels, seriesValue } from './metrics-fixtures.ts';

interface Expected {
  name: string;
  type: 'histogram' | 'counter' | 'gauge';
  labels: string[];
}

/** The public metric names, types and labels, as the README's Monitoring section lists them. */
const CONTRACT: Expected[] = [
  { name: 'callsync_delivery_duration_seconds', type: 'histogram', labels: ['outcome'] },
  { name: 'callsync_calls_finished_total', type: 'counter', labels: ['outcome'] },
  { name: 'callsync_calls_active', type: 'gauge', labels: ['state'] },
  { name: 'callsync_egress_wait_seconds', type: 'histogram', labels: [] },
  { name: 'callsync_crm_request_duration_seconds', type: 'histogram', labels: ['code', 'endpoint'] },
  { name: 'callsync_crm_retries_total', type: 'counter', labels: ['endpoint'] },
];

/** The operator metrics the dashboard and the rules read. */
const OPERATOR: Expected[] = [
  { name: 'callsync_calls_started_total', type: 'counter', labels: ['direction'] },
  { name: 'callsync_call_state_duration_seconds', type: 'histogram', labels: ['state'] },
  { name: 'callsync_oldest_call_age_seconds', type: 'gauge', labels: ['state'] },
  { name: 'callsync_egress_completions_total', type: 'counter', labels: ['source', 'status'] },
  { name: 'callsync_recording_bytes', type: 'histogram', labels: [] },
  { name: 'callsync_store_write_duration_seconds', type: 'histogram', labels: ['operation'] },
  { name: 'callsync_store_write_errors_total', type: 'counter', labels: ['operation'] },
  { name: 'callsync_calls_restored_total', type: 'counter', labels: ['result'] },
  { name: 'callsync_calls_failed_waiting', type: 'gauge', labels: [] },
  { name: 'callsync_call_redrives_total', type: 'counter', labels: [] },
  { name: 'callsync_webhooks_total', type: 'counter', labels: ['event', 'result'] },
  { name: 'callsync_delivery_target_seconds', type: 'gauge', labels: [] },
  { name: 'callsync_build_info', type: 'gauge', labels: ['node_version', 'version'] },
];

let registry: Registry;

beforeEach(() => {
  registry = new Registry();
});

describe('contract metrics', () => {
  it.each(CONTRACT)('$name is a $type with labels [$labels]', async (expected) => {
    createMetrics({ registry, processMetrics: false });
    const metric = (await registeredMetrics(registry)).get(expected.name);
    expect(metric, `${expected.name} is not registered`).toBeDefined();
    expect(metric?.type).toBe(expected.type);
    expect(metric?.labelNames).toEqual([...expected.labels].sort());
  });

  it('exposes the outcomes, endpoints and states the contract names as label values', async () => {
    const metrics = createMetrics({
      registry,
      processMetrics: false,
      activeCallsByState: () => new Map([['awaitingEgress', 2]]),
    });
    const recorder = createMetricsRecorder(metrics);
    recorder.callFinished({ outcome: 'delivered', deliverySeconds: 12 });
    recorder.callFinished({ outcome: 'partial', deliverySeconds: 40 });
    recorder.callFinished({ outcome: 'failed' });
    recorder.crmRequest({ endpoint: 'upload', code: '201', durationSeconds: 0.4 });
    recorder.crmRequest({ endpoint: 'call_data', code: '503', durationSeconds: 0.2 });
    recorder.crmRetry({ endpoint: 'call_data' });
    recorder.egressSettled({ source: 'webhook', status: 'complete', waitSeconds: 4 });

    expect(await seriesValue(registry, 'callsync_calls_finished_total', { outcome: 'delivered' })).toBe(1);
    expect(await seriesValue(registry, 'callsync_calls_finished_total', { outcome: 'partial' })).toBe(1);
    expect(await seriesValue(registry, 'callsync_calls_finished_total', { outcome: 'failed' })).toBe(1);
    expect(
      await seriesValue(registry, 'callsync_delivery_duration_seconds_count', { outcome: 'delivered' }),
    ).toBe(1);
    expect(
      await seriesValue(registry, 'callsync_delivery_duration_seconds_count', { outcome: 'partial' }),
    ).toBe(1);
    expect(
      await seriesValue(registry, 'callsync_crm_request_duration_seconds_count', {
        endpoint: 'upload',
        code: '201',
      }),
    ).toBe(1);
    expect(
      await seriesValue(registry, 'callsync_crm_request_duration_seconds_count', {
        endpoint: 'call_data',
        code: '503',
      }),
    ).toBe(1);
    expect(await seriesValue(registry, 'callsync_crm_retries_total', { endpoint: 'call_data' })).toBe(1);
    expect(await seriesValue(registry, 'callsync_calls_active', { state: 'awaitingEgress' })).toBe(2);
    expect(await seriesValue(registry, 'callsync_egress_wait_seconds_count')).toBe(1);
  });
});

describe('delivery histogram buckets', () => {
  it('has a bucket at exactly 30 s, and buckets past 10 s', async () => {
    const metrics = createMetrics({ registry, processMetrics: false });
    metrics.deliveryDuration.observe({ outcome: 'delivered' }, 30);
    metrics.deliveryDuration.observe({ outcome: 'delivered' }, 30.5);
    const les = (await seriesLabels(registry, 'callsync_delivery_duration_seconds_bucket')).map(
      (labels) => labels.le,
    );
    expect(les).toContain('30');
    // 30 s exactly is within the target, 30.5 s is not: the SLI needs the boundary at 30.
    expect(
      await seriesValue(registry, 'callsync_delivery_duration_seconds_bucket', {
        outcome: 'delivered',
        le: '30',
      }),
    ).toBe(1);
    expect(
      await seriesValue(registry, 'callsync_delivery_duration_seconds_bucket', {
        outcome: 'delivered',
        le: '45',
      }),
    ).toBe(2);
  });

  it.each([12.5, 40, 90])('adds a bucket for a %s s target', async (targetSeconds) => {
    createMetrics({ registry, processMetrics: false, targetSeconds });
    const les = (await seriesLabels(registry, 'callsync_delivery_duration_seconds_bucket')).map(
      (labels) => labels.le,
    );
    expect(les).toContain(String(targetSeconds));
    expect(await seriesValue(registry, 'callsync_delivery_target_seconds')).toBe(targetSeconds);
  });

  it.each([0, -5, Number.NaN, Number.POSITIVE_INFINITY])('refuses a target of %s', (targetSeconds) => {
    expect(() => createMetrics({ registry, processMetrics: false, targetSeconds })).toThrow(RangeError);
  });
});

describe('operator metrics', () => {
  it.each(OPERATOR)('$name is a $type with labels [$labels]', async (expected) => {
    createMetrics({ registry, processMetrics: false });
    const metric = (await registeredMetrics(registry)).get(expected.name);
    expect(metric, `${expected.name} is not registered`).toBeDefined();
    expect(metric?.type).toBe(expected.type);
    expect(metric?.labelNames).toEqual([...expected.labels].sort());
  });

  it('exposes the series the SLO rules add and divide at 0 before any call', async () => {
    createMetrics({ registry, processMetrics: false });
    for (const outcome of ['delivered', 'partial', 'failed']) {
      expect(await seriesValue(registry, 'callsync_calls_finished_total', { outcome })).toBe(0);
    }
    for (const outcome of ['delivered', 'partial']) {
      expect(await seriesValue(registry, 'callsync_delivery_duration_seconds_count', { outcome })).toBe(0);
      expect(
        await seriesValue(registry, 'callsync_delivery_duration_seconds_bucket', { outcome, le: '30' }),
      ).toBe(0);
    }
    expect(await seriesValue(registry, 'callsync_calls_failed_waiting')).toBe(0);
  });

  it('reads the per-state gauges at scrape time, dropping states no call is in any more', async () => {
    let active = new Map([
      ['awaitingEgress', 3],
      ['uploadingRecording', 1],
    ]);
    let oldest = new Map([['awaitingEgress', 95]]);
    let failed = 2;
    createMetrics({
      registry,
      processMetrics: false,
      activeCallsByState: () => active,
      oldestCallAgeSecondsByState: () => oldest,
      failedCallsWaiting: () => Promise.resolve(failed),
    });
    expect(await seriesValue(registry, 'callsync_calls_active', { state: 'awaitingEgress' })).toBe(3);
    expect(await seriesValue(registry, 'callsync_oldest_call_age_seconds', { state: 'awaitingEgress' })).toBe(
      95,
    );
    expect(await seriesValue(registry, 'callsync_calls_failed_waiting')).toBe(2);

    active = new Map([['postingCallData', 1]]);
    oldest = new Map();
    failed = 0;
    expect(await seriesLabels(registry, 'callsync_calls_active')).toEqual([{ state: 'postingCallData' }]);
    expect(await seriesLabels(registry, 'callsync_oldest_call_age_seconds')).toEqual([]);
    expect(await seriesValue(registry, 'callsync_calls_failed_waiting')).toBe(0);
  });

  it('reports the build and Node.js versions', async () => {
    createMetrics({ registry, processMetrics: false, version: '1.2.3' });
    expect(
      await seriesValue(registry, 'callsync_build_info', { version: '1.2.3', node_version: process.version }),
    ).toBe(1);
  });
});

describe('registry', () => {
  it('registers only on the injected registry, never the global one', async () => {
    createMetrics({ registry });
    createMetrics({ registry: new Registry() });
    const global = (await globalRegistry.getMetricsAsJSON()).map((metric) => metric.name);
    expect(global.filter((name) => name.startsWith('callsync_') || name.startsWith('process_'))).toEqual([]);
  });

  it('adds the default process metrics and event-loop lag unprefixed, unless turned off', async () => {
    createMetrics({ registry });
    const names = [...(await registeredMetrics(registry)).keys()];
    expect(names).toEqual(
      expect.arrayContaining([
        'process_cpu_seconds_total',
        'process_resident_memory_bytes',
        'nodejs_eventloop_lag_p99_seconds',
        'nodejs_heap_size_used_bytes',
      ]),
    );
    const bare = new Registry();
    createMetrics({ registry: bare, processMetrics: false });
    const bareNames = [...(await registeredMetrics(bare)).keys()];
    expect(bareNames.filter((name) => !name.startsWith('callsync_'))).toEqual([]);
  });
});
