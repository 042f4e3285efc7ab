/**
 * The demo's verdict: what callsync reports about every call, what the CRM sandbox received,
 * and how long each delivery took against the target, reduced to a few numbers and printed
 * for a person. Pure: run-demo.ts collects the inputs, this file only counts and formats.
 *
 * Delivery time is call end → CRM acknowledged the call data, from each call's own `endedAt`
 * and `callDataAcknowledgedAt` (`GET /v1/calls/{id}`), the same interval callsync's
 * `callsync_delivery_duration_seconds` histogram observes. Percentiles are nearest-rank.
 */
import type { CrmSandboxReceived, AppliedFault } from '../sandbox/crm/index.ts';
import type { CallEnding, CrmFaultKind, PlannedOutcome } from './call-plan.ts';
import type { DemoStorageReadout } from './services.ts';
import type { CallRun } from './simulate-call.ts';

export type FinalOutcome = 'delivered' | 'partial' | 'failed';

/** The fields of `GET /v1/calls/{id}` the summary reads. */
export interface CallView {
  callId: string;
  /** `done` or `failed` once final. */
  state: string;
  /** Set on `done` only: a failed call has state `failed` and no outcome. */
  outcome: 'delivered' | 'partial' | null;
  endReason: string | null;
  endedAt: string | null;
  callDataAcknowledgedAt: string | null;
  lastError?: { code?: string | undefined; status?: number | undefined } | null | undefined;
}

export interface CallRow {
  roomName: string;
  callId: string | null;
  topic: string;
  plannedEnding: CallEnding;
  endReason: string | null;
  crmFault: CrmFaultKind | null;
  withLead: boolean;
  expectedOutcome: PlannedOutcome;
  state: string | null;
  outcome: FinalOutcome | null;
  deliverySeconds: number | null;
  reachedCrm: boolean;
  /** Why the call did not reach the CRM, or did not end as designed. */
  problem: string | null;
  /** What looked off while driving the call (e.g. its egress never started recording). */
  warnings: string[];
}

export interface DemoSummary {
  /** Every call has a call-data document in the CRM sandbox. */
  ok: boolean;
  wallSeconds: number;
  calls: {
    total: number;
    reachedCrm: number;
    delivered: number;
    partial: number;
    failed: number;
    /** No final state by the deadline. */
    unfinished: number;
    /** Outcome as the call plan intended (partial only for the failed egresses). */
    asDesigned: number;
    endedByAgent: number;
    endedByRoomFinished: number;
    withLead: number;
  };
  delivery: {
    targetSeconds: number;
    samples: number;
    p50Seconds: number | null;
    p95Seconds: number | null;
    maxSeconds: number | null;
    withinTarget: number;
  };
  crm: {
    callDataDocuments: number;
    recordings: number;
    recordingBytes: number;
    requests: { upload: number; callData: number };
    duplicatesReplayed: number;
    faultsApplied: number;
    /** "upload 503" → how many times the sandbox applied it. */
    faultsByKind: Record<string, number>;
  };
  /** `callsync_crm_retries_total` by endpoint, from `/metrics`. */
  callsyncRetries: { upload: number; callData: number };
  /** `callsync_recordings_missing_total` by reason (only reasons seen), from `/metrics`. */
  missingReasons: Record<string, number>;
  /** Where recordings lived and what that store holds; null when not read. */
  storage: DemoStorageReadout | null;
  urls: {
    app: string;
    liveKit: string;
    crm: string;
    metrics: string;
    crmReceived: string;
    sampleCall: string | null;
    /** The S3 server, with `--storage s3`. */
    s3?: string | undefined;
  };
  rows: CallRow[];
  /** The calls that did not reach the CRM, with the reason. */
  missing: { roomName: string; callId: string | null; reason: string }[];
}

export interface SummaryInput {
  runs: readonly CallRun[];
  /** By call id; absent when the call could not be read. */
  views: ReadonlyMap<string, CallView>;
  /** By call id: why waiting for that call's delivery ended without it. */
  waitProblems: ReadonlyMap<string, string>;
  received: CrmSandboxReceived;
  retries: { upload: number; callData: number };
  missingReasons?: Record<string, number> | undefined;
  storage?: DemoStorageReadout | undefined;
  targetSeconds: number;
  wallSeconds: number;
  urls: { app: string; liveKit: string; crm: string; s3?: string | undefined };
}

