/**
 * Where calls live between processes. Per call: its row (the persisted actor snapshot and the
 * log position it has applied), its event log (every accepted external event, in order), and its
 * journal (the audit trail from call start to CRM acknowledgement).
 *
 * Durability policy: the event log is the boundary. An external event (a transcript batch, a
 * lead, the end, a webhook's effect, an operator's retry) is committed to the log before the API
 * answers 2xx; the actor applies it after the commit. A snapshot is written when the actor's
 * step changes and records the last log position it has applied, so recovery is the snapshot
 * plus the events after it. Transcript items live only in the log: the snapshot is stored
 * without them and recovery rebuilds them, so a write costs the same at the 5,000th item as at
 * the first.
 *
 * Writes go through `commit`, one transaction for everything the supervisor accepted in a tick
 * (events, snapshots and journal entries of many calls): one fsync or round trip instead of one
 * per write.
 *
 * Contract every implementation keeps:
 * - `createCall` is idempotent on the room name while a call for that room is not final: a
 *   repeated `POST /v1/calls` (the agent's reporter retries) gets the existing call. Once the
 *   call is final, the room name is free for a new call (LiveKit may reuse room names).
 * - A commit is all or nothing; per call, event and journal sequence numbers follow commit
 *   order and the batch's order, starting at 1.
 * - A snapshot is stored with the machine version that produced it; recovery only restores
 *   rows whose version the running code understands.
 * - Store trouble (unreachable, timed out, locked, full) is thrown as `StoreUnavailableError`.
 */
import { CallsyncError } from '../errors.ts';

export type CallStatus = 'active' | 'done' | 'failed';

export interface NewCall {
  callId: string;
  roomName: string;
  machineVersion: string;
  state: string;
  snapshot: unknown;
  /** ISO-8601. */
  createdAt: string;
}

export interface CallRow {
  callId: string;
  roomName: string;
  machineVersion: string;
  /** The machine's state, as a card state name (`awaitingEgress`, `uploadingRecording`). */
  state: string;
  status: CallStatus;
  /** The persisted actor snapshot, without transcript items (they are in the event log). */
  snapshot: unknown;
  /** The last event-log position the snapshot has applied (0: none). */
  appliedSeq: number;
  /** The last event-log position the owner has decided on (applied or refused). */
  handledSeq: number;
  transcriptItems: number;
  egressId: string | null;
  /** The supervisor driving the call (a fleet's instance and its lease epoch); null on SQLite. */
  owner: CallOwner | null;
  /** ISO-8601. */
  createdAt: string;
  /** ISO-8601. */
  updatedAt: string;
}

export interface SnapshotUpdate {
  state: string;
  status: CallStatus;
  snapshot: unknown;
  appliedSeq: number;
  transcriptItems: number;
  machineVersion: string;
  egressId: string | null;
  /** ISO-8601. */
  updatedAt: string;
}

export interface CallOwner {
  instanceId: string;
  epoch: number;
}

/** Why the call's owner refused a logged event (the API error its sender gets). */
export interface Refusal {
  code: string;
  message: string;
}

export interface StoredEvent {
  seq: number;
  /** The external event as the supervisor accepted it (JSON). */
  event: unknown;
  /** Set when the owner refused the event: it is never applied. */
  refusal?: Refusal | undefined;
}

/** The owner's decision on a logged event: applied, or refused with the reason. */
export interface HandledEvent {
  callId: string;
  seq: number;
  refusal?: Refusal | undefined;
}

/** What a sender of a logged event learns: has the owner decided on it, and how. */
export interface EventOutcome {
  status: CallStatus;
  handledSeq: number;
  refusal: Refusal | undefined;
}

export interface JournalEntry {
  /** ISO-8601. */
  at: string;
  /** `state_entered`, `attempt_failed`, `delivered`, … */
  kind: string;
  state: string;
  detail?: Record<string, unknown> | undefined;
}

export interface StoredJournalEntry extends JournalEntry {
  seq: number;
}

/** Everything one commit writes, in order. */
export interface CommitBatch {
  events: readonly { callId: string; event: unknown }[];
  /** At most one per call: the latest. */
  snapshots: readonly { callId: string; update: SnapshotUpdate }[];
  journal: readonly { callId: string; entry: JournalEntry }[];
  /** The owner's decisions on logged events (the highest `seq` per call becomes `handledSeq`). */
  handled?: readonly HandledEvent[] | undefined;
}

/** Newest first (`createdAt`, then `callId`, both descending). */
export interface ListCallsQuery {
  state?: string | undefined;
  status?: CallStatus | undefined;
  /** ISO-8601: created at or after. */
  since?: string | undefined;
  /** Keyset pagination: only calls after this one in the order. */
  after?: { createdAt: string; callId: string } | undefined;
  limit?: number | undefined;
}

/**
 * The times `GET /v1/status` needs of a call that reached a final state: read out of the stored
 * snapshot's context by the store (SQLite `json_extract`, PostgreSQL `#>>`), so a window of
 * thousands of calls moves a few numbers per call, not their snapshots. Epoch milliseconds;
 * null where the call has none.
 */
export interface FinishedCallTimes {
  endedAtMs: number | null;
  callDataAcknowledgedAtMs: number | null;
  /** When the call failed (a failed call, or a dismissed one: the context keeps its failure). */
  failedAtMs: number | null;
}

/** The state name of a failed call an operator closed (`POST /v1/calls/{id}/dismiss`). */
export const DISMISSED_STATE = 'dismissed';

