/**
 * The demo's pure parts: the call plan, the flags, the percentile, the metrics reader, the
 * summary and the fleet's section of it.
 */
import { describe, expect, it } from 'vitest';
import { DemoArgsError, parseDemoArgs } from '../../src/demo/args.ts';
import { planCalls, RECORDING_SECONDS_MAX, RECORDING_SECONDS_MIN } from '../../src/demo/call-plan.ts';
import {
  buildFleetSection,
  formatFleetSection,
  type FleetSectionInput,
} from '../../src/demo/fleet-summary.ts';
import { sampleValue } from '../../src/demo/prometheus-text.ts';
import type { CallRun } from '../../src/demo/simulate-call.ts';
import { buildSummary, formatSummary, percentile, type CallView } from '../../src/demo/summary.ts';
import type { CrmSandboxReceived, ReceivedCallData } from '../../src/sandbox/crm/index.ts';

describe('planCalls', () => {
  it('covers every kind in the first 8 calls', () => {
    const plans = planCalls(8);
    expect(plans.map((plan) => [plan.ending, plan.egressOutcome, plan.crmFault])).toEqual([
      ['agent-end', 'complete', null],
      ['agent-end', 'complete', 'upload-503'],
      ['caller-hang-up', 'complete', null],
      ['agent-end', 'failed', null],
      ['agent-end', 'complete', 'upload-429'],
      ['agent-end', 'complete', 'upload-reset'],
      ['agent-end', 'complete', 'call-data-503'],
      ['caller-hang-up', 'complete', null],
    ]);
  });

  it('makes 50 calls with a few of each fault, 40 % leads, and realistic recordings', () => {
    const plans = planCalls(50);
    const count = (predicate: (plan: (typeof plans)[number]) => boolean) => plans.filter(predicate).length;
    expect(count((plan) => plan.ending === 'caller-hang-up')).toBe(6);
    expect(count((plan) => plan.expectedOutcome === 'partial')).toBe(3);
    expect(count((plan) => plan.crmFault !== null)).toBe(13);
    expect(count((plan) => plan.lead !== null)).toBe(20);
    expect(new Set(plans.map((plan) => plan.roomName)).size).toBe(50);
    for (const plan of plans) {
      expect(plan.recordingSeconds).toBeGreaterThanOrEqual(RECORDING_SECONDS_MIN);
      expect(plan.recordingSeconds).toBeLessThanOrEqual(RECORDING_SECONDS_MAX);
      expect(plan.turns.length).toBeGreaterThanOrEqual(4);
      const positions = plan.turns.map((turn) => turn.position);
      expect(positions).toEqual([...positions].sort((a, b) => a - b));
      expect(positions.every((position) => position > 0 && position < 1)).toBe(true);
      if (plan.lead) expect(plan.turns[plan.lead.afterTurn]!.content).toContain(String(plan.lead.data.name));
    }
  });

  it('is the same plan for the same seed', () => {
    expect(planCalls(20, 7)).toEqual(planCalls(20, 7));
    expect(planCalls(20, 7)).not.toEqual(planCalls(20, 8));
  });
});

