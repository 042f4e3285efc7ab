/**
 * An independent oracle for the call machine: what the CRM must receive for a sequence of events.
 *
 * Written from the README ("What reaches the CRM", the `recording_missing_reason` table, the
 * environment table's defaults) and the documented rules in the headers of `retry-policy.ts`,
 * `recording-policy.ts`, `egress-wait-policy.ts` and `defaults.ts` (`DEFAULT_CALL_LIMITS`), never from the machine's
 * code: every number below is restated, and nothing here imports a value from `src/` (only
 * types). A wrong rule in the machine or its policies therefore disagrees with this file instead
 * of agreeing with itself.
 *
 * Two parts:
 *
 * - The rules, as small pure functions: which transcript items (deduplicated by id, first wins,
 *   in timestamp order, arrival order for ties), which lead (the latest linked; linking again
 *   replaces), delivered or partial (the partial rule), the egress deadline (end + 120 s), the
 *   per-attempt timeouts, the retry lanes (as windows: the jitter is unknown but bounded) and the
 *   attempt limits.
 * - `checkRun`: walks the record of one driven call (the inputs the driver gave, with the times
 *   it gave them, and every CRM request it saw) and lists every way the CRM's view differs from
 *   what the rules demand. Where a rule allows a range (jitter, an egress seen by poll within
 *   one poll interval) the check accepts the range and then measures onwards from what it saw.
 *
 * Timing conventions the driver keeps (`reference-model.property.test.ts`): at each instant,
 * timers due then fire first, then effects due then are answered, then the scenario's events due
 * then are delivered, and a crash comes last, after everything at its instant has happened. A
 * crash keeps the last persisted snapshot; the restored actor resumes at `restoreAt`, where every
 * timer whose time passed fires at once (timers hold absolute times) and an attempt that was in
 * flight is sent again (same attempt, same absolute deadline).
 */
import type { CallStatus, DeliveredRecording, TranscriptItem } from '../../src/payload/call-data.ts';
import type { EgressFile, EgressOutcome } from '../../src/machines/call.types.ts';

// ---------------------------------------------------------------------------------------------
// The documented numbers, restated

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

export const DOCUMENTED = {
  /** README, `CALLSYNC_EGRESS_DEADLINE_SECONDS` default 120: after the call's end. */
  egressDeadlineMs: 120 * SECOND,
  /** `DEFAULT_CALL_LIMITS.egressPollIntervalMs`: `ListEgress` once a second while waiting. */
  egressPollIntervalMs: 1 * SECOND,
  /** README: StartEgress gets three attempts. */
  egressStartAttempts: 3,
  /** `DEFAULT_CALL_LIMITS.uploadAttemptTimeoutMs`: one upload attempt, before the size allowance. */
  uploadAttemptBaseMs: 60 * SECOND,
  /** README: "a base plus the size at 256 KiB/s". */
  uploadBytesPerSecond: 256 * 1024,
  /** `DEFAULT_CALL_LIMITS.postAttemptTimeoutMs`: one call-data POST attempt. */
  postAttemptTimeoutMs: 10 * SECOND,
  /** README: fast lane 0.1, 0.25, 0.5, 1, 2, 4 s ±20 %. */
  fastLaneMs: [100, 250, 500, 1 * SECOND, 2 * SECOND, 4 * SECOND] as readonly number[],
  fastLaneJitter: 0.2,
  /** README: slow lane 1 min, 5 min, 30 min, 2 h, 5 h, then 10 h six times, ±10 %. */
  slowLaneMs: [
    1 * MINUTE,
    5 * MINUTE,
    30 * MINUTE,
    2 * HOUR,
    5 * HOUR,
    ...Array.from({ length: 6 }, () => 10 * HOUR),
  ] as readonly number[],
  slowLaneJitter: 0.1,
  /** README: errors of the recording's source get the fast lane only: 7 attempts. */
  recordingSourceAttempts: 7,
  /** retry-policy header: a server's `Retry-After` is capped at the longest slow-lane step. */
  maxRetryAfterMs: 10 * HOUR,
} as const;

/** Attempts in all for a CRM step: the first plus one per scheduled wait (18). */
export const MAX_ATTEMPTS = 1 + DOCUMENTED.fastLaneMs.length + DOCUMENTED.slowLaneMs.length;

