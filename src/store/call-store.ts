/**
 * Where calls live between processes: each call's persisted actor snapshot (so a restart
 * resumes it) and an append-only journal of its transitions (the audit trail from call start
 * to CRM acknowledgement).
 *
 * Contract every implementation keeps:
 * - `createCall` is idempotent on the room name while a call for that room is not final: a
 *   repeated `POST /v1/calls` (the agent's reporter retries) gets the existing call. Once the
 *   call is final, the room name is free for a new call (LiveKit may reuse room names).
 * - Writes for one call are applied in the order they were made.
 * - A snapshot is stored with the machine version that produced it; recovery only restores
 *   rows whose version the running code understands.
 */

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
  /** The machine's state value, flattened (`awaitingEgress`, `delivering.uploadingRecording`). */
  state: string;
  status: CallStatus;
  snapshot: unknown;
  egressId: string | null;
  /** ISO-8601. */
  createdAt: string;
  /** ISO-8601. */
  updatedAt: string;
}

export interface SnapshotUpdate {
  state: string;
  status: CallStatus;
  snapshot: unknown;
  machineVersion: string;
  egressId: string | null;
  /** ISO-8601. */
  updatedAt: string;
}

export interface JournalEntry {
  /** ISO-8601. */
  at: string;
  /** `transition`, `attempt_failed`, `delivered`, … */
  kind: string;
  state: string;
  detail?: Record<string, unknown> | undefined;
}

export interface StoredJournalEntry extends JournalEntry {
  seq: number;
}

export interface ListCallsQuery {
  state?: string | undefined;
  status?: CallStatus | undefined;
  limit?: number | undefined;
}

export interface CallStore {
  /** Creates the schema if needed. Safe to call twice. */
  open(): Promise<void>;
  /** Inserts the call, or returns the live call already recorded for the room. */
  createCall(call: NewCall): Promise<{ created: boolean; call: CallRow }>;
  saveSnapshot(callId: string, update: SnapshotUpdate): Promise<void>;
  appendJournal(callId: string, entry: JournalEntry): Promise<void>;
  getCall(callId: string): Promise<CallRow | undefined>;
  getJournal(callId: string): Promise<StoredJournalEntry[]>;
  listCalls(query: ListCallsQuery): Promise<CallRow[]>;
  /** How many calls have this status (the failed-calls gauge reads it at scrape time). */
  countCalls(status: CallStatus): Promise<number>;
  /** Calls to restore at start-up: not final, any machine version (the caller decides). */
  listActive(): Promise<CallRow[]>;
  /** Safe to call twice. */
  close(): Promise<void>;
}
