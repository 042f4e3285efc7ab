/**
 * The fleet call store: PostgreSQL through `pg`, for supervisors that share one database.
 *
 * Ordering policy: pg queries are asynchronous and a pool may run two of them at once, so the
 * writes for one call are chained (each waits for the previous one of the same call), which
 * keeps "writes for one call are ordered" true without serialising different calls. The
 * chain entry is dropped when it settles, so memory does not grow with the number of calls.
 *
 * Each store may live in its own schema (`?schema=` on the URL, or the option), which the
 * tests use for isolation.
 */
import pg from 'pg';
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
const POOL_SIZE = 10;

const schemaSql = (schema: string) => `
CREATE SCHEMA IF NOT EXISTS ${schema};
CREATE TABLE IF NOT EXISTS ${schema}.calls (
  call_id         TEXT PRIMARY KEY,
  room_name       TEXT NOT NULL,
  machine_version TEXT NOT NULL,
  state           TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('active', 'done', 'failed')),
  snapshot        JSONB NOT NULL,
  egress_id       TEXT,
  created_at      TIMESTAMPTZ NOT NULL,
  updated_at      TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS calls_live_room ON ${schema}.calls (room_name) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS calls_state ON ${schema}.calls (state);
CREATE INDEX IF NOT EXISTS calls_status ON ${schema}.calls (status);
CREATE TABLE IF NOT EXISTS ${schema}.call_journal (
  call_id TEXT NOT NULL REFERENCES ${schema}.calls (call_id),
  seq     INTEGER NOT NULL,
  at      TIMESTAMPTZ NOT NULL,
  kind    TEXT NOT NULL,
  state   TEXT NOT NULL,
  detail  JSONB,
  PRIMARY KEY (call_id, seq)
);`;

interface CallRowRecord {
  call_id: string;
  room_name: string;
  machine_version: string;
  state: string;
  status: CallStatus;
  snapshot: unknown;
  egress_id: string | null;
  created_at: Date;
  updated_at: Date;
}

function toCallRow(record: CallRowRecord): CallRow {
  return {
    callId: record.call_id,
    roomName: record.room_name,
    machineVersion: record.machine_version,
    state: record.state,
    status: record.status,
    snapshot: record.snapshot,
    egressId: record.egress_id,
    createdAt: record.created_at.toISOString(),
    updatedAt: record.updated_at.toISOString(),
  };
}

export interface PostgresCallStoreOptions {
  connectionString: string;
  /** Schema for the tables; `public` by default, or `?schema=` on the URL. */
  schema?: string;
}

export class PostgresCallStore implements CallStore {
  readonly #schema: string;
  readonly #connectionString: string;
  #pool: pg.Pool | undefined;
  readonly #chains = new Map<string, Promise<unknown>>();

