/**
 * The recorder: each fact about a call lands in the right metrics, the SLI's numerator and
 * denominator stay consistent, bad input never throws or grows cardinality, and the store
 * wrapper times writes without changing what the store does.
 */
import { Registry } from 'prom-client';
import { beforeEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { createMetricsRecorder, type MetricsRecorder } from '../../src/metrics/metrics.recorder.ts';
import { withStoreMetrics } from '../../src/metrics/metrics.store.ts';
import type { CrmClientOptions } from '../../src/services/crm.client.ts';
import type { CallStore, CommitBatch, JournalEntry, NewCall } from '../../src/store/call-store.ts';
import { seriesLabels, seriesValue } from './metrics-fixtures.ts';

let registry: Registry;
let recorder: MetricsRecorder;

beforeEach(() => {
  registry = new Registry();
  recorder = createMetricsRecorder(createMetrics({ registry, processMetrics: false }));
});

describe('callFinished', () => {
  it('counts a delivered call and observes its delivery time', async () => {
    recorder.callFinished({ outcome: 'delivered', deliverySeconds: 31 });
    expect(await seriesValue(registry, 'callsync_calls_finished_total', { outcome: 'delivered' })).toBe(1);
    expect(
      await seriesValue(registry, 'callsync_delivery_duration_seconds_sum', { outcome: 'delivered' }),
    ).toBe(31);
    expect(
      await seriesValue(registry, 'callsync_delivery_duration_seconds_bucket', {
        outcome: 'delivered',
        le: '30',
      }),
    ).toBe(0);
  });

  it('counts a failed call without observing a delivery (a bad event for the SLI)', async () => {
    recorder.callFinished({ outcome: 'failed' });
    expect(await seriesValue(registry, 'callsync_calls_finished_total', { outcome: 'failed' })).toBe(1);
    expect(await seriesLabels(registry, 'callsync_delivery_duration_seconds_count')).toEqual([
      { outcome: 'delivered' },
      { outcome: 'partial' },
    ]);
    expect(
      await seriesValue(registry, 'callsync_delivery_duration_seconds_count', { outcome: 'delivered' }),
    ).toBe(0);
  });

  it('counts a call whose delivery time is unreadable, but never as within the target', async () => {
    recorder.callFinished({ outcome: 'partial', deliverySeconds: Number.NaN });
    expect(await seriesValue(registry, 'callsync_calls_finished_total', { outcome: 'partial' })).toBe(1);
    expect(
      await seriesValue(registry, 'callsync_delivery_duration_seconds_bucket', {
        outcome: 'partial',
        le: '30',
      }),
    ).toBe(0);
  });

  it('counts a negative delivery time (agent clock ahead) as 0 s', async () => {
    recorder.callFinished({ outcome: 'delivered', deliverySeconds: -2 });
    expect(
      await seriesValue(registry, 'callsync_delivery_duration_seconds_sum', { outcome: 'delivered' }),
    ).toBe(0);
    expect(
      await seriesValue(registry, 'callsync_delivery_duration_seconds_bucket', {
        outcome: 'delivered',
        le: '1',
      }),
    ).toBe(1);
  });
});

describe('where calls wait', () => {
  it('observes time in state by state', async () => {
    recorder.stateExited({ state: 'awaitingEgress', durationSeconds: 7 });
    recorder.stateExited({ state: 'uploadingRecording', durationSeconds: 2 });
    // Not a card state (a machine step or an old state name): folded like any unknown label.
    recorder.stateExited({ state: 'delivering.uploadingRecording', durationSeconds: 3 });
    expect(
      await seriesValue(registry, 'callsync_call_state_duration_seconds_sum', { state: 'awaitingEgress' }),
    ).toBe(7);
    expect(
      await seriesValue(registry, 'callsync_call_state_duration_seconds_count', {
        state: 'uploadingRecording',
      }),
    ).toBe(1);
    expect(await seriesValue(registry, 'callsync_call_state_duration_seconds_sum', { state: 'other' })).toBe(
      3,
    );
  });

  it('counts how each egress wait ended, and observes the wait when there was one', async () => {
    recorder.egressSettled({ source: 'webhook', status: 'complete', waitSeconds: 3 });
    recorder.egressSettled({ source: 'poll', status: 'complete', waitSeconds: 5 });
    recorder.egressSettled({ source: 'deadline', status: 'timed_out', waitSeconds: 120 });
    recorder.egressSettled({ source: 'none', status: 'not_started', waitSeconds: null });
    const completions = (source: string, status: string) =>
      seriesValue(registry, 'callsync_egress_completions_total', { source, status });
    expect(await completions('webhook', 'complete')).toBe(1);
    expect(await completions('poll', 'complete')).toBe(1);
    expect(await completions('deadline', 'timed_out')).toBe(1);
    expect(await completions('none', 'not_started')).toBe(1);
    expect(await seriesValue(registry, 'callsync_egress_wait_seconds_count')).toBe(3);
    expect(await seriesValue(registry, 'callsync_egress_wait_seconds_sum')).toBe(128);
  });

  it('records recording sizes, restores, re-drives and starts', async () => {
    recorder.recordingUploaded({ sizeBytes: 300_000 });
    recorder.callsRestored({ restored: 4, skipped: 1 });
    recorder.callRedriven();
    recorder.callStarted({ direction: 'inbound' });
    expect(await seriesValue(registry, 'callsync_recording_bytes_sum')).toBe(300_000);
    expect(await seriesValue(registry, 'callsync_recording_bytes_bucket', { le: String(1024 * 1024) })).toBe(
      1,
    );
    expect(await seriesValue(registry, 'callsync_calls_restored_total', { result: 'restored' })).toBe(4);
    expect(await seriesValue(registry, 'callsync_calls_restored_total', { result: 'skipped' })).toBe(1);
    expect(await seriesValue(registry, 'callsync_call_redrives_total')).toBe(1);
    expect(await seriesValue(registry, 'callsync_calls_started_total', { direction: 'inbound' })).toBe(1);
  });

  it('counts call data sent without a recording by reason, folding unknown reasons into "other"', async () => {
    recorder.recordingMissing({ reason: 'storage_refused' });
    recorder.recordingMissing({ reason: 'storage_refused' });
    recorder.recordingMissing({ reason: 'crm_refused' });
    recorder.recordingMissing({ reason: 'a reason nobody defined' as never });
    const missing = (reason: string) =>
      seriesValue(registry, 'callsync_recordings_missing_total', { reason });
    expect(await missing('storage_refused')).toBe(2);
    expect(await missing('crm_refused')).toBe(1);
    expect(await missing('other')).toBe(1);
  });
});

describe('labels stay a closed set', () => {
  it('folds unknown webhook events, odd codes and odd states into "other"', async () => {
    recorder.webhookReceived({ event: 'egress_ended', result: 'accepted' });
    recorder.webhookReceived({ event: 'made_up_event', result: 'ignored' });
    recorder.webhookReceived({ event: 'unknown', result: 'unauthorized' });
    recorder.crmRequest({ endpoint: 'upload', code: 'not a code!', durationSeconds: 1 });
    recorder.stateExited({ state: 'x'.repeat(200), durationSeconds: 1 });
    expect(await seriesLabels(registry, 'callsync_webhooks_total')).toEqual([
      { event: 'egress_ended', result: 'accepted' },
      { event: 'other', result: 'ignored' },
      { event: 'unknown', result: 'unauthorized' },
    ]);
    expect(await seriesLabels(registry, 'callsync_crm_request_duration_seconds_count')).toEqual([
      { endpoint: 'upload', code: 'other' },
    ]);
    expect(await seriesLabels(registry, 'callsync_call_state_duration_seconds_count')).toEqual([
      { state: 'other' },
    ]);
  });

  it('drops a duration that is not a number instead of throwing', async () => {
    expect(() =>
      recorder.crmRequest({ endpoint: 'call_data', code: '200', durationSeconds: Number.NaN }),
    ).not.toThrow();
    expect(() =>
      recorder.stateExited({ state: 'ringing', durationSeconds: Number.POSITIVE_INFINITY }),
    ).not.toThrow();
    expect(await seriesLabels(registry, 'callsync_crm_request_duration_seconds_count')).toEqual([]);
    expect(await seriesLabels(registry, 'callsync_call_state_duration_seconds_count')).toEqual([]);
  });
});

describe('CRM client hook', () => {
  it("plugs into the CRM client's onRequest as it is", async () => {
    const onRequest: NonNullable<CrmClientOptions['onRequest']> = recorder.crmRequest;
    onRequest({ endpoint: 'call_data', code: 'CRM_TIMEOUT', durationSeconds: 10 });
    expect(
      await seriesValue(registry, 'callsync_crm_request_duration_seconds_count', {
        endpoint: 'call_data',
        code: 'CRM_TIMEOUT',
      }),
    ).toBe(1);
  });
});

describe('withStoreMetrics', () => {
  const call: NewCall = {
    callId: 'call-1',
    roomName: 'room-1',
    machineVersion: '1',
    state: 'inCall',
    snapshot: {},
    createdAt: '2026-01-01T00:00:00.000Z',
  };
  const entry: JournalEntry = { at: '2026-01-01T00:00:01.000Z', kind: 'transition', state: 'awaitingEgress' };
  const batch: CommitBatch = { events: [], snapshots: [], journal: [{ callId: 'call-1', entry }] };

  /** A store that remembers what it was asked, and fails commits when told to. */
  class FakeStore implements Partial<CallStore> {
    calls: string[] = [];
    failCommit = false;
    createCall(newCall: NewCall) {
      this.calls.push(`create ${newCall.callId}`);
      return Promise.resolve({
        created: true,
        call: {
          ...newCall,
          status: 'active' as const,
          egressId: null,
          appliedSeq: 0,
          handledSeq: 0,
          transcriptItems: 0,
          owner: null,
          updatedAt: newCall.createdAt,
        },
      });
    }
    commit(committed: CommitBatch) {
      this.calls.push(`commit ${committed.journal.map((j) => `${j.callId} ${j.entry.kind}`).join(',')}`);
      return this.failCommit ? Promise.reject(new Error('disk full')) : Promise.resolve([]);
    }
    getCall(callId: string) {
      this.calls.push(`get ${callId}`);
      return Promise.resolve(undefined);
    }
  }

  it('times writes by operation with the injected clock, passes results and reads through', async () => {
    const fake = new FakeStore();
    let nowMs = 1_000;
    const store = withStoreMetrics(fake as unknown as CallStore, recorder, () => (nowMs += 4));
    const created = await store.createCall(call);
    await store.commit(batch);
    expect(await store.getCall('call-1')).toBeUndefined();

    expect(created.created).toBe(true);
    expect(fake.calls).toEqual(['create call-1', 'commit call-1 transition', 'get call-1']);
    expect(
      await seriesValue(registry, 'callsync_store_write_duration_seconds_sum', { operation: 'create_call' }),
    ).toBe(0.004);
    expect(
      await seriesValue(registry, 'callsync_store_write_duration_seconds_count', {
        operation: 'commit',
      }),
    ).toBe(1);
    expect(await seriesLabels(registry, 'callsync_store_write_duration_seconds_count')).toHaveLength(2);
  });

  it('counts a failed write and rethrows its error', async () => {
    const fake = new FakeStore();
    fake.failCommit = true;
    const store = withStoreMetrics(fake as unknown as CallStore, recorder);
    await expect(store.commit(batch)).rejects.toThrow('disk full');
    expect(await seriesValue(registry, 'callsync_store_write_errors_total', { operation: 'commit' })).toBe(1);
    expect(
      await seriesValue(registry, 'callsync_store_write_errors_total', { operation: 'create_call' }),
    ).toBe(0);
  });
});