export type Step = 'recording' | 'call-data';

/** The wait after failed attempt `attempt` (1-based), as the window the jitter allows. */
export function retryWait(attempt: number, retryAfterMs?: number): { lo: number; hi: number } {
  const fast = attempt <= DOCUMENTED.fastLaneMs.length;
  const base = fast
    ? DOCUMENTED.fastLaneMs[attempt - 1]!
    : (DOCUMENTED.slowLaneMs[attempt - 1 - DOCUMENTED.fastLaneMs.length] ?? 10 * HOUR);
  const jitter = fast ? DOCUMENTED.fastLaneJitter : DOCUMENTED.slowLaneJitter;
  const asked =
    retryAfterMs !== undefined && retryAfterMs > 0
      ? Math.min(Math.ceil(retryAfterMs), DOCUMENTED.maxRetryAfterMs)
      : 0;
  return {
    lo: Math.max(Math.round(base * (1 - jitter)), asked),
    hi: Math.max(Math.round(base * (1 + jitter)), asked),
  };
}

/** Error codes of the recording's source (the volume or the store), not of the CRM. */
export function isRecordingSourceCode(code: string): boolean {
  return code.startsWith('RECORDING') || code.startsWith('STORAGE_');
}

/** How many attempts a step gets when its latest failure has this code. */
export function attemptsAllowed(step: Step, code: string): number {
  return step === 'recording' && isRecordingSourceCode(code)
    ? DOCUMENTED.recordingSourceAttempts
    : MAX_ATTEMPTS;
}

/** One upload attempt's deadline: the base plus the file's size at 256 KiB/s. */
export function uploadAttemptTimeoutMs(sizeBytes: number | undefined): number {
  const size = sizeBytes !== undefined && sizeBytes > 0 ? sizeBytes : 0;
  return DOCUMENTED.uploadAttemptBaseMs + Math.ceil((size / DOCUMENTED.uploadBytesPerSecond) * 1000);
}

// ---------------------------------------------------------------------------------------------
// The partial rule (README's `recording_missing_reason` table)

export type MissingReason =
  | 'egress_failed'
  | 'egress_aborted'
  | 'egress_not_started'
  | 'egress_timed_out'
  | 'file_missing'
  | 'file_not_ogg'
  | 'file_outside_root'
  | 'storage_refused'
  | 'storage_unavailable'
  | 'crm_refused'
  | 'crm_unavailable';

/** How the wait for the egress ended. */
export type EgressEnd =
  { kind: 'final'; outcome: EgressOutcome } | { kind: 'timed_out' } | { kind: 'not_started' };

export type RecordingVerdict =
  { upload: EgressFile; egressStatus: string } | { missing: MissingReason; egressStatus: string };

/**
 * The file to upload, or why there is none. COMPLETE and LIMIT_REACHED deliver the file they
 * report; a FAILED egress delivers a file it still reports as uploaded (a location, or bytes
 * written); ABORTED never does.
 */
export function recordingVerdict(end: EgressEnd): RecordingVerdict {
  if (end.kind === 'not_started') return { missing: 'egress_not_started', egressStatus: 'not_started' };
  if (end.kind === 'timed_out') return { missing: 'egress_timed_out', egressStatus: 'timed_out' };
  const { status, file } = end.outcome;
  const named = file !== null && file !== undefined && file.filename !== '';
  switch (status) {
    case 'complete':
    case 'limit_reached':
      return named
        ? { upload: file, egressStatus: status }
        : { missing: 'file_missing', egressStatus: status };
    case 'failed':
      return named && (file.location !== '' || (file.sizeBytes ?? 0) > 0)
        ? { upload: file, egressStatus: status }
        : { missing: 'egress_failed', egressStatus: status };
    case 'aborted':
      return { missing: 'egress_aborted', egressStatus: status };
    case 'active':
      throw new Error('an active egress has not ended');
  }
}

/** Source error codes the README's table names, by the reason it gives them. */
const SOURCE_REASONS: Readonly<Record<string, MissingReason>> = {
  RECORDING_NOT_FOUND: 'file_missing',
  RECORDING_INVALID: 'file_not_ogg',
  RECORDING_SIZE_MISMATCH: 'file_not_ogg',
  RECORDING_OUTSIDE_ROOT: 'file_outside_root',
  STORAGE_ACCESS_DENIED: 'storage_refused',
};