/** Nearest-rank percentile of an ascending list; null for an empty one. */
export function percentile(sortedAscending: readonly number[], p: number): number | null {
  if (sortedAscending.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sortedAscending.length));
  return sortedAscending[Math.min(rank, sortedAscending.length) - 1]!;
}

export function describeFault({ endpoint, fault }: AppliedFault): string {
  if ('reset' in fault) return `${endpoint} connection reset`;
  if ('hang' in fault) return `${endpoint} no answer`;
  if ('delayMs' in fault) return `${endpoint} slow (${fault.delayMs} ms)`;
  const retryAfter =
    fault.retryAfterSeconds === undefined ? '' : ` (Retry-After ${fault.retryAfterSeconds} s)`;
  return `${endpoint} ${fault.status}${retryAfter}`;
}

function rowOf(run: CallRun, input: SummaryInput, callDataIds: ReadonlySet<string>): CallRow {
  const { plan, callId } = run;
  const view = callId === null ? undefined : input.views.get(callId);
  const ended = view?.endedAt ? Date.parse(view.endedAt) : NaN;
  const acknowledged = view?.callDataAcknowledgedAt ? Date.parse(view.callDataAcknowledgedAt) : NaN;
  const deliverySeconds =
    Number.isFinite(ended) && Number.isFinite(acknowledged) ? Math.max(0, acknowledged - ended) / 1000 : null;
  const reachedCrm = callId !== null && callDataIds.has(callId);
  const outcome: FinalOutcome | null = view?.state === 'failed' ? 'failed' : (view?.outcome ?? null);
  let problem: string | null = null;
  if (!reachedCrm) {
    const lastError = view?.lastError;
    problem =
      run.error ??
      (outcome === 'failed'
        ? `callsync gave up (state failed, last error ${lastError?.code ?? 'unknown'}${lastError?.status ? ` HTTP ${lastError.status}` : ''}); POST /v1/calls/{id}/retry re-drives it`
        : null) ??
      (callId === null ? 'never created' : input.waitProblems.get(callId)) ??
      (view ? `callsync reports ${view.state}` : 'not in the CRM');
  } else if (outcome !== plan.expectedOutcome) {
    problem = `outcome ${outcome ?? 'none'}, expected ${plan.expectedOutcome}`;
  }
  return {
    roomName: plan.roomName,
    callId,
    topic: plan.topic,
    plannedEnding: plan.ending,
    endReason: view?.endReason ?? null,
    crmFault: plan.crmFault,
    withLead: plan.lead !== null,
    expectedOutcome: plan.expectedOutcome,
    state: view?.state ?? null,
    outcome,
    deliverySeconds,
    reachedCrm,
    problem,
    warnings: run.warnings,
  };
}