describe('parseDemoArgs', () => {
  it('reads --calls, DEMO_CALLS and --keep-running', () => {
    expect(parseDemoArgs([], {})).toEqual({ calls: 50, keepRunning: false, help: false });
    expect(parseDemoArgs([], { DEMO_CALLS: '12' })).toMatchObject({ calls: 12 });
    expect(parseDemoArgs(['--calls', '8', '--keep-running'], { DEMO_CALLS: '12' })).toEqual({
      calls: 8,
      keepRunning: true,
      help: false,
    });
    expect(parseDemoArgs(['--calls=3'], {})).toMatchObject({ calls: 3 });
  });

  it('refuses what it cannot honour, naming it', () => {
    expect(() => parseDemoArgs(['--calls', '0'], {})).toThrow(/--calls must be a whole number/);
    expect(() => parseDemoArgs(['--calls', '2.5'], {})).toThrow(DemoArgsError);
    expect(() => parseDemoArgs([], { DEMO_CALLS: 'lots' })).toThrow(/DEMO_CALLS/);
    expect(() => parseDemoArgs(['--cals', '3'], {})).toThrow(DemoArgsError);
  });

  it('reads --fleet N for 2 to 5 supervisors, and leaves it out without the flag', () => {
    expect(parseDemoArgs(['--fleet', '3'], {})).toEqual({
      calls: 50,
      keepRunning: false,
      help: false,
      fleet: 3,
    });
    expect(parseDemoArgs(['--fleet=2', '--calls', '12', '--storage', 's3'], {})).toMatchObject({
      fleet: 2,
      calls: 12,
      storage: 's3',
    });
    expect(parseDemoArgs(['--fleet', '5'], {})).toMatchObject({ fleet: 5 });
    expect(parseDemoArgs([], {})).not.toHaveProperty('fleet');
  });

  it('refuses a fleet it cannot run, naming the range', () => {
    for (const bad of ['1', '6', '0', '2.5', 'three', '', '-3']) {
      expect(() => parseDemoArgs([`--fleet=${bad}`], {})).toThrow(
        /^--fleet must be a whole number of supervisors from 2 to 5, got "/,
      );
    }
    // A bare --fleet has no value: parseArgs says so.
    expect(() => parseDemoArgs(['--fleet'], {})).toThrow(DemoArgsError);
  });
});

describe('percentile (nearest rank)', () => {
  it('picks ranks as Prometheus users expect', () => {
    const values = Array.from({ length: 20 }, (_, index) => index + 1);
    expect(percentile(values, 50)).toBe(10);
    expect(percentile(values, 95)).toBe(19);
    expect(percentile(values, 100)).toBe(20);
    expect(percentile([4], 95)).toBe(4);
    expect(percentile([], 50)).toBeNull();
  });
});

describe('sampleValue', () => {
  const exposition = [
    '# HELP callsync_crm_retries_total retried CRM requests',
    '# TYPE callsync_crm_retries_total counter',
    'callsync_crm_retries_total{endpoint="upload"} 3',
    'callsync_crm_retries_total{endpoint="call_data"} 1',
    'callsync_crm_retries_total_extra{endpoint="upload"} 99',
  ].join('\n');

  it('reads one series by exact name and labels, 0 when absent', () => {
    expect(sampleValue(exposition, 'callsync_crm_retries_total', { endpoint: 'upload' })).toBe(3);
    expect(sampleValue(exposition, 'callsync_crm_retries_total', { endpoint: 'call_data' })).toBe(1);
    expect(sampleValue(exposition, 'callsync_crm_retries_total', { endpoint: 'other' })).toBe(0);
  });
});

