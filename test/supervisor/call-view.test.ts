/**
 * The read model of `GET /v1/calls` and `GET /v1/calls/{id}` (`src/supervisor/call-view.ts`):
 * expected views are written out field by field from the documented JSON shape (ISO-8601 times
 * at top level, `null` for what the call has not reached, lead ids, attempts), not taken from
 * the builders' output.
 */
import { describe, expect, it } from 'vitest';
import type { ErrorInfo } from '../../src/errors.ts';
import type { CallContext } from '../../src/machines/call.types.ts';
import { DEFAULT_CALL_LIMITS } from '../../src/machines/defaults.ts';
import type { CallRow, StoredJournalEntry } from '../../src/store/call-store.ts';
import { callDetailViewOf, callViewOf, lastAttemptErrorOf } from '../../src/supervisor/call-view.ts';

const T0 = Date.parse('2025-10-29T10:00:00.000Z');
const PERSONA = { campaigns: [{ _id: 'camp_1', client: 'client_1', voiceAgents: [{ _id: 'va_1' }] }] };

const CRM_500: ErrorInfo = {
  code: 'CRM_SERVER_ERROR',
  message: 'CRM answered 500',
  retryable: true,
  status: 500,
};
const CRM_422: ErrorInfo = {
  code: 'CRM_REJECTED',
  message: 'CRM answered 422',
  retryable: false,
  status: 422,
};
const EGRESS_DOWN: ErrorInfo = { code: 'EGRESS_START_FAILED', message: 'no egress', retryable: true };

/** A call that ended at T0+60 s, its recording acknowledged at +65 s and its data at +66 s. */
function deliveredContext(): CallContext {
  return {
    machineVersion: 1,
    call: {
      callId: 'CALL-1',
      sessionId: 'room-1',
      roomName: 'room-1',
      direction: 'outbound',
      callerNumber: '+918655066243',
      config: PERSONA,
      startedAt: '2025-10-29T10:00:00.000Z',
    },
    limits: { ...DEFAULT_CALL_LIMITS },
    createdAt: T0,
    maxCallEndsAt: T0 + DEFAULT_CALL_LIMITS.maxCallDurationMs,
    transcript: [
      { id: 'i1', role: 'assistant', content: 'Hello', timestamp: '2025-10-29T10:00:01.000Z' },
      { id: 'i2', role: 'user', content: 'Hi', timestamp: '2025-10-29T10:00:02.000Z' },
    ],
    leads: [
      { leadId: 'lead-a', data: { name: 'Priya' } },
      { leadId: 'lead-b', data: {} },
    ],
    egress: {
      id: 'EG_1',
      roomSid: 'RM_1',
      startAttempts: 1,
      startDeadlineAt: null,
      startedAttemptAt: T0,
      nextStartAt: null,
      unavailable: false,
      lastError: null,
      reported: null,
      stopError: null,
      polls: 0,
      nextPollAt: null,
      settlement: {
        status: 'complete',
        file: { filename: 'room-1.ogg', location: '/recordings/room-1.ogg' },
        via: 'webhook',
        at: T0 + 62_000,
      },
    },
    end: {
      endedAt: '2025-10-29T10:01:00.000Z',
      endedAtMs: T0 + 60_000,
      status: 'completed',
      reason: 'agent_end',
      detail: null,
      at: T0 + 60_000,
    },
    egressDeadlineAt: null,
    deliverBy: T0 + 90_000,
    recording: { url: 'https://crm.example/files/room-1.ogg', sizeBytes: 4096, durationSeconds: 60 },
    recordingMissing: null,
    recordingAcknowledgedAt: T0 + 65_000,
    callDataAcknowledgedAt: T0 + 66_000,
    delivery: { step: 'call-data', attempt: 2, failures: 1, lastError: CRM_500, nextAttemptAt: null },
    attempts: { recording: 1, 'call-data': 2 },
    failure: null,
    outcome: 'delivered',
    retries: 0,
    restoredAt: null,
  };
}

function rowOf(snapshot: unknown, overrides: Partial<CallRow> = {}): CallRow {
  return {
    callId: 'CALL-1',
    roomName: 'room-1',
    machineVersion: '1',
    state: 'done',
    status: 'done',
    snapshot,
    appliedSeq: 5,
    handledSeq: 5,
    transcriptItems: 7,
    egressId: 'EG_row',
    owner: null,
    createdAt: '2025-10-29T10:00:00.000Z',
    updatedAt: '2025-10-29T10:01:06.000Z',
    ...overrides,
  };
}

