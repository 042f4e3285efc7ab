/**
 * The demo's core, in-process: a batch of 8 calls (one of each kind: ended by the agent, by the
 * caller hanging up, with a failed egress, and with each CRM fault) through the real services,
 * and the summary's numbers checked against what the CRM sandbox holds. No sleeps: `runDemo`
 * waits on callsync's and the sandbox's events, and the pacing gaps are set to 0.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planCalls } from '../../src/demo/call-plan.ts';
import { runDemo } from '../../src/demo/run-demo.ts';
import { startDemoServices, type DemoServices } from '../../src/demo/services.ts';
import { formatSummary, type DemoSummary } from '../../src/demo/summary.ts';

const CALLS = 8;
/** Generous: the run takes a few seconds, but CI machines are slow and the 429 waits 1 s. */
const RUN_TIMEOUT_MS = 90_000;

let services: DemoServices;
let summary: DemoSummary;

beforeAll(async () => {
  services = await startDemoServices({ logLevel: 'silent' });
  summary = await runDemo({ services, calls: CALLS, staggerMs: 0, turnGapMs: 0, concurrency: 4 });
}, RUN_TIMEOUT_MS);

afterAll(async () => {
  await services.close({ removeFiles: true });
});

describe('runDemo with one call of every kind', () => {
  it('gets every call to the CRM, partial only where the egress failed', () => {
    expect(summary.missing).toEqual([]);
    expect(summary.ok).toBe(true);
    expect(summary.calls).toEqual({
      total: 8,
      reachedCrm: 8,
      delivered: 7,
      partial: 1,
      failed: 0,
      unfinished: 0,
      asDesigned: 8,
      endedByAgent: 6,
      endedByRoomFinished: 2,
      withLead: 4,
    });
    expect(summary.delivery.samples).toBe(8);
  });

  it('counts what the CRM sandbox received, the faults it applied and callsync retried', () => {
    const received = services.crm.received();
    expect(summary.crm).toEqual({
      callDataDocuments: 8,
      recordings: 7,
      recordingBytes: received.uploads.reduce((sum, upload) => sum + upload.sizeBytes, 0),
      requests: { upload: 7 + 3, callData: 8 + 1 },
      duplicatesReplayed: 0,
      faultsApplied: 4,
      faultsByKind: {
        'upload 503': 1,
        'upload 429 (Retry-After 1 s)': 1,
        'upload connection reset': 1,
        'call-data 503': 1,
      },
    });
    expect(summary.crm.recordingBytes).toBeGreaterThan(0);
    expect(summary.callsyncRetries).toEqual({ upload: 3, callData: 1 });
  });

  it('delivers each call as planned: its transcript, its lead, a recording unless the egress failed', () => {
    const documents = new Map(services.crm.received().callData.map((item) => [item.callId, item.document]));
    for (const [index, plan] of planCalls(CALLS).entries()) {
      const row = summary.rows[index]!;
      expect(row.roomName).toBe(plan.roomName);
      const document = documents.get(row.callId!)!;
      expect(document.callDetails.callerNumber).toBe(plan.callerNumber);
      expect(document.transcription.conversation_items.map((item) => item.content)).toEqual(
        plan.turns.map((turn) => turn.content),
      );
      expect(document.transcription.lead_generated).toBe(plan.lead !== null);
      expect(row.endReason).toBe(plan.ending === 'agent-end' ? 'agent_end' : 'room_finished');
      if (plan.egressOutcome === 'failed') expect(document.callDetails.recordingUrl).toBeNull();
      else expect(document.callDetails.recordingUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/files\//);
    }
  });

  it('prints a verdict and where to look', () => {
    const text = formatSummary(summary, { keepRunning: false });
    expect(text).toContain('OK: all 8 calls reached the CRM.');
    expect(text).toContain(`${services.urls.app}/metrics`);
    expect(text).toContain(`${services.urls.crm}/_sandbox/received`);
    expect(summary.urls.sampleCall).toMatch(new RegExp(`^${services.urls.app}/v1/calls/CALL-`));
  });
});