export function buildSummary(input: SummaryInput): DemoSummary {
  const { received } = input;
  const callDataIds = new Set(received.callData.map((item) => item.callId));
  const rows = input.runs.map((run) => rowOf(run, input, callDataIds));
  const count = (predicate: (row: CallRow) => boolean) => rows.filter(predicate).length;
  const seconds = rows
    .map((row) => row.deliverySeconds)
    .filter((value): value is number => value !== null)
    .sort((a, b) => a - b);
  const faultsByKind: Record<string, number> = {};
  for (const applied of received.faults) {
    const label = describeFault(applied);
    faultsByKind[label] = (faultsByKind[label] ?? 0) + 1;
  }
  // A call that met a fault and still made it, lead and all: its journal shows the retry.
  const faulted = new Set(received.faults.map((applied) => applied.idempotencyKey?.split(':')[0]));
  const sample =
    rows.find((row) => row.outcome === 'delivered' && row.withLead && faulted.has(row.callId ?? undefined)) ??
    rows.find((row) => row.outcome === 'delivered') ??
    rows.find((row) => row.callId !== null);
  const missing = rows
    .filter((row) => !row.reachedCrm)
    .map((row) => ({ roomName: row.roomName, callId: row.callId, reason: row.problem ?? 'unknown' }));

  return {
    ok: rows.length > 0 && missing.length === 0,
    wallSeconds: input.wallSeconds,
    calls: {
      total: rows.length,
      reachedCrm: count((row) => row.reachedCrm),
      delivered: count((row) => row.outcome === 'delivered'),
      partial: count((row) => row.outcome === 'partial'),
      failed: count((row) => row.outcome === 'failed'),
      unfinished: count((row) => row.outcome === null),
      asDesigned: count((row) => row.outcome === row.expectedOutcome),
      endedByAgent: count((row) => row.endReason === 'agent_end'),
      endedByRoomFinished: count((row) => row.endReason === 'room_finished'),
      withLead: count((row) => row.withLead),
    },
    delivery: {
      targetSeconds: input.targetSeconds,
      samples: seconds.length,
      p50Seconds: percentile(seconds, 50),
      p95Seconds: percentile(seconds, 95),
      maxSeconds: seconds.at(-1) ?? null,
      withinTarget: seconds.filter((value) => value <= input.targetSeconds).length,
    },
    crm: {
      callDataDocuments: received.callData.length,
      recordings: received.uploads.length,
      recordingBytes: received.uploads.reduce((sum, upload) => sum + upload.sizeBytes, 0),
      requests: { upload: received.requests.upload, callData: received.requests['call-data'] },
      duplicatesReplayed: received.duplicates.upload + received.duplicates['call-data'],
      faultsApplied: received.faults.length,
      faultsByKind,
    },
    callsyncRetries: input.retries,
    missingReasons: input.missingReasons ?? {},
    storage: input.storage ?? null,
    urls: {
      ...input.urls,
      metrics: `${input.urls.app}/metrics`,
      crmReceived: `${input.urls.crm}/_sandbox/received`,
      sampleCall: sample?.callId ? `${input.urls.app}/v1/calls/${sample.callId}` : null,
    },
    rows,
    missing,
  };
}

// -------------------------------------------------------------------------------------------
// Printing

const secondsText = (value: number | null) => (value === null ? '–' : `${value.toFixed(2)} s`);