/** A stored snapshot: the machine's, without transcript items (they live in the event log). */
function stored(context: CallContext): unknown {
  return { status: 'active', value: 'done', context: { ...context, transcript: [] } };
}

describe('callViewOf', () => {
  it('lists a stored, delivered call: ISO times, lead ids, the row counting the transcript', () => {
    const context = deliveredContext();
    expect(callViewOf(rowOf(stored(context)))).toEqual({
      callId: 'CALL-1',
      roomName: 'room-1',
      state: 'done',
      status: 'done',
      egressId: 'EG_1',
      createdAt: '2025-10-29T10:00:00.000Z',
      updatedAt: '2025-10-29T10:01:06.000Z',
      callerNumber: '+918655066243',
      direction: 'outbound',
      startedAt: '2025-10-29T10:00:00.000Z',
      endedAt: '2025-10-29T10:01:00.000Z',
      endReason: 'agent_end',
      endDetail: null,
      egress: {
        status: 'complete',
        file: { filename: 'room-1.ogg', location: '/recordings/room-1.ogg' },
        via: 'webhook',
        at: T0 + 62_000,
      },
      recording: { url: 'https://crm.example/files/room-1.ogg', sizeBytes: 4096, durationSeconds: 60 },
      recordingAcknowledgedAt: '2025-10-29T10:01:05.000Z',
      callDataAcknowledgedAt: '2025-10-29T10:01:06.000Z',
      outcome: 'delivered',
      transcriptItems: 7,
      leads: ['lead-a', 'lead-b'],
      delivery: { step: 'call-data', attempt: 2, failures: 1, lastError: CRM_500, nextAttemptAt: null },
      attempts: { recording: 1, 'call-data': 2 },
      lastError: CRM_500,
      retries: 0,
    });
  });

  it('keeps the fields in the order the API has always answered them', () => {
    expect(Object.keys(callViewOf(rowOf(stored(deliveredContext()))))).toEqual([
      'callId',
      'roomName',
      'state',
      'status',
      'egressId',
      'createdAt',
      'updatedAt',
      'callerNumber',
      'direction',
      'startedAt',
      'endedAt',
      'endReason',
      'endDetail',
      'egress',
      'recording',
      'recordingAcknowledgedAt',
      'callDataAcknowledgedAt',
      'outcome',
      'transcriptItems',
      'leads',
      'delivery',
      'attempts',
      'lastError',
      'retries',
    ]);
  });

  it('reads a live call from its actor: its card state and the transcript items it holds', () => {
    const context: CallContext = {
      ...deliveredContext(),
      end: null,
      recording: null,
      recordingAcknowledgedAt: null,
      callDataAcknowledgedAt: null,
      delivery: null,
      attempts: { recording: 0, 'call-data': 0 },
      outcome: null,
      egress: { ...deliveredContext().egress, settlement: null },
    };
    const row = rowOf(stored(context), { state: 'recording', status: 'active', transcriptItems: 0 });
    const view = callViewOf(row, { state: 'inConversation', snapshot: { value: {}, context } });
    expect(view).toMatchObject({
      state: 'inConversation',
      status: 'active',
      egressId: 'EG_1',
      endedAt: null,
      endReason: null,
      endDetail: null,
      egress: null,
      recording: null,
      recordingAcknowledgedAt: null,
      callDataAcknowledgedAt: null,
      outcome: null,
      transcriptItems: 2,
      delivery: null,
      attempts: { recording: 0, 'call-data': 0 },
      lastError: null,
    });
  });

  it('says failed while the call is failed, with the failure as its last error', () => {
    const context: CallContext = {
      ...deliveredContext(),
      callDataAcknowledgedAt: null,
      outcome: null,
      delivery: { step: 'call-data', attempt: 3, failures: 3, lastError: CRM_500, nextAttemptAt: null },
      attempts: { recording: 1, 'call-data': 4 },
      failure: { step: 'call-data', error: CRM_422, attempts: 3, at: T0 + 70_000 },
      egress: { ...deliveredContext().egress, lastError: EGRESS_DOWN },
      retries: 1,
    };
    const view = callViewOf(rowOf(stored(context), { state: 'failed', status: 'failed' }));
    expect(view).toMatchObject({
      state: 'failed',
      status: 'failed',
      outcome: 'failed',
      callDataAcknowledgedAt: null,
      attempts: { recording: 1, 'call-data': 4 },
      lastError: CRM_422,
      retries: 1,
    });
  });

  it('falls back to the egress error when no delivery step has failed', () => {
    const context: CallContext = {
      ...deliveredContext(),
      delivery: null,
      egress: { ...deliveredContext().egress, lastError: EGRESS_DOWN },
    };
    expect(callViewOf(rowOf(stored(context))).lastError).toEqual(EGRESS_DOWN);
  });

  it('answers from the row alone when the snapshot holds no context', () => {
    expect(callViewOf(rowOf({ value: 'done' }, { transcriptItems: 3 }))).toEqual({
      callId: 'CALL-1',
      roomName: 'room-1',
      state: 'done',
      status: 'done',
      egressId: 'EG_row',
      createdAt: '2025-10-29T10:00:00.000Z',
      updatedAt: '2025-10-29T10:01:06.000Z',
      callerNumber: null,
      direction: null,
      startedAt: null,
      endedAt: null,
      endReason: null,
      endDetail: null,
      egress: null,
      recording: null,
      recordingAcknowledgedAt: null,
      callDataAcknowledgedAt: null,
      outcome: null,
      transcriptItems: 3,
      leads: [],
      delivery: null,
      attempts: { recording: 0, 'call-data': 0 },
      lastError: null,
      retries: 0,
    });
  });
});

