/**
 * The read model of the HTTP API: one call as `GET /v1/calls` lists it (`CallView`), and as
 * `GET /v1/calls/{id}` answers it (`CallDetailView`: the same, with the last CRM error from the
 * journal, the owner and the journal). Pure functions build them from what the supervisor gathers: the store's
 * row, the machine snapshot (the live actor's while the call is in memory) and the journal.
 *
 * What the call has not reached yet is `null`. The top-level times are ISO-8601; inside the
 * machine's own records (`egress`, `delivery`) times stay epoch milliseconds, as the machine keeps them.
 */
import type { ErrorInfo } from '../errors.ts';
import {
  NO_DELIVERY_ATTEMPTS,
  type CallOutcome,
  type DeliveryAttempts,
  type DeliveryProgress,
  type EgressSettlement,
  type EndReason,
} from '../machines/call.types.ts';
import type { CallDirection, DeliveredRecording } from '../payload/call-data.ts';
import { ApiError } from '../errors.ts';
import type { CallOwner, CallRow, CallStatus, StoredJournalEntry } from '../store/call-store.ts';
import { contextOf } from './call-state.ts';

export interface CallView {
  callId: string;
  roomName: string;
  /** The card state (`callStateOf` in `call-state.ts`). */
  state: string;
  status: CallStatus;
  egressId: string | null;
  createdAt: string;
  updatedAt: string;
  callerNumber: string | null;
  direction: CallDirection | null;
  startedAt: string | null;
  endedAt: string | null;
  endReason: EndReason | null;
  /** The agent's own words for the end (`POST /end`'s `reason`), when it gave any. */
  endDetail: string | null;
  /** How the wait for the egress ended. */
  egress: EgressSettlement | null;
  recording: DeliveredRecording | null;
  recordingAcknowledgedAt: string | null;
  callDataAcknowledgedAt: string | null;
  /** `failed` while the call is failed (a re-driven call has its outcome again once delivered). */
  outcome: CallOutcome | 'failed' | null;
  transcriptItems: number;
  /** The ids of the linked leads. */
  leads: string[];
  /** The delivery step in progress, or the last one. */
  delivery: DeliveryProgress | null;
  /** CRM attempts per step that finished, failed or succeeded, over the call's whole life. */
  attempts: DeliveryAttempts;
  /** The call's failure, else the delivery step's last error, else the egress's. */
  lastError: ErrorInfo | null;
  /** How many times an operator re-drove the failed call. */
  retries: number;
}

export interface CallDetailView extends CallView {
  /** The last error of a CRM attempt in the journal, else the list view's. */
  lastError: ErrorInfo | null;
  journal: StoredJournalEntry[];
  /** In a fleet: the instance driving the call and its lease epoch; null on SQLite. */
  owner: CallOwner | null;
}

/** A call whose actor is in memory: its card state and persisted snapshot are ahead of the row's. */
export interface LiveCallView {
  state: string;
  snapshot: unknown;
}

function isoOf(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(ms).toISOString();
}

/** The call as listed: from its row, or from its live actor when it has one. */
export function callViewOf(row: CallRow, live?: LiveCallView): CallView {
  const context = contextOf(live ? live.snapshot : row.snapshot);
  const state = live?.state ?? row.state;
  return {
    callId: row.callId,
    roomName: row.roomName,
    state,
    status: row.status,
    egressId: context?.egress.id ?? row.egressId,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    callerNumber: context?.call.callerNumber ?? null,
    direction: context?.call.direction ?? null,
    startedAt: context?.call.startedAt ?? null,
    endedAt: context?.end?.endedAt ?? null,
    endReason: context?.end?.reason ?? null,
    endDetail: context?.end?.detail ?? null,
    egress: context?.egress.settlement ?? null,
    recording: context?.recording ?? null,
    recordingAcknowledgedAt: isoOf(context?.recordingAcknowledgedAt),
    callDataAcknowledgedAt: isoOf(context?.callDataAcknowledgedAt),
    outcome: state === 'failed' ? 'failed' : (context?.outcome ?? null),
    // A stored snapshot holds no transcript items (they are in the event log): the row counts them.
    transcriptItems: live ? (context?.transcript.length ?? 0) : row.transcriptItems,
    leads: context?.leads.map((lead) => lead.leadId) ?? [],
    delivery: context?.delivery ?? null,
    // Snapshots stored before the machine counted attempts have none.
    attempts: { ...NO_DELIVERY_ATTEMPTS, ...context?.attempts },
    lastError: context?.failure?.error ?? context?.delivery?.lastError ?? context?.egress.lastError ?? null,
    retries: context?.retries ?? 0,
  };
}

/** The last CRM attempt's error in the journal (`attempt_failed` entries carry the machine's error). */
export function lastAttemptErrorOf(journal: readonly StoredJournalEntry[]): ErrorInfo | null {
  for (let index = journal.length - 1; index >= 0; index -= 1) {
    const entry = journal[index]!;
    if (entry.kind === 'attempt_failed' && entry.detail?.error !== undefined)
      return entry.detail.error as ErrorInfo;
  }
  return null;
}

/** The call as `GET /v1/calls/{id}` answers it: the list view, its last CRM error and journal. */
export function callDetailViewOf(
  row: CallRow,
  journal: StoredJournalEntry[],
  live?: LiveCallView,
): CallDetailView {
  const view = callViewOf(row, live);
  return {
    ...view,
    lastError: lastAttemptErrorOf(journal) ?? view.lastError,
    owner: row.owner,
    journal,
  };
}

/**
 * `GET /v1/calls` pages by keyset (`createdAt`, then `callId`, newest first): the cursor is the
 * last call of a page, opaque to clients (base64url JSON), so a page never skips or repeats a
 * call when calls are created meanwhile.
 */
export function encodeCallCursor(row: Pick<CallRow, 'createdAt' | 'callId'>): string {
  return Buffer.from(JSON.stringify([row.createdAt, row.callId])).toString('base64url');
}

export function decodeCallCursor(cursor: string): { createdAt: string; callId: string } {
  try {
    const decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (
      Array.isArray(decoded) &&
      decoded.length === 2 &&
      typeof decoded[0] === 'string' &&
      !Number.isNaN(Date.parse(decoded[0])) &&
      typeof decoded[1] === 'string'
    ) {
      return { createdAt: decoded[0], callId: decoded[1] };
    }
  } catch {
    // not base64url JSON: said below
  }
  throw new ApiError('INVALID_QUERY', 'cursor: not a cursor from a previous page (nextCursor)', {
    field: 'cursor',
  });
}
