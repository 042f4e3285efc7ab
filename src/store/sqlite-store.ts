/**
 * The embedded call store: one SQLite file, WAL journal, better-sqlite3.
 *
 * Durability policy: WAL with `synchronous = NORMAL` survives a process kill (SIGKILL, crash)
 * with every committed write; only an OS crash or power loss can drop the last transactions.
 * That is the failure a single-process supervisor must survive; a fleet uses PostgreSQL.
 *
 * better-sqlite3 is synchronous, so writes for one call are applied in call order by
 * construction, and a write has committed when the method returns.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type {
  CallRow,
  CallStatus,
  CallStore,
  JournalEntry,
  ListCallsQuery,
  NewCall,
  SnapshotUpdate,
  StoredJournalEntry,
} from './call-store.ts';

const DEFAULT_LIST_LIMIT = 500;

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
CREATE TABLE IF NOT EXISTS call_journal (
  call_id TEXT NOT NULL REFERENCES calls (call_id),
  seq     INTEGER NOT NULL,
  at      TEXT NOT NULL,
  kind    TEXT NOT NULL,
  state   TEXT NOT NULL,
  detail  TEXT,
  PRIMARY KEY (call_id, seq)
);
`;

interface CallRowRecord {
  call_id: string;
  room_name: string;
  machine_version: string;
  state: string;
  status: CallStatus;
  snapshot: string;
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
    egressId: record.egress_id,
    createdAt: record.created_at,
    updatedAt: record.updated_at,
  };
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
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    db.exec(SCHEMA);
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
        `UPDATE calls SET state = @state, status = @status, snapshot = @snapshot, machine_version = @machineVersion,
           egress_id = COALESCE(@egressId, egress_id), updated_at = @updatedAt WHERE call_id = @callId`,
      ),
      nextSeq: db.prepare<[string], { seq: number }>(
        `SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM call_journal WHERE call_id = ?`,
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

  createCall(call: NewCall): Promise<{ created: boolean; call: CallRow }> {
    const { db, statements } = this.#require();
    const create = db.transaction(() => {
      const existing = statements.liveByRoom.get(call.roomName);
      if (existing) return { created: false, call: toCallRow(existing) };
      statements.insert.run({ ...call, snapshot: JSON.stringify(call.snapshot) });
      return { created: true, call: toCallRow(statements.byId.get(call.callId)!) };
    });
    return Promise.resolve(create.immediate());
  }

  saveSnapshot(callId: string, update: SnapshotUpdate): Promise<void> {
    const { statements } = this.#require();
    statements.update.run({ callId, ...update, snapshot: JSON.stringify(update.snapshot) });
    return Promise.resolve();
  }

  appendJournal(callId: string, entry: JournalEntry): Promise<void> {
    const { db, statements } = this.#require();
    db.transaction(() => {
      const { seq } = statements.nextSeq.get(callId)!;
      statements.appendJournal.run({
        callId,
        seq,
        at: entry.at,
        kind: entry.kind,
        state: entry.state,
        detail: entry.detail === undefined ? null : JSON.stringify(entry.detail),
      });
    })();
    return Promise.resolve();
  }

  getCall(callId: string): Promise<CallRow | undefined> {
    const record = this.#require().statements.byId.get(callId);
    return Promise.resolve(record ? toCallRow(record) : undefined);
  }

  getJournal(callId: string): Promise<StoredJournalEntry[]> {
    const rows = this.#require().statements.journal.all(callId);
    return Promise.resolve(
      rows.map((row) => ({
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
    const sql = `SELECT * FROM calls ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC LIMIT ?`;
    params.push(query.limit ?? DEFAULT_LIST_LIMIT);
    return Promise.resolve(
      db
        .prepare<unknown[], CallRowRecord>(sql)
        .all(...params)
        .map(toCallRow),
    );
  }

  countCalls(status: CallStatus): Promise<number> {
    return Promise.resolve(this.#require().statements.count.get(status)!.count);
  }

  listActive(): Promise<CallRow[]> {
    return Promise.resolve(this.#require().statements.active.all().map(toCallRow));
  }

  close(): Promise<void> {
    this.#db?.close();
    this.#db = undefined;
    this.#statements = undefined;
    return Promise.resolve();
  }
}