/** Why the recording step gave up on this (last) error. */
export function missingReasonOfUploadError(code: string, retryable: boolean): MissingReason {
  const known = SOURCE_REASONS[code];
  if (known !== undefined) return known;
  if (isRecordingSourceCode(code)) return 'storage_unavailable';
  // The CRM's own answers, and attempts it never answered in time (a network error).
  return retryable ? 'crm_unavailable' : 'crm_refused';
}

// ---------------------------------------------------------------------------------------------
// What the call data carries

export interface ExpectedConversationItem {
  role: 'user' | 'assistant';
  content: string;
  timestamp: string;
  source: string;
  transcript_confidence: number | null;
}

/** Every accepted item once (first wins), in timestamp order, arrival order for ties. */
export function expectedTranscript(
  batches: readonly (readonly TranscriptItem[])[],
): ExpectedConversationItem[] {
  const kept = new Map<string, { item: TranscriptItem; arrival: number }>();
  for (const batch of batches) {
    for (const item of batch) if (!kept.has(item.id)) kept.set(item.id, { item, arrival: kept.size });
  }
  return [...kept.values()]
    .sort((a, b) => Date.parse(a.item.timestamp) - Date.parse(b.item.timestamp) || a.arrival - b.arrival)
    .map(({ item }) => ({
      role: item.role,
      content: item.content,
      timestamp: new Date(Date.parse(item.timestamp)).toISOString(),
      source: 'livekit-session',
      transcript_confidence: item.transcriptConfidence ?? null,
    }));
}

export interface LeadLink {
  leadId: string;
  data: Record<string, unknown>;
}

/** The latest linked lead (`{}` if none; its own id wins over a `leadId` in its data), and all ids. */
export function expectedLead(links: readonly LeadLink[]): {
  lead: Record<string, unknown>;
  generated: boolean;
  ids: string[];
} {
  const latest = links.at(-1);
  return {
    lead: latest === undefined ? {} : { ...latest.data, leadId: latest.leadId },
    generated: links.length > 0,
    ids: [...new Set(links.map((link) => link.leadId))].sort(),
  };
}

// ---------------------------------------------------------------------------------------------
// The record of one driven call

export type CrmAnswer =
  | { kind: 'ok'; latencyMs: number; recording?: DeliveredRecording | undefined }
  | { kind: 'error'; latencyMs: number; code: string; retryable: boolean; retryAfterMs?: number | undefined }
  | { kind: 'hang' };

export type StartAnswer = 'ok' | 'retryable' | 'fatal';

/** What the driver did and saw, in order (`seq`), with the simulated time (`at`). */
export type TraceEntry = { seq: number; at: number } & (
  | { kind: 'transcript'; items: TranscriptItem[]; accepted: boolean }
  | { kind: 'lead'; leadId: string; data: Record<string, unknown>; accepted: boolean }
  | { kind: 'end'; trigger: 'agent' | 'room_finished'; endedAt: string; status: CallStatus }
  | { kind: 'webhook'; egressId: string; outcome: EgressOutcome }
  | { kind: 'retry' }
  | { kind: 'crash'; restoreAt: number }
  | { kind: 'request'; step: Step; id: number; body: unknown }
  | { kind: 'settled'; id: number; how: 'answered' | 'aborted' }
);

export interface RunRecord {
  /** The call as created (`POST /v1/calls`). */
  call: {
    callId: string;
    callerNumber: string;
    startedAt: string;
    campaignId: string;
    voiceAgentId: string;
    client: string;
  };
  /** The egress id LiveKit gives a started egress. */
  egressId: string;
  /** LiveKit's truth: when the egress reached its final status (`null`: not within the run). */
  egressFinalAt: number | null;
  egressOutcome: EgressOutcome;
  /** How long each `ListEgress` poll takes to answer. */
  pollLatencyMs: number;
  startAnswers: readonly StartAnswer[];
  /** The CRM's answers, by request (the n-th `/upload` or `/call-data` request gets the n-th). */
  uploadAnswers: readonly CrmAnswer[];
  callDataAnswers: readonly CrmAnswer[];
  /** What the CRM answers an upload with when the script says only `ok`. */
  defaultRecording: DeliveredRecording;
  trace: readonly TraceEntry[];
  final: {
    state: 'done' | 'failed' | 'other';
    outcome: string | null;
    /** The machine's count of finished CRM attempts per step (`CallContext.attempts`). */
    attempts: Readonly<Record<Step, number>>;
  };
}