function bytesText(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** Where recordings lived, for the headline. */
function storageHeadline(storage: DemoStorageReadout | null): string {
  if (storage === null) return '';
  return storage.kind === 's3'
    ? ', recordings in S3 (s3rver, egress in LiveKit Cloud mode)'
    : ', recordings on a shared volume';
}

function storageLines(
  storage: DemoStorageReadout | null,
  line: (label: string, value: string | number, note?: string) => string,
): string[] {
  if (storage === null) return [];
  const out = ['', 'Recordings storage', line('storage', storage.kind, storage.description)];
  if (storage.bucketObjects !== null) {
    out.push(
      line(
        'egress uploads',
        storage.egressUploads,
        `to the bucket, with the settings in each egress request${storage.cloudMode ? ' (LiveKit Cloud mode: one without them is refused)' : ''}`,
      ),
    );
    if (storage.egressUploadFailures > 0) {
      out.push(line('egress upload failures', storage.egressUploadFailures));
    }
    const { count, bytes, sampleKey } = storage.bucketObjects;
    out.push(
      line('objects in the bucket', count, `${bytesText(bytes)}${sampleKey ? `, e.g. ${sampleKey}` : ''}`),
      line(
        'local files',
        storage.localFiles,
        "on the egress host's disk; callsync's CALLSYNC_RECORDINGS_DIR does not exist",
      ),
    );
  } else {
    out.push(line('files on the volume', storage.localFiles, 'written by the egress, read by callsync'));
  }
  out.push(line('readiness', storage.readiness, 'GET /readyz storage check'));
  return out;
}

export interface FormatOptions {
  /** Whether the services stay up after the summary (`--keep-running`). */
  keepRunning: boolean;
  /** The demo's temp dir, shown when it is kept. */
  dir?: string | undefined;
}

export function formatSummary(summary: DemoSummary, options: FormatOptions): string {
  const { calls, delivery, crm, callsyncRetries: retries, urls } = summary;
  const line = (label: string, value: string | number, note = '') =>
    `  ${label.padEnd(22)}${String(value).padStart(8)}${note ? `   ${note}` : ''}`;
  const faults = Object.entries(crm.faultsByKind)
    .map(([label, times]) => `${label} ×${times}`)
    .join(', ');
  const reasons = Object.entries(summary.missingReasons)
    .map(([reason, times]) => `${reason} ×${times}`)
    .join(', ');
  const partialNote = reasons
    ? `call data, recording fields null; callsync_recordings_missing_total: ${reasons}`
    : 'call data, recording fields null (egress failed, as designed)';
  const out = [
    '',
    `callsync demo: ${calls.total} calls, LiveKit emulator → callsync → CRM sandbox${storageHeadline(summary.storage)}, in ${summary.wallSeconds.toFixed(1)} s`,
    '',
    'Calls (GET /v1/calls/{id})',
    line('reached the CRM', `${calls.reachedCrm}/${calls.total}`, 'a call-data document in the CRM sandbox'),
    line('delivered', calls.delivered, 'recording + call data'),
    line('partial', calls.partial, partialNote),
    line('failed', calls.failed),
    ...(calls.unfinished > 0 ? [line('unfinished', calls.unfinished, 'no final state by the deadline')] : []),
    line('outcome as designed', `${calls.asDesigned}/${calls.total}`),
    line('ended by the agent', calls.endedByAgent, 'POST /v1/calls/{id}/end'),
    line('ended by hang-up', calls.endedByRoomFinished, 'LiveKit room_finished, no end from the agent'),
    line('with a lead', calls.withLead, 'POST /v1/calls/{id}/leads'),
    '',
    `Call end → CRM acknowledged the call data (target ${delivery.targetSeconds} s, ${delivery.samples} calls)`,
    `  p50 ${secondsText(delivery.p50Seconds)}   p95 ${secondsText(delivery.p95Seconds)}   max ${secondsText(delivery.maxSeconds)}   within target ${delivery.withinTarget}/${delivery.samples}`,
    '',
    'CRM sandbox',
    line('call-data documents', crm.callDataDocuments),
    line('recordings', crm.recordings, `${bytesText(crm.recordingBytes)} of audio/ogg`),
    line(
      'requests',
      crm.requests.upload + crm.requests.callData,
      `upload ${crm.requests.upload}, call-data ${crm.requests.callData}`,
    ),
    line('faults applied', crm.faultsApplied, faults),
    line(
      'retries by callsync',
      retries.upload + retries.callData,
      `callsync_crm_retries_total: upload ${retries.upload}, call_data ${retries.callData}`,
    ),
    line('duplicates replayed', crm.duplicatesReplayed, 'same Idempotency-Key seen again'),
    ...storageLines(summary.storage, line),
    '',
    'Where to look',
    `  metrics          ${urls.metrics}`,
    `  CRM read-out     ${urls.crmReceived}`,
    ...(urls.sampleCall ? [`  a call           ${urls.sampleCall}`] : []),
    `  LiveKit (Twirp)  ${urls.liveKit}`,
    ...(urls.s3 ? [`  S3 (s3rver)      ${urls.s3}`] : []),
    options.keepRunning
      ? `  Services stay up until Ctrl-C.${options.dir ? ` Store, recordings and CRM files: ${options.dir}` : ''}`
      : '  (services stopped; run `npm run demo -- --keep-running` to keep them up and curl these)',
    '',
  ];
  if (summary.missing.length > 0) {
    out.push(`FAILED: ${summary.missing.length} call(s) did not reach the CRM:`);
    for (const call of summary.missing)
      out.push(`  ${call.roomName}  ${call.callId ?? '(no call id)'}  ${call.reason}`);
  } else if (summary.ok) {
    out.push(`OK: ${calls.total === 1 ? 'the call' : `all ${calls.total} calls`} reached the CRM.`);
  } else {
    out.push('FAILED: no calls were run.');
  }
  for (const row of summary.rows) {
    const notes = [...(row.reachedCrm && row.problem !== null ? [row.problem] : []), ...row.warnings];
    for (const note of notes) out.push(`  note: ${row.roomName} ${row.callId ?? '(no call id)'}: ${note}`);
  }
  return `${out.join('\n')}\n`;
}