export interface CallStore {
  /** Creates or migrates the schema. Safe to call twice. */
  open(): Promise<void>;
  /** Inserts the call, or returns the live call already recorded for the room. */
  createCall(call: NewCall): Promise<{ created: boolean; call: CallRow }>;
  /**
   * Writes the batch in one transaction; resolves with each event's sequence number (in the
   * batch's order) once it is durable. Events for a call the store does not hold are refused
   * (the whole batch fails).
   */
  commit(batch: CommitBatch): Promise<number[]>;
  /** Resolves when the store can take a write now (the probe while it is unavailable). */
  check(): Promise<void>;
  /** A call's logged events after `afterSeq`, in order. */
  getEvents(callId: string, afterSeq?: number): Promise<StoredEvent[]>;
  /** Whether the call's owner has decided on the event at `seq`, and how. */
  getEventOutcome(callId: string, seq: number): Promise<EventOutcome | undefined>;
  /** The live call a LiveKit webhook is about: by egress id, else by room name. */
  findLiveCall(by: {
    egressId?: string | undefined;
    roomName?: string | undefined;
  }): Promise<CallRow | undefined>;
  getCall(callId: string): Promise<CallRow | undefined>;
  getJournal(callId: string): Promise<StoredJournalEntry[]>;
  listCalls(query: ListCallsQuery): Promise<CallRow[]>;
  /**
   * Closes a failed call as dismissed (status `done`, state `dismissed`) with a journal entry
   * saying why; undefined when the call is not failed (any more).
   */
  dismissCall(callId: string, dismissal: { reason: string; at: string }): Promise<CallRow | undefined>;
  /**
   * Deletes up to `limit` calls that finished `done` (delivered, partial or dismissed) at or before
   * `before` (ISO-8601), with their event log and journal; resolves with how many. Failed calls
   * stay: they wait for an operator. Recordings are never touched (they live in the CRM).
   */
  pruneFinished(before: string, limit: number): Promise<number>;
  /** How many calls have this status (the failed-calls gauge reads it at scrape time). */
  countCalls(status: CallStatus): Promise<number>;
  /**
   * Calls that are final (done, dismissed or failed) and were last written at or after
   * `sinceIso` (a call's final outcome is its last write, so every call that finished in the
   * window is among them), at most `limit`, most recently written first.
   */
  finishedSince(sinceIso: string, limit: number): Promise<FinishedCallTimes[]>;
  /** How many calls are in each state (card state names, and `dismissed`). */
  countByState(): Promise<Record<string, number>>;
  /** Calls to restore at start-up: not final, any machine version (the caller decides). */
  listActive(): Promise<CallRow[]>;
  /** Safe to call twice. */
  close(): Promise<void>;
  /** Present when several supervisors share the store (PostgreSQL): leases and call ownership. */
  readonly fleet?: CallFleet | undefined;
}

/** A message between the supervisors of a fleet (PostgreSQL `NOTIFY`). */
export type FleetNote =
  /** An event was logged for the call: its owner should read it. */
  | { kind: 'event'; callId: string }
  /** The owner decided on logged events of the call: their senders may answer. */
  | { kind: 'handled'; callId: string }
  /** An instance gave up its calls (draining): sweep now. */
  | { kind: 'released'; instanceId: string };

export interface FleetEventMap {
  note: [FleetNote];
  /** The lease could not be renewed within its trust window, or another epoch took it. */
  lost: [];
  /** A new lease epoch began (at start, and after a loss). */
  registered: [{ epoch: number }];
  /** Writes of `epoch` for these calls were refused: another instance owns them now. */
  fenced: [{ callIds: readonly string[]; epoch: number }];
  /** A renewal round trip, in seconds. */
  renewed: [{ seconds: number }];
}

/**
 * Ownership policy (the fleet): each supervisor holds a lease row renewed on the database's
 * clock, with a new epoch per start; each call row names its owner and epoch, and the store
 * writes a call's snapshots, journal and decisions only while that ownership is valid. A call
 * whose owner's lease lapsed is claimed by whichever supervisor sweeps first.
 */
export interface CallFleet {
  readonly instanceId: string;
  /** The current lease epoch (0 until registered). */
  readonly epoch: number;
  readonly leaseMs: number;
  /** True while the last renewal is recent enough to act on (checked before every effect). */
  trusted(): boolean;
  /** Claims up to `limit` live calls stored by one of `machineVersions` whose owner's lease lapsed. */
  claimOrphans(
    limit: number,
    machineVersions: readonly string[],
  ): Promise<{ call: CallRow; previousOwner: string | null }[]>;
  /** Calls this instance owns that have logged events it has not decided on yet. */
  callsWithNewEvents(): Promise<string[]>;
  /** Claims a failed call for a retry; undefined when it is not failed (any more). */
  claimFailed(callId: string): Promise<CallRow | undefined>;
  /** Sends notes to every supervisor (coalesced, off the write path). */
  notify(notes: readonly FleetNote[]): void;
  /** Ends this instance's lease at once so the others take its calls (draining). */
  release(): Promise<void>;
  on<K extends keyof FleetEventMap>(event: K, listener: (...args: FleetEventMap[K]) => void): unknown;
  off<K extends keyof FleetEventMap>(event: K, listener: (...args: FleetEventMap[K]) => void): unknown;
}

/**
 * The store cannot take or answer a request now (down, not answering within its timeout, locked,
 * disk full). Retryable: the API answers `503 STORE_UNAVAILABLE` and the client sends again.
 */
export class StoreUnavailableError extends CallsyncError {
  constructor(message: string, cause?: unknown) {
    super('STORE_UNAVAILABLE', message, { retryable: true, cause });
  }
}