const OK: CrmAnswer = { kind: 'ok', latencyMs: 0 };

type Entry<K extends TraceEntry['kind']> = Extract<TraceEntry, { kind: K }>;

function ofKind<K extends TraceEntry['kind']>(trace: readonly TraceEntry[], kind: K): Entry<K>[] {
  return trace.filter((entry): entry is Entry<K> => entry.kind === kind);
}

/** The time the call is running again at or after `t` (a crash at `c` is down in (c, restoreAt)). */
function upAt(t: number, crashes: readonly Entry<'crash'>[]): number {
  let time = t;
  for (let changed = true; changed;) {
    changed = false;
    for (const crash of crashes) {
      if (crash.at < time && time < crash.restoreAt) {
        time = crash.restoreAt;
        changed = true;
      }
    }
  }
  return time;
}

/** StartEgress in the first seconds of the call (no crash, no event there): did it start? */
function egressStarted(answers: readonly StartAnswer[]): boolean {
  for (let attempt = 0; attempt < DOCUMENTED.egressStartAttempts; attempt += 1) {
    const answer = answers[attempt] ?? 'ok';
    if (answer === 'ok') return true;
    if (answer === 'fatal') return false;
  }
  return false;
}

interface Settlement {
  end: EgressEnd;
  /** When the wait for the egress may end, inclusive. */
  lo: number;
  hi: number;
}

/** Every way the wait for the egress may end for these inputs (two only at a knife's edge). */
function settlements(run: RunRecord, end: Entry<'end'>, crashes: readonly Entry<'crash'>[]): Settlement[] {
  const at = (time: number, egressEnd: EgressEnd): Settlement => ({ end: egressEnd, lo: time, hi: time });
  const endAt = end.at;
  if (!egressStarted(run.startAnswers)) return [at(endAt, { kind: 'not_started' })];
  const ownFinal = ofKind(run.trace, 'webhook').filter(
    (hook) => hook.egressId === run.egressId && hook.outcome.status !== 'active',
  );
  // The egress died during the call and said so: nothing to wait for.
  const reported = ownFinal.filter((hook) => hook.seq < end.seq).at(-1);
  if (reported !== undefined) return [at(endAt, { kind: 'final', outcome: reported.outcome })];
  const finalAt = run.egressFinalAt;
  const deadline = upAt(endAt + DOCUMENTED.egressDeadlineMs, crashes);
  const timedOut = at(deadline, { kind: 'timed_out' });
  if (finalAt === null) return [timedOut];
  // Seen by the first poll answered after it is final: the first poll one interval after the
  // stop is answered (at once if the stop failed or found it ended), then one interval after
  // each answer, each taking `pollLatencyMs`; a restore polls again.
  const from = Math.max(finalAt, endAt);
  const latency = run.pollLatencyMs;
  const pollHi = upAt(upAt(from, crashes) + DOCUMENTED.egressPollIntervalMs + latency, crashes) + latency;
  const hook = ownFinal.find((entry) => entry.seq > end.seq);
  const learned: Settlement = {
    end: { kind: 'final', outcome: run.egressOutcome },
    lo: from,
    hi: Math.min(pollHi, hook?.at ?? Number.POSITIVE_INFINITY),
  };
  if (learned.hi < deadline) return [learned];
  if (learned.lo > deadline) return [timedOut];
  return [learned, timedOut];
}

interface StepResult {
  ended: 'ack' | 'gave_up' | 'unfinished';
  at: number;
  /** Requests of this step used, from `from`. */
  next: number;
  /** Attempts that finished (answered or timed out; not those lost to a crash and sent again). */
  finished: number;
  answer?: CrmAnswer | undefined;
  error?: { code: string; retryable: boolean } | undefined;
}

/**
 * One CRM step: its first request in `[lo, hi]`, then each attempt's fate (answered, timed out,
 * or lost to a crash and sent again at the restore), the retry windows and the attempt limit.
 */
