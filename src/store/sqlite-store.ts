/**
 * The embedded call store: one SQLite file, WAL journal, better-sqlite3.
 *
 * Durability policy: WAL with `synchronous = NORMAL` survives a process kill (SIGKILL, crash)
 * with every committed write; only an OS crash or power loss can drop the last transactions.
 * That is the failure a single-process supervisor must survive; a fleet uses PostgreSQL.
 *
 * better-sqlite3 is synchronous, so a write has committed when the method returns, and it
 * blocks the event loop while it waits: the busy timeout is short (another process holding the
 * write lock, a backup or an operator's shell, is reported as `StoreUnavailableError` within
 * `SQLITE_BUSY_TIMEOUT_MS`, and the supervisor retries the write later).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import {
  DISMISSED_STATE,
  StoreUnavailableError,
  type CallRow,
  type CallStatus,
  type CallStore,
  type CommitBatch,
  type EventOutcome,
  type FinishedCallTimes,
  type ListCallsQuery,
  type NewCall,
  type Refusal,
  type StoredEvent,
  type StoredJournalEntry,
} from './call-store.ts';

const DEFAULT_LIST_LIMIT = 500;
/** How long a write waits for another connection's lock before the store counts as unavailable. */
export const SQLITE_BUSY_TIMEOUT_MS = 200;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS calls (
  call_id         TEXT PRIMARY KEY,
  room_name       TEXT NOT NULL,
  machine_version TEXT NOT NULL,
  state           TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('active', 'done', 'failed')),
  snapshot        TEXT NOT NULL,
  egress_id       TEXT,
  created_at      TEXT NOT NULL,
  updated_at      TEXT NOT NULL
);
-- One live call per room: makes POST /v1/calls idempotent on roomName.
CREATE UNIQUE INDEX IF NOT EXISTS calls_live_room ON calls (room_name) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS calls_state ON calls (state);
CREATE INDEX IF NOT EXISTS calls_status ON calls (status);
CREATE INDEX IF NOT EXISTS calls_egress ON calls (egress_id) WHERE egress_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS call_journal (
  call_id TEXT NOT NULL REFERENCES calls (call_id),
  seq     INTEGER NOT NULL,
  at      TEXT NOT NULL,
  kind    TEXT NOT NULL,
  state   TEXT NOT NULL,
  detail  TEXT,
  PRIMARY KEY (call_id, seq)
);
CREATE TABLE IF NOT EXISTS call_events (
  call_id TEXT NOT NULL REFERENCES calls (call_id),
  seq     INTEGER NOT NULL,
  event   TEXT NOT NULL,
  PRIMARY KEY (call_id, seq)
) WITHOUT ROWID;
`;

/** Columns added after the first release, with their backfill (existing stores are migrated). */
const ADDED_COLUMNS: readonly { table: string; name: string; ddl: string; backfill?: string }[] = [
  { table: 'calls', name: 'event_seq', ddl: 'event_seq INTEGER NOT NULL DEFAULT 0' },
  { table: 'calls', name: 'applied_seq', ddl: 'applied_seq INTEGER NOT NULL DEFAULT 0' },
  { table: 'calls', name: 'transcript_items', ddl: 'transcript_items INTEGER NOT NULL DEFAULT 0' },
  {
    table: 'calls',
    name: 'journal_seq',
    ddl: 'journal_seq INTEGER NOT NULL DEFAULT 0',
    backfill: `UPDATE calls SET journal_seq = (SELECT COALESCE(MAX(seq), 0) FROM call_journal j WHERE j.call_id = calls.call_id)`,
  },
  // Events logged before decisions were recorded count as decided (applied) up to the snapshot.
  {
    table: 'calls',
    name: 'handled_seq',
    ddl: 'handled_seq INTEGER NOT NULL DEFAULT 0',
    backfill: 'UPDATE calls SET handled_seq = applied_seq',
  },
  { table: 'call_events', name: 'refusal', ddl: 'refusal TEXT' },
];

interface CallRowRecord {
  call_id: string;
  room_name: string;
  machine_version: string;
  state: string;
  status: CallStatus;
  snapshot: string;
  applied_seq: number;
  handled_seq: number;
  transcript_items: number;
  egress_id: string | null;
  created_at: string;
  updated_at: string;
}

function toCallRow(record: CallRowRecord): CallRow {
  return {
    callId: record.call_id,
    roomName: record.room_name,
    machineVersion: record.machine_version,
    state: record.state,
    status: record.status,
    snapshot: JSON.parse(record.snapshot) as unknown,
    appliedSeq: record.applied_seq,
    handledSeq: record.handled_seq,
    transcriptItems: record.transcript_items,
    egressId: record.egress_id,
    owner: null,
    createdAt: record.created_at,
    updatedAt: record.updated_at,
  };
}

/** The next event and journal `seq` of each call in the batch; a call the store does not hold has none. */
function reserveSeqs(
  reserve: Database.Statement<[number, number, string], { eventSeq: number; journalSeq: number }>,
  batch: CommitBatch,
): Map<string, { event: number; journal: number }> {
  const counts = new Map<string, { events: number; journal: number }>();
  const countOf = (callId: string) => {
    let count = counts.get(callId);
    if (count === undefined) counts.set(callId, (count = { events: 0, journal: 0 }));
    return count;
  };
  for (const { callId } of batch.events) countOf(callId).events++;
  for (const { callId } of batch.journal) countOf(callId).journal++;
  const next = new Map<string, { event: number; journal: number }>();
  for (const [callId, count] of counts) {
    const reserved = reserve.get(count.events, count.journal, callId);
    if (reserved === undefined) continue;
    next.set(callId, {
      event: reserved.eventSeq - count.events + 1,
      journal: reserved.journalSeq - count.journal + 1,
    });
  }
  return next;
}

/** SQLite result codes that mean "the store cannot take this now", not "this write is wrong". */
const UNAVAILABLE_CODES = /^SQLITE_(BUSY|LOCKED|FULL|IOERR|READONLY|CANTOPEN|NOMEM|PROTOCOL)/;

function storeError(error: unknown, doing: string): Error {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && UNAVAILABLE_CODES.test(code)) {
    return new StoreUnavailableError(`SQLite could not ${doing}: ${code}`, error);
  }
  return error instanceof Error ? error : new Error(String(error));
}

export class SqliteCallStore implements CallStore {
  readonly #path: string;
  #db: Database.Database | undefined;
  #statements: ReturnType<SqliteCallStore['prepare']> | undefined;

  /** `path` is a file path, or `:memory:` for tests. */
  constructor(path: string) {
    this.#path = path;
  }

  open(): Promise<void> {
    if (this.#db) return Promise.resolve();
    if (this.#path !== ':memory:') mkdirSync(dirname(this.#path), { recursive: true });
    const db = new Database(this.#path);
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
      db.exec(SCHEMA);
      for (const added of ADDED_COLUMNS) {
        const info = db.pragma(`table_info(${added.table})`) as { name: string }[];
        if (info.some((column) => column.name === added.name)) continue;
        db.exec(`ALTER TABLE ${added.table} ADD COLUMN ${added.ddl}`);
        if (added.backfill) db.exec(added.backfill);
      }
    } catch (error) {
      db.close();
      throw storeError(error, 'open the store');
    }
    this.#db = db;
    this.#statements = this.prepare(db);
    return Promise.resolve();
  }

  private prepare(db: Database.Database) {
    return {
      insert: db.prepare<[Record<string, unknown>]>(
        `INSERT INTO calls (call_id, room_name, machine_version, state, status, snapshot, egress_id, created_at, updated_at)
         VALUES (@callId, @roomName, @machineVersion, @state, 'active', @snapshot, NULL, @createdAt, @createdAt)`,
      ),
      liveByRoom: db.prepare<[string], CallRowRecord>(
        `SELECT * FROM calls WHERE room_name = ? AND status = 'active'`,
      ),
      byId: db.prepare<[string], CallRowRecord>(`SELECT * FROM calls WHERE call_id = ?`),
      update: db.prepare<[Record<string, unknown>]>(
        `UPDATE calls SET state = @state, status = @status, snapshot = @snapshot, applied_seq = @appliedSeq,
           transcript_items = @transcriptItems, machine_version = @machineVersion,
           egress_id = COALESCE(@egressId, egress_id), updated_at = @updatedAt WHERE call_id = @callId`,
      ),
      // A commit reserves each call's sequence numbers with one update: every update of a call's
      // row rewrites it, snapshot included.
      reserveSeqs: db.prepare<[number, number, string], { eventSeq: number; journalSeq: number }>(
        `UPDATE calls SET event_seq = event_seq + ?, journal_seq = journal_seq + ? WHERE call_id = ?
         RETURNING event_seq AS eventSeq, journal_seq AS journalSeq`,
      ),
      appendEvent: db.prepare<[string, number, string]>(
        `INSERT INTO call_events (call_id, seq, event) VALUES (?, ?, ?)`,
      ),
      events: db.prepare<[string, number], { seq: number; event: string; refusal: string | null }>(
        `SELECT seq, event, refusal FROM call_events WHERE call_id = ? AND seq > ? ORDER BY seq`,
      ),
      handled: db.prepare<[number, string]>(
        `UPDATE calls SET handled_seq = MAX(handled_seq, ?) WHERE call_id = ?`,
      ),
      refuse: db.prepare<[string, string, number]>(
        `UPDATE call_events SET refusal = ? WHERE call_id = ? AND seq = ?`,
      ),
      outcome: db.prepare<
        [number, string],
        { status: CallStatus; handled_seq: number; refusal: string | null }
      >(
        `SELECT status, handled_seq, (SELECT refusal FROM call_events e WHERE e.call_id = calls.call_id AND e.seq = ?) AS refusal
         FROM calls WHERE call_id = ?`,
      ),
      liveByEgress: db.prepare<[string], CallRowRecord>(
        `SELECT * FROM calls WHERE egress_id = ? AND status = 'active'`,
      ),
      appendJournal: db.prepare<[Record<string, unknown>]>(
        `INSERT INTO call_journal (call_id, seq, at, kind, state, detail) VALUES (@callId, @seq, @at, @kind, @state, @detail)`,
      ),
      journal: db.prepare<
        [string],
        { seq: number; at: string; kind: string; state: string; detail: string | null }
      >(`SELECT seq, at, kind, state, detail FROM call_journal WHERE call_id = ? ORDER BY seq`),
      count: db.prepare<[string], { count: number }>(`SELECT COUNT(*) AS count FROM calls WHERE status = ?`),
      active: db.prepare<[], CallRowRecord>(
        `SELECT * FROM calls WHERE status = 'active' ORDER BY created_at`,
      ),
    };
  }

  #require() {
    if (!this.#db || !this.#statements) throw new Error('the call store is not open');
    return { db: this.#db, statements: this.#statements };
  }

  /** Runs `work`, turning SQLite's "cannot now" codes into `StoreUnavailableError`. */
  #run<T>(doing: string, work: () => T): Promise<T> {
    try {
      return Promise.resolve(work());
    } catch (error) {
      return Promise.reject(storeError(error, doing));
    }
  }

  createCall(call: NewCall): Promise<{ created: boolean; call: CallRow }> {
    const { db, statements } = this.#require();
    const create = db.transaction(() => {
      const existing = statements.liveByRoom.get(call.roomName);
      if (existing) return { created: false, call: toCallRow(existing) };
      statements.insert.run({ ...call, snapshot: JSON.stringify(call.snapshot) });
      return { created: true, call: toCallRow(statements.byId.get(call.callId)!) };
    });
    return this.#run('create the call', () => create.immediate());
  }

  commit(batch: CommitBatch): Promise<number[]> {
    const { db, statements } = this.#require();
    const commit = db.transaction(() => {
      const next = reserveSeqs(statements.reserveSeqs, batch);
      const seqs: number[] = [];
      for (const { callId, event } of batch.events) {
        const call = next.get(callId);
        if (call === undefined) throw new Error(`event for call ${callId}, which the store does not hold`);
        const seq = call.event++;
        statements.appendEvent.run(callId, seq, JSON.stringify(event));
        seqs.push(seq);
      }
      for (const { callId, update } of batch.snapshots) {
        statements.update.run({ callId, ...update, snapshot: JSON.stringify(update.snapshot) });
      }
      for (const { callId, entry } of batch.journal) {
        const call = next.get(callId);
        if (call === undefined) continue; // a journal entry never fails the events it is committed with
        statements.appendJournal.run({
          callId,
          seq: call.journal++,
          at: entry.at,
          kind: entry.kind,
          state: entry.state,
          detail: entry.detail === undefined ? null : JSON.stringify(entry.detail),
        });
      }
      for (const { callId, seq, refusal } of batch.handled ?? []) {
        if (refusal) statements.refuse.run(JSON.stringify(refusal), callId, seq);
        statements.handled.run(seq, callId);
      }
      return seqs;
    });
    return this.#run('commit', () => commit.immediate());
  }

  check(): Promise<void> {
    const { db } = this.#require();
    return this.#run('take the write lock', () => {
      db.prepare('BEGIN IMMEDIATE').run();
      db.prepare('ROLLBACK').run();
    });
  }

  getEvents(callId: string, afterSeq = 0): Promise<StoredEvent[]> {
    return this.#run('read the event log', () =>
      this.#require()
        .statements.events.all(callId, afterSeq)
        .map((row) => ({
          seq: row.seq,
          event: JSON.parse(row.event) as unknown,
          ...(row.refusal === null ? {} : { refusal: JSON.parse(row.refusal) as Refusal }),
        })),
    );
  }

  getEventOutcome(callId: string, seq: number): Promise<EventOutcome | undefined> {
    return this.#run('read an event outcome', () => {
      const row = this.#require().statements.outcome.get(seq, callId);
      if (!row) return undefined;
      const refusal = row.refusal === null ? undefined : (JSON.parse(row.refusal) as Refusal);
      return { status: row.status, handledSeq: row.handled_seq, refusal };
    });
  }

  findLiveCall(by: {
    egressId?: string | undefined;
    roomName?: string | undefined;
  }): Promise<CallRow | undefined> {
    return this.#run('find the call', () => {
      const { statements } = this.#require();
      const record =
        (by.egressId === undefined ? undefined : statements.liveByEgress.get(by.egressId)) ??
        (by.roomName === undefined ? undefined : statements.liveByRoom.get(by.roomName));
      return record ? toCallRow(record) : undefined;
    });
  }

  getCall(callId: string): Promise<CallRow | undefined> {
    return this.#run('read the call', () => {
      const record = this.#require().statements.byId.get(callId);
      return record ? toCallRow(record) : undefined;
    });
  }

  getJournal(callId: string): Promise<StoredJournalEntry[]> {
    return this.#run('read the journal', () =>
      this.#require()
        .statements.journal.all(callId)
        .map((row) => ({
          seq: row.seq,
          at: row.at,
          kind: row.kind,
          state: row.state,
          ...(row.detail === null ? {} : { detail: JSON.parse(row.detail) as Record<string, unknown> }),
        })),
    );
  }

  listCalls(query: ListCallsQuery): Promise<CallRow[]> {
    const { db } = this.#require();
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.state !== undefined) {
      where.push('state = ?');
      params.push(query.state);
    }
    if (query.status !== undefined) {
      where.push('status = ?');
      params.push(query.status);
    }
    // Times are stored as ISO-8601 UTC text, which sorts as the times do.
    if (query.since !== undefined) {
      where.push('created_at >= ?');
      params.push(new Date(query.since).toISOString());
    }
    if (query.after !== undefined) {
      where.push('(created_at < ? OR (created_at = ? AND call_id < ?))');
      params.push(query.after.createdAt, query.after.createdAt, query.after.callId);
    }
    const sql = `SELECT * FROM calls ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, call_id DESC LIMIT ?`;
    params.push(query.limit ?? DEFAULT_LIST_LIMIT);
    return this.#run('list calls', () =>
      db
        .prepare<unknown[], CallRowRecord>(sql)
        .all(...params)
        .map(toCallRow),
    );
  }

  dismissCall(callId: string, dismissal: { reason: string; at: string }): Promise<CallRow | undefined> {
    const { db, statements } = this.#require();
    const dismiss = db.transaction(() => {
      const changed = db
        .prepare<[string, string]>(
          `UPDATE calls SET status = 'done', state = '${DISMISSED_STATE}', updated_at = ? WHERE call_id = ? AND status = 'failed'`,
        )
        .run(dismissal.at, callId);
      if (changed.changes === 0) return undefined;
      const next = statements.reserveSeqs.get(0, 1, callId);
      statements.appendJournal.run({
        callId,
        seq: next?.journalSeq ?? 1,
        at: dismissal.at,
        kind: 'dismissed',
        state: DISMISSED_STATE,
        detail: JSON.stringify({ reason: dismissal.reason }),
      });
      const row = statements.byId.get(callId);
      return row ? toCallRow(row) : undefined;
    });
    return this.#run('dismiss the call', () => dismiss.immediate());
  }

  pruneFinished(before: string, limit: number): Promise<number> {
    const { db } = this.#require();
    const prune = db.transaction(() => {
      const ids = db
        .prepare<[string, number], { call_id: string }>(
          `SELECT call_id FROM calls WHERE status = 'done' AND updated_at <= ? ORDER BY updated_at LIMIT ?`,
        )
        .all(new Date(before).toISOString(), limit)
        .map((row) => row.call_id);
      for (const table of ['call_events', 'call_journal', 'calls']) {
        const remove = db.prepare<[string]>(`DELETE FROM ${table} WHERE call_id = ?`);
        for (const id of ids) remove.run(id);
      }
      return ids.length;
    });
    return this.#run('prune finished calls', () => prune.immediate());
  }

  countCalls(status: CallStatus): Promise<number> {
    return this.#run('count calls', () => this.#require().statements.count.get(status)!.count);
  }

  finishedSince(sinceIso: string, limit: number): Promise<FinishedCallTimes[]> {
    return this.#run('read finished calls', () =>
      this.#require()
        .db.prepare<[string, number], FinishedCallTimes>(
          `SELECT json_extract(snapshot, '$.context.end.endedAtMs') AS endedAtMs,
                  json_extract(snapshot, '$.context.callDataAcknowledgedAt') AS callDataAcknowledgedAtMs,
                  json_extract(snapshot, '$.context.failure.at') AS failedAtMs
           FROM calls WHERE status IN ('done', 'failed') AND updated_at >= ?
           ORDER BY updated_at DESC LIMIT ?`,
        )
        .all(new Date(sinceIso).toISOString(), limit),
    );
  }

  countByState(): Promise<Record<string, number>> {
    return this.#run('count calls by state', () =>
      Object.fromEntries(
        this.#require()
          .db.prepare<[], { state: string; count: number }>(
            'SELECT state, COUNT(*) AS count FROM calls GROUP BY state',
          )
          .all()
          .map((row) => [row.state, row.count]),
      ),
    );
  }

  listActive(): Promise<CallRow[]> {
    return this.#run('list live calls', () => this.#require().statements.active.all().map(toCallRow));
  }

  close(): Promise<void> {
    this.#db?.close();
    this.#db = undefined;
    this.#statements = undefined;
    return Promise.resolve();
  }
}