  constructor(options: PostgresCallStoreOptions) {
    const url = new URL(options.connectionString);
    const schema = options.schema ?? url.searchParams.get('schema') ?? 'public';
    if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`invalid PostgreSQL schema name: ${schema}`);
    url.searchParams.delete('schema');
    this.#schema = schema;
    this.#connectionString = url.toString();
  }

  async open(): Promise<void> {
    if (this.#pool) return;
    const pool = new pg.Pool({ connectionString: this.#connectionString, max: POOL_SIZE });
    // An idle client's error (server restart) must not crash the process; the pool replaces it.
    pool.on('error', () => undefined);
    try {
      await pool.query(schemaSql(this.#schema));
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw error;
    }
    this.#pool = pool;
  }

  #require(): pg.Pool {
    if (!this.#pool) throw new Error('the call store is not open');
    return this.#pool;
  }

  /** Runs `write` after every earlier write of the same call has settled. */
  #inOrder<T>(callId: string, write: () => Promise<T>): Promise<T> {
    const previous = this.#chains.get(callId) ?? Promise.resolve();
    const next = previous.then(write, write);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.#chains.set(callId, settled);
    void settled.then(() => {
      if (this.#chains.get(callId) === settled) this.#chains.delete(callId);
    });
    return next;
  }

  async createCall(call: NewCall): Promise<{ created: boolean; call: CallRow }> {
    const pool = this.#require();
    const inserted = await pool.query<CallRowRecord>(
      `INSERT INTO ${this.#schema}.calls (call_id, room_name, machine_version, state, status, snapshot, egress_id, created_at, updated_at)
       VALUES ($1, $2, $3, $4, 'active', $5, NULL, $6, $6)
       ON CONFLICT (room_name) WHERE status = 'active' DO NOTHING RETURNING *`,
      [
        call.callId,
        call.roomName,
        call.machineVersion,
        call.state,
        JSON.stringify(call.snapshot),
        call.createdAt,
      ],
    );
    const row = inserted.rows[0];
    if (row) return { created: true, call: toCallRow(row) };
    const existing = await pool.query<CallRowRecord>(
      `SELECT * FROM ${this.#schema}.calls WHERE room_name = $1 AND status = 'active'`,
      [call.roomName],
    );
    const live = existing.rows[0];
    // The live call finished between the two statements: try again, the room is free now.
    return live ? { created: false, call: toCallRow(live) } : this.createCall(call);
  }

  saveSnapshot(callId: string, update: SnapshotUpdate): Promise<void> {
    return this.#inOrder(callId, async () => {
      await this.#require().query(
        `UPDATE ${this.#schema}.calls SET state = $2, status = $3, snapshot = $4, machine_version = $5,
           egress_id = COALESCE($6, egress_id), updated_at = $7 WHERE call_id = $1`,
        [
          callId,
          update.state,
          update.status,
          JSON.stringify(update.snapshot),
          update.machineVersion,
          update.egressId,
          update.updatedAt,
        ],
      );
    });
  }

  appendJournal(callId: string, entry: JournalEntry): Promise<void> {
    return this.#inOrder(callId, async () => {
      await this.#require().query(
        `INSERT INTO ${this.#schema}.call_journal (call_id, seq, at, kind, state, detail)
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM ${this.#schema}.call_journal WHERE call_id = $1`,
        [
          callId,
          entry.at,
          entry.kind,
          entry.state,
          entry.detail === undefined ? null : JSON.stringify(entry.detail),
        ],
      );
    });
  }

  async getCall(callId: string): Promise<CallRow | undefined> {
    const result = await this.#require().query<CallRowRecord>(
      `SELECT * FROM ${this.#schema}.calls WHERE call_id = $1`,
      [callId],
    );
    const row = result.rows[0];
    return row ? toCallRow(row) : undefined;
  }

  async getJournal(callId: string): Promise<StoredJournalEntry[]> {
    const result = await this.#require().query<{
      seq: number;
      at: Date;
      kind: string;
      state: string;
      detail: Record<string, unknown> | null;
    }>(
      `SELECT seq, at, kind, state, detail FROM ${this.#schema}.call_journal WHERE call_id = $1 ORDER BY seq`,
      [callId],
    );
    return result.rows.map((row) => ({
      seq: row.seq,
      at: row.at.toISOString(),
      kind: row.kind,
      state: row.state,
      ...(row.detail === null ? {} : { detail: row.detail }),
    }));
  }

  async listCalls(query: ListCallsQuery): Promise<CallRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.state !== undefined) {
      params.push(query.state);
      where.push(`state = $${params.length}`);
    }
    if (query.status !== undefined) {
      params.push(query.status);
      where.push(`status = $${params.length}`);
    }
    params.push(query.limit ?? DEFAULT_LIST_LIMIT);
    const result = await this.#require().query<CallRowRecord>(
      `SELECT * FROM ${this.#schema}.calls ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY created_at DESC LIMIT $${params.length}`,
      params,
    );
    return result.rows.map(toCallRow);
  }

  async countCalls(status: CallStatus): Promise<number> {
    const result = await this.#require().query<{ count: string }>(
      `SELECT COUNT(*) AS count FROM ${this.#schema}.calls WHERE status = $1`,
      [status],
    );
    return Number(result.rows[0]?.count ?? 0);
  }

  async listActive(): Promise<CallRow[]> {
    const result = await this.#require().query<CallRowRecord>(
      `SELECT * FROM ${this.#schema}.calls WHERE status = 'active' ORDER BY created_at`,
    );
    return result.rows.map(toCallRow);
  }

  async close(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    if (!pool) return;
    await Promise.allSettled([...this.#chains.values()]);
    await pool.end();
  }
}