function checkStep(
  step: Step,
  requests: readonly Entry<'request'>[],
  from: number,
  first: { lo: number; hi: number },
  answers: readonly CrmAnswer[],
  timeoutMs: number,
  run: RunRecord,
  problems: string[],
): StepResult {
  const crashes = ofKind(run.trace, 'crash');
  const settledById = new Map(ofKind(run.trace, 'settled').map((entry) => [entry.id, entry]));
  let expected: (time: number) => boolean = (time) => first.lo <= time && time <= first.hi;
  let describe = `in [${first.lo}, ${first.hi}]`;
  let attempt = 1;
  let deadline = Number.NaN;
  let resent = false;
  for (let index = from; ; index += 1) {
    const request = requests[index];
    const finished = attempt - 1;
    if (request === undefined) {
      problems.push(`${step}: expected attempt ${attempt} ${describe}, but no request came`);
      return { ended: 'unfinished', at: Number.NaN, next: index, finished };
    }
    if (!expected(request.at)) {
      problems.push(`${step}: attempt ${attempt} was sent at ${request.at}, expected ${describe}`);
      return { ended: 'unfinished', at: request.at, next: index + 1, finished };
    }
    if (!resent) deadline = request.at + timeoutMs;
    const answer = answers[index] ?? OK;
    const answerAt = answer.kind === 'hang' ? Number.POSITIVE_INFINITY : request.at + answer.latencyMs;
    // A restored attempt whose deadline passed while down times out at once.
    const timeoutAt = Math.max(deadline, request.at);
    const observed = settledById.get(request.id);
    const expectSettled = (how: 'answered' | 'aborted', time: number, why: string) => {
      if (observed?.how !== how || observed.at !== time) {
        const saw = observed === undefined ? 'still in flight' : `${observed.how} at ${observed.at}`;
        problems.push(
          `${step}: attempt ${attempt} (sent at ${request.at}) should be ${why} at ${time}; ${saw}`,
        );
      }
    };
    const crash = crashes.find(
      (entry) => entry.seq > request.seq && entry.at < Math.min(answerAt, timeoutAt),
    );
    if (crash !== undefined) {
      expectSettled('aborted', crash.at, 'lost to the crash');
      expected = (time) => time === crash.restoreAt;
      describe = `again at the restore (${crash.restoreAt})`;
      resent = true;
      continue;
    }
    let failure: { at: number; code: string; retryable: boolean; retryAfterMs?: number | undefined };
    if (answerAt < timeoutAt) {
      expectSettled('answered', answerAt, 'answered');
      if (answer.kind === 'ok')
        return { ended: 'ack', at: answerAt, next: index + 1, finished: attempt, answer };
      if (answer.kind === 'hang') throw new Error('unreachable: a hung attempt is never answered');
      failure = {
        at: answerAt,
        code: answer.code,
        retryable: answer.retryable,
        retryAfterMs: answer.retryAfterMs,
      };
    } else {
      expectSettled('aborted', timeoutAt, `abandoned (its ${timeoutMs} ms deadline)`);
      failure = { at: timeoutAt, code: 'ATTEMPT_TIMEOUT', retryable: true };
    }
    if (!failure.retryable || attempt >= attemptsAllowed(step, failure.code)) {
      return { ended: 'gave_up', at: failure.at, next: index + 1, finished: attempt, error: failure };
    }
    const wait = retryWait(attempt, failure.retryAfterMs);
    const lo = failure.at + wait.lo;
    const hi = failure.at + wait.hi;
    const failedAt = failure.at;
    // The backoff's time is absolute: a restore after it retries at once.
    expected = (time) =>
      (lo <= time && time <= hi) ||
      crashes.some(
        (entry) => entry.at >= failedAt && time === entry.restoreAt && lo < entry.restoreAt && hi > entry.at,
      );
    describe = `in [${lo}, ${hi}] (${wait.lo}–${wait.hi} ms after failing at ${failure.at})`;
    attempt += 1;
    resent = false;
  }
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

interface CallDataExpectation {
  conversation: ExpectedConversationItem[];
  lead: ReturnType<typeof expectedLead>;
  recording: DeliveredRecording | null;
  missing: MissingReason | null;
  egressStatus: string;
  end: Entry<'end'>;
}

function checkDocument(
  body: unknown,
  expected: CallDataExpectation,
  run: RunRecord,
  problems: string[],
): void {
  const document = (body as { document?: Record<string, unknown> }).document as
    | {
        campaignId: unknown;
        voiceAgentId: unknown;
        client: unknown;
        callDetails: Record<string, unknown>;
        caller: Record<string, unknown>;
        transcription: Record<string, unknown> & { metadata: Record<string, unknown> };
        lead: unknown;
      }
    | undefined;
  if (document === undefined) {
    problems.push('call-data: the request carries no document');
    return;
  }
  const { recording } = expected;
  const want: Array<[string, unknown, unknown]> = [
    ['campaignId', document.campaignId, run.call.campaignId],
    ['voiceAgentId', document.voiceAgentId, run.call.voiceAgentId],
    ['client', document.client, run.call.client],
    ['callDetails.callId', document.callDetails.callId, run.call.callId],
    ['callDetails.startTime', document.callDetails.startTime, run.call.startedAt],
    [
      'callDetails.endTime',
      document.callDetails.endTime,
      new Date(Date.parse(expected.end.endedAt)).toISOString(),
    ],
    ['callDetails.status', document.callDetails.status, expected.end.status],
    ['callDetails.callerNumber', document.callDetails.callerNumber, run.call.callerNumber],
    ['caller.phoneNumber', document.caller.phoneNumber, run.call.callerNumber],
    ['callDetails.recordingUrl', document.callDetails.recordingUrl, recording?.url ?? null],
    [
      'callDetails.recordingDuration',
      document.callDetails.recordingDuration,
      recording === null ? null : Math.round(recording.durationSeconds),
    ],
    ['callDetails.recordingSize', document.callDetails.recordingSize, recording?.sizeBytes ?? null],
    ['transcription.conversation_items', document.transcription.conversation_items, expected.conversation],
    ['transcription.total_items', document.transcription.total_items, expected.conversation.length],
    ['transcription.lead_generated', document.transcription.lead_generated, expected.lead.generated],
    ['lead', document.lead, expected.lead.lead],
    [
      'transcription.metadata.lead_ids',
      (document.transcription.metadata.lead_ids as string[] | undefined)?.slice().sort(),
      expected.lead.ids.length > 1 ? expected.lead.ids : undefined,
    ],
    [
      'transcription.metadata.recording_missing_reason',
      document.transcription.metadata.recording_missing_reason,
      expected.missing,
    ],
    [
      'transcription.metadata.egress_status',
      document.transcription.metadata.egress_status,
      expected.egressStatus,
    ],
    [
      'transcription.metadata.end_reason',
      document.transcription.metadata.end_reason,
      expected.end.trigger === 'agent' ? 'agent_end' : 'room_finished',
    ],
  ];
  for (const [path, actual, wanted] of want) {
    if (!sameJson(actual, wanted)) {
      problems.push(`call-data: ${path} is ${JSON.stringify(actual)}, expected ${JSON.stringify(wanted)}`);
    }
  }
}

/** Everything after the egress wait, for one way it may have ended. */
function checkDelivery(run: RunRecord, settlement: Settlement, end: Entry<'end'>): string[] {
  const problems: string[] = [];
  const requests = ofKind(run.trace, 'request');
  const uploads = requests.filter((request) => request.step === 'recording');
  const posts = requests.filter((request) => request.step === 'call-data');

  // Items and leads: accepted exactly until the call data is built (then 409 CALL_DATA_SENT).
  const built = posts[0]?.seq ?? Number.POSITIVE_INFINITY;
  const batches: TranscriptItem[][] = [];
  const links: LeadLink[] = [];
  for (const entry of run.trace) {
    if (entry.kind !== 'transcript' && entry.kind !== 'lead') continue;
    const shouldAccept = entry.seq < built;
    if (entry.accepted !== shouldAccept) {
      problems.push(
        `${entry.kind} at ${entry.at} was ${entry.accepted ? 'accepted' : 'refused'}, but the call data was ${shouldAccept ? 'not yet' : 'already'} built`,
      );
    }
    if (!shouldAccept) continue;
    if (entry.kind === 'transcript') batches.push(entry.items);
    else links.push({ leadId: entry.leadId, data: entry.data });
  }

  const verdict = recordingVerdict(settlement.end);
  const attempts: Record<Step, number> = { recording: 0, 'call-data': 0 };
  let recording: DeliveredRecording | null = null;
  let missing: MissingReason | null = null;
  let postsFrom: { lo: number; hi: number };
  if ('upload' in verdict) {
    for (const upload of uploads) {
      const file = (upload.body as { file?: unknown }).file;
      if (!sameJson(file, verdict.upload)) {
        problems.push(
          `recording: uploaded ${JSON.stringify(file)}, expected ${JSON.stringify(verdict.upload)}`,
        );
      }
    }
    const result = checkStep(
      'recording',
      uploads,
      0,
      settlement,
      run.uploadAnswers,
      uploadAttemptTimeoutMs(verdict.upload.sizeBytes),
      run,
      problems,
    );
    if (result.ended === 'unfinished') return problems;
    attempts.recording = result.finished;
    if (result.next < uploads.length) {
      problems.push(`recording: ${uploads.length - result.next} request(s) after the step ${result.ended}`);
    }
    if (result.ended === 'ack') {
      recording =
        (result.answer?.kind === 'ok' ? result.answer.recording : undefined) ?? run.defaultRecording;
    } else {
      missing = missingReasonOfUploadError(result.error?.code ?? '', result.error?.retryable ?? false);
    }
    postsFrom = { lo: result.at, hi: result.at };
  } else {
    if (uploads.length > 0) problems.push(`recording: uploaded although ${verdict.missing}`);
    missing = verdict.missing;
    postsFrom = settlement;
  }

  const expectation: CallDataExpectation = {
    conversation: expectedTranscript(batches),
    lead: expectedLead(links),
    recording,
    missing,
    egressStatus: verdict.egressStatus,
    end,
  };
  for (const post of posts) checkDocument(post.body, expectation, run, problems);

  // The call data, then an operator's RETRY of each `failed`.
  const retries = ofKind(run.trace, 'retry');
  let from = 0;
  let window = postsFrom;
  let expectedFinal: { state: 'done' | 'failed'; outcome: string | null };
  for (;;) {
    const result = checkStep(
      'call-data',
      posts,
      from,
      window,
      run.callDataAnswers,
      DOCUMENTED.postAttemptTimeoutMs,
      run,
      problems,
    );
    if (result.ended === 'unfinished') return problems;
    attempts['call-data'] += result.finished;
    from = result.next;
    if (result.ended === 'ack') {
      expectedFinal = { state: 'done', outcome: recording === null ? 'partial' : 'delivered' };
      break;
    }
    const failedAt = result.at;
    const retry = retries.find((entry) => entry.at >= failedAt && entry.seq > (posts[from - 1]?.seq ?? 0));
    if (retry === undefined) {
      expectedFinal = { state: 'failed', outcome: null };
      break;
    }
    window = { lo: retry.at, hi: retry.at };
  }
  if (from < posts.length) problems.push(`call-data: ${posts.length - from} request(s) after the step ended`);
  if (
    run.final.state !== expectedFinal.state ||
    (expectedFinal.state === 'done' && run.final.outcome !== expectedFinal.outcome)
  ) {
    problems.push(
      `the call ended ${run.final.state}/${run.final.outcome}, expected ${expectedFinal.state}/${expectedFinal.outcome}`,
    );
  }
  if (!sameJson(run.final.attempts, attempts)) {
    problems.push(
      `the call counted attempts ${JSON.stringify(run.final.attempts)}, expected ${JSON.stringify(attempts)}`,
    );
  }
  return problems;
}

/** Every way the CRM's view of this run differs from the rules; empty when it agrees. */
export function checkRun(run: RunRecord): string[] {
  const end = ofKind(run.trace, 'end')[0];
  if (end === undefined) return ['the scenario never ended the call'];
  const crashes = ofKind(run.trace, 'crash');
  const candidates = settlements(run, end, crashes);
  let best: string[] | undefined;
  for (const candidate of candidates) {
    const problems = checkDelivery(run, candidate, end);
    if (problems.length === 0) return [];
    best ??= problems;
  }
  return best ?? [];
}