function entry(seq: number, kind: string, detail?: Record<string, unknown>): StoredJournalEntry {
  return { seq, at: new Date(T0 + seq * 1000).toISOString(), kind, state: 'postingData', detail };
}

describe('lastAttemptErrorOf', () => {
  it('is the error of the last failed CRM attempt, whatever came after it', () => {
    const journal = [
      entry(1, 'state_entered', { state: 'uploadingRecording' }),
      entry(2, 'step_succeeded', { step: 'recording', attempts: 1 }),
      entry(3, 'attempt_failed', { step: 'call-data', attempt: 1, error: CRM_500 }),
      entry(4, 'attempt_failed', { step: 'call-data', attempt: 2, error: CRM_422 }),
      entry(5, 'step_failed', { step: 'call-data', attempts: 2, error: CRM_422 }),
      entry(6, 'retried', { step: 'call-data', retries: 1 }),
      entry(7, 'step_succeeded', { step: 'call-data', attempts: 1 }),
      entry(8, 'attempt_failed'),
    ];
    expect(lastAttemptErrorOf(journal)).toEqual(CRM_422);
  });

  it('is null for a call the CRM has not refused', () => {
    expect(lastAttemptErrorOf([entry(1, 'state_entered', { state: 'recording' })])).toBeNull();
  });
});

describe('callDetailViewOf', () => {
  it('is the list view (the same attempts), the journal’s last error, and the journal last', () => {
    const journal = [
      entry(1, 'attempt_failed', { step: 'call-data', attempt: 1, error: CRM_422 }),
      entry(2, 'step_succeeded', { step: 'call-data', attempts: 2 }),
    ];
    const row = rowOf(stored(deliveredContext()));
    const detail = callDetailViewOf(row, journal);
    const { lastError: _lastError, ...rest } = callViewOf(row);
    expect(detail).toEqual({
      ...rest,
      attempts: { recording: 1, 'call-data': 2 },
      lastError: CRM_422,
      owner: null,
      journal,
    });
    // `attempts` and `lastError` keep their places; the journal comes after everything else.
    const keys = Object.keys(detail);
    expect(keys.slice(-5)).toEqual(['attempts', 'lastError', 'retries', 'owner', 'journal']);
  });

  it('counts no attempts for a snapshot stored before the machine counted them', () => {
    const { attempts: _attempts, ...older } = deliveredContext();
    const detail = callDetailViewOf(rowOf({ value: 'done', context: { ...older, transcript: [] } }), []);
    expect(detail.attempts).toEqual({ recording: 0, 'call-data': 0 });
  });

  it("keeps the agent's own words for the end beside the machine's end reason", () => {
    const ended = deliveredContext();
    const context = { ...ended, end: { ...ended.end!, detail: 'agent said goodbye' } };
    expect(callViewOf(rowOf(stored(context)))).toMatchObject({
      endReason: 'agent_end',
      endDetail: 'agent said goodbye',
    });
  });

  it('names the instance driving the call in a fleet', () => {
    const owner = { instanceId: 'callsync-b', epoch: 7 };
    expect(callDetailViewOf(rowOf(stored(deliveredContext()), { owner }), []).owner).toEqual(owner);
  });

  it('keeps the list view’s last error when the journal has no failed attempt', () => {
    const detail = callDetailViewOf(rowOf(stored(deliveredContext())), []);
    expect(detail.lastError).toEqual(CRM_500);
    expect(detail.journal).toEqual([]);
  });
});