describe('buildSummary', () => {
  const [first, second, third] = planCalls(3);
  const runs: CallRun[] = [
    { plan: first!, callId: 'CALL-A', endedBy: 'agent-end', error: null, warnings: [] },
    { plan: second!, callId: 'CALL-B', endedBy: 'agent-end', error: null, warnings: [] },
    {
      plan: third!,
      callId: null,
      endedBy: null,
      error: 'POST /v1/calls answered 503: draining',
      warnings: [],
    },
  ];
  const view = (callId: string, overrides: Partial<CallView>): CallView => ({
    callId,
    state: 'done',
    outcome: 'delivered',
    endReason: 'agent_end',
    endedAt: '2025-10-29T10:00:00.000Z',
    callDataAcknowledgedAt: '2025-10-29T10:00:01.500Z',
    ...overrides,
  });
  const received: CrmSandboxReceived = {
    requests: { upload: 1, 'call-data': 2 },
    uploads: [],
    callData: [
      {
        idempotencyKey: 'CALL-A:call-data',
        callId: 'CALL-A',
        document: {} as ReceivedCallData['document'],
        receivedAt: '2025-10-29T10:00:01.400Z',
      },
    ],
    duplicates: { upload: 0, 'call-data': 0 },
    duplicateRequests: [],
    rejected: [],
    faults: [{ endpoint: 'call-data', fault: { status: 422 }, idempotencyKey: 'CALL-B:call-data' }],
  };

  it('names every call that did not reach the CRM, and why', () => {
    const summary = buildSummary({
      runs,
      views: new Map([
        ['CALL-A', view('CALL-A', {})],
        [
          'CALL-B',
          view('CALL-B', {
            state: 'failed',
            outcome: null,
            callDataAcknowledgedAt: null,
            lastError: { code: 'CRM_REJECTED', status: 422 },
          }),
        ],
      ]),
      waitProblems: new Map(),
      received,
      retries: { upload: 0, callData: 0 },
      targetSeconds: 30,
      wallSeconds: 3,
      urls: { app: 'http://app', liveKit: 'http://lk', crm: 'http://crm' },
    });
    expect(summary.ok).toBe(false);
    expect(summary.calls).toMatchObject({ total: 3, reachedCrm: 1, delivered: 1, failed: 1, unfinished: 1 });
    expect(summary.delivery).toMatchObject({ samples: 1, p50Seconds: 1.5, maxSeconds: 1.5 });
    expect(summary.missing).toEqual([
      {
        roomName: second!.roomName,
        callId: 'CALL-B',
        reason: expect.stringContaining('CRM_REJECTED HTTP 422') as unknown,
      },
      { roomName: third!.roomName, callId: null, reason: 'POST /v1/calls answered 503: draining' },
    ]);
    expect(summary.crm.faultsByKind).toEqual({ 'call-data 422': 1 });
    const text = formatSummary(summary, { keepRunning: false });
    expect(text).toContain('FAILED: 2 call(s) did not reach the CRM:');
    expect(text).toContain(`${second!.roomName}  CALL-B  callsync gave up`);
  });
});

describe('buildFleetSection', () => {
  const killAtMs = Date.parse('2025-10-29T10:00:00.000Z');
  const callData = (callId: string): ReceivedCallData => ({
    idempotencyKey: `${callId}:call-data`,
    callId,
    document: {} as ReceivedCallData['document'],
    receivedAt: '2025-10-29T10:00:05.000Z',
  });
  const upload = (callId: string) => ({
    idempotencyKey: `${callId}:recording`,
    fileName: `${callId}.ogg`,
    contentType: 'audio/ogg',
    sizeBytes: 10,
    sha256: 'x',
    storedName: `${callId}.ogg`,
    path: `/tmp/${callId}.ogg`,
    url: `http://crm/files/${callId}.ogg`,
    fields: {},
    contentLength: 10,
    chunked: false,
    receivedAt: '2025-10-29T10:00:04.000Z',
  });
  const input = (overrides: Partial<FleetSectionInput> = {}): FleetSectionInput => ({
    instanceIds: ['demo-1', 'demo-2', 'demo-3'],
    leaseSeconds: 3,
    schema: 'callsync_demo_abc',
    proxyUrl: 'http://proxy',
    fault: {
      kill: { instanceId: 'demo-2', pid: 42, atMs: killAtMs, callIds: ['CALL-A', 'CALL-B'] },
      takeOvers: [
        { callId: 'CALL-A', previousOwner: 'demo-2', by: 'demo-1', atMs: killAtMs + 3_400 },
        { callId: 'CALL-B', previousOwner: 'demo-2', by: 'demo-3', atMs: killAtMs + 3_900 },
      ],
      restartedPid: 43,
      forwardedAtRestart: 10,
      error: null,
    },
    takeOvers: [
      { callId: 'CALL-A', previousOwner: 'demo-2', by: 'demo-1', atMs: killAtMs + 3_400 },
      { callId: 'CALL-B', previousOwner: 'demo-2', by: 'demo-3', atMs: killAtMs + 3_900 },
    ],
    owners: new Map<string, string | null>([
      ['CALL-A', 'demo-1'],
      ['CALL-B', 'demo-3'],
      ['CALL-C', 'demo-2'],
    ]),
    received: {
      requests: { upload: 4, 'call-data': 3 },
      uploads: ['CALL-A', 'CALL-B', 'CALL-C'].map(upload),
      callData: ['CALL-A', 'CALL-B', 'CALL-C'].map(callData),
      duplicates: { upload: 1, 'call-data': 0 },
      duplicateRequests: [
        { endpoint: 'upload', idempotencyKey: 'CALL-A:recording', concurrent: false, status: 201 },
      ],
      rejected: [],
      faults: [],
    },
    agentRetries: { '503 CALL_OWNER_UNAVAILABLE': 2 },
    proxy: {
      forwarded: { 'demo-1': 30, 'demo-2': 14, 'demo-3': 30 },
      refused: { 'demo-2': 5 },
      proxyErrors: {},
    },
    ...overrides,
  });

  it('counts the take-overs, their delay from the kill, the owners and one accepted effect per key', () => {
    const section = buildFleetSection(input());
    expect(section.ok).toBe(true);
    expect(section.kill).toEqual({
      instanceId: 'demo-2',
      pid: 42,
      callsInProgress: 2,
      restartedPid: 43,
      requestsSinceRestart: 4,
    });
    expect(section.takeOvers).toEqual({
      total: 2,
      ofKilled: 2,
      byInstance: { 'demo-1': 1, 'demo-3': 1 },
      firstDelayMs: 3_400,
      lastDelayMs: 3_900,
    });
    expect(section.ownersAtEnd).toEqual({ 'demo-1': 1, 'demo-2': 1, 'demo-3': 1 });
    expect(section.crm).toEqual({
      duplicates: { upload: 1, callData: 0 },
      acceptedKeys: { upload: 3, callData: 3 },
      keysAcceptedTwice: [],
    });
    const text = formatFleetSection(section);
    expect(text).toMatch(/killed \(SIGKILL\)\s+demo-2 {3}pid 42, with 2 calls in progress/);
    expect(text).toMatch(/its calls taken over\s+2\/2 {3}by demo-1 ×1, demo-3 ×1/);
    expect(text).toMatch(/take-over delay\s+3\.40 s {3}kill → first 'call taken over' line; last 3\.90 s/);
    expect(text).toMatch(/CRM duplicate requests\s+1 {3}upload 1, call-data 0/);
    expect(text).toMatch(
      /keys accepted twice\s+0 {3}one accepted effect per Idempotency-Key: 3 uploads, 3 call-data/,
    );
    expect(text).toContain('OK: demo-2 was killed with 2 calls in progress');
  });

  it('fails a key accepted twice, a call never taken over, and a run with no kill', () => {
    const base = input();
    const twice = buildFleetSection(
      input({ received: { ...base.received, callData: [...base.received.callData, callData('CALL-A')] } }),
    );
    expect(twice.ok).toBe(false);
    expect(twice.crm.keysAcceptedTwice).toEqual(['CALL-A:call-data']);
    expect(formatFleetSection(twice)).toContain('FAILED (fleet): 1 key(s) accepted twice');

    const stuck = buildFleetSection(
      input({
        fault: {
          ...base.fault!,
          takeOvers: base.fault!.takeOvers.slice(0, 1),
          error: "1 of demo-2's 2 calls were not taken over within 30000 ms: CALL-B",
        },
      }),
    );
    expect(stuck.ok).toBe(false);
    expect(formatFleetSection(stuck)).toContain(
      "FAILED (fleet): 1 of demo-2's 2 calls were not taken over within 30000 ms: CALL-B; 1 of the killed instance's calls not taken over",
    );

    const none = buildFleetSection(input({ fault: null }));
    expect(none.ok).toBe(false);
    expect(none.kill).toBeNull();
    expect(formatFleetSection(none)).toContain('FAILED (fleet): no instance was killed');
  });
});
