/**
 * The fleet call store: PostgreSQL through `pg`, for supervisors that share one database.
 *
 * Time policy: every connection attempt and every query has a deadline (`timeoutMs`, 5 s by
 * default): a database that stops answering turns into `StoreUnavailableError` (503 at the API)
 * within it, never into a request that hangs. The same deadline is set on the server
 * (`statement_timeout`), and an idle transaction is ended by the server after twice that.
 *
 * Write policy: a commit is one transaction of at most three statements (events, snapshots,
 * journal), each one statement for the whole batch (`unnest` of arrays); sequence numbers come
 * from per-call counters on the call row, whose row lock orders concurrent committers of the
 * same call. Documents are stored as text (JSON), so every string JSON can carry, NUL and lone
 * surrogates included, is stored exactly, and nothing is parsed twice.
 *
 * Each store may live in its own schema (`?schema=` on the URL, or the option), which the
 * tests use for isolation.
 */
import pg from 'pg';
import {
  StoreUnavailableError,
  type CallRow,
  type CallStatus,
  type CallStore,
  type CommitBatch,
  type ListCallsQuery,
  type NewCall,
  type StoredEvent,
  type StoredJournalEntry,
} from './call-store.ts';

const DEFAULT_LIST_LIMIT = 500;
const POOL_SIZE = 10;
export const DEFAULT_STORE_TIMEOUT_MS = 5_000;

const schemaSql = (schema: string) => `
-- Supervisors starting together migrate one at a time (the lock ends with this transaction).
SELECT pg_advisory_xact_lock(hashtext('callsync schema ${schema}'));
CREATE SCHEMA IF NOT EXISTS ${schema};
CREATE TABLE IF NOT EXISTS ${schema}.calls (
  call_id          TEXT PRIMARY KEY,
  room_name        TEXT NOT NULL,
  machine_version  TEXT NOT NULL,
  state            TEXT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('active', 'done', 'failed')),
  snapshot         TEXT NOT NULL,
  egress_id        TEXT,
  created_at       TIMESTAMPTZ NOT NULL,
  updated_at       TIMESTAMPTZ NOT NULL
);
ALTER TABLE ${schema}.calls ADD COLUMN IF NOT EXISTS event_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ${schema}.calls ADD COLUMN IF NOT EXISTS applied_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ${schema}.calls ADD COLUMN IF NOT EXISTS transcript_items INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ${schema}.calls ADD COLUMN IF NOT EXISTS journal_seq INTEGER;
CREATE UNIQUE INDEX IF NOT EXISTS calls_live_room ON ${schema}.calls (room_name) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS calls_state ON ${schema}.calls (state);
CREATE INDEX IF NOT EXISTS calls_status ON ${schema}.calls (status);
CREATE TABLE IF NOT EXISTS ${schema}.call_journal (
  call_id TEXT NOT NULL REFERENCES ${schema}.calls (call_id),
  seq     INTEGER NOT NULL,
  at      TIMESTAMPTZ NOT NULL,
  kind    TEXT NOT NULL,
  state   TEXT NOT NULL,
  detail  TEXT,
  PRIMARY KEY (call_id, seq)
);
CREATE TABLE IF NOT EXISTS ${schema}.call_events (
  call_id TEXT NOT NULL REFERENCES ${schema}.calls (call_id),
  seq     INTEGER NOT NULL,
  event   TEXT NOT NULL,
  PRIMARY KEY (call_id, seq)
);
-- Stores from before the event log: documents become text, journal counters are backfilled.
DO $$ BEGIN
  IF (SELECT data_type FROM information_schema.columns
      WHERE table_schema = '${schema}' AND table_name = 'calls' AND column_name = 'snapshot') = 'jsonb' THEN
    ALTER TABLE ${schema}.calls ALTER COLUMN snapshot TYPE TEXT USING snapshot::text;
    ALTER TABLE ${schema}.call_journal ALTER COLUMN detail TYPE TEXT USING detail::text;
  END IF;
END $$;
UPDATE ${schema}.calls c SET journal_seq = (SELECT COALESCE(MAX(seq), 0) FROM ${schema}.call_journal j WHERE j.call_id = c.call_id)
  WHERE journal_seq IS NULL;
ALTER TABLE ${schema}.calls ALTER COLUMN journal_seq SET DEFAULT 0;
ALTER TABLE ${schema}.calls ALTER COLUMN journal_seq SET NOT NULL;`;

interface CallRowRecord {
  call_id: string;
  room_name: string;
  machine_version: string;
  state: string;
  status: CallStatus;
  snapshot: string;
  applied_seq: number;
  transcript_items: number;
  egress_id: string | null;
  created_at: Date;
  updated_at: Date;
}

const CALL_COLUMNS = `call_id, room_name, machine_version, state, status, snapshot, applied_seq, transcript_items,
  egress_id, created_at, updated_at`;

function toCallRow(record: CallRowRecord): CallRow {
  return {
    callId: record.call_id,
    roomName: record.room_name,
    machineVersion: record.machine_version,
    state: record.state,
    status: record.status,
    snapshot: JSON.parse(record.snapshot) as unknown,
    appliedSeq: record.applied_seq,
    transcriptItems: record.transcript_items,
    egressId: record.egress_id,
    createdAt: record.created_at.toISOString(),
    updatedAt: record.updated_at.toISOString(),
  };
}

/**
 * SQLSTATE classes that mean the request itself is wrong (data, integrity, syntax, feature):
 * repeating it cannot help, so it is not "unavailable". Everything else (connection refused or
 * lost, timeouts, server shutting down, out of resources, serialization) is.
 */
const REQUEST_ERROR_CLASSES = /^(22|23|42|0A)/;

function storeError(error: unknown, doing: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && REQUEST_ERROR_CLASSES.test(code)) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new StoreUnavailableError(`PostgreSQL could not ${doing}: ${reason}`, error);
}

export interface PostgresCallStoreOptions {
  connectionString: string;
  /** Schema for the tables; `public` by default, or `?schema=` on the URL. */
  schema?: string;
  /** Deadline for each connection attempt and each query, in milliseconds. */
  timeoutMs?: number;
}

export class PostgresCallStore implements CallStore {
  readonly #schema: string;
  readonly #connectionString: string;
  readonly #timeoutMs: number;
  #pool: pg.Pool | undefined;

  constructor(options: PostgresCallStoreOptions) {
    const url = new URL(options.connectionString);
    const schema = options.schema ?? url.searchParams.get('schema') ?? 'public';
    if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`invalid PostgreSQL schema name: ${schema}`);
    url.searchParams.delete('schema');
    this.#schema = schema;
    this.#connectionString = url.toString();
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
  }

  async open(): Promise<void> {
    if (this.#pool) return;
    const timeoutMs = this.#timeoutMs;
    const pool = new pg.Pool({
      connectionString: this.#connectionString,
      max: POOL_SIZE,
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs,
      statement_timeout: timeoutMs,
      idle_in_transaction_session_timeout: 2 * timeoutMs,
      keepAlive: true,
    });
    // An idle client's error (server restart) must not crash the process; the pool replaces it.
    pool.on('error', () => undefined);
    try {
      await pool.query(schemaSql(this.#schema));
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw storeError(error, 'open the store');
    }
    this.#pool = pool;
  }

  #require(): pg.Pool {
    if (!this.#pool) throw new Error('the call store is not open');
    return this.#pool;
  }

  async #query<R extends pg.QueryResultRow>(doing: string, sql: string, params?: unknown[]) {
    try {
      return await this.#require().query<R>(sql, params);
    } catch (error) {
      throw storeError(error, doing);
    }
  }

  async createCall(call: NewCall): Promise<{ created: boolean; call: CallRow }> {
    const inserted = await this.#query<CallRowRecord>(
      'create the call',
      `INSERT INTO ${this.#schema}.calls (call_id, room_name, machine_version, state, status, snapshot, egress_id, created_at, updated_at)
       VALUES ($1, $2, $3, $4, 'active', $5, NULL, $6, $6)
       ON CONFLICT (room_name) WHERE status = 'active' DO NOTHING RETURNING ${CALL_COLUMNS}`,
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
    const existing = await this.#query<CallRowRecord>(
      'create the call',
      `SELECT ${CALL_COLUMNS} FROM ${this.#schema}.calls WHERE room_name = $1 AND status = 'active'`,
      [call.roomName],
    );
    const live = existing.rows[0];
    // The live call finished between the two statements: try again, the room is free now.
    return live ? { created: false, call: toCallRow(live) } : this.createCall(call);
  }

  async commit(batch: CommitBatch): Promise<number[]> {
    const statements = this.#commitStatements(batch);
    if (statements.length === 0) return [];
    const pool = this.#require();
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      throw storeError(error, 'commit');
    }
    let failure: unknown;
    // A connection lost between two statements is emitted, not thrown: without a listener it
    // would crash the process. The next statement fails and reports it.
    const onError = (error: Error) => {
      failure = error;
    };
    client.on('error', onError);
    try {
      // One statement is a transaction of its own; more need BEGIN/COMMIT.
      const wrap = statements.length > 1;
      if (wrap) await client.query('BEGIN');
      let bases: Map<string, number> | undefined;
      for (const statement of statements) {
        const result = await client.query<{ call_id: string; base: number; inserted: number }>(
          statement.sql,
          statement.params,
        );
        if (statement.kind === 'events') {
          if (Number(result.rows[0]?.inserted ?? 0) !== batch.events.length) {
            throw new Error('an event names a call the store does not hold');
          }
          bases = new Map(result.rows.map((row) => [row.call_id, Number(row.base)]));
        }
      }
      if (wrap) await client.query('COMMIT');
      const next = new Map(bases);
      return batch.events.map(({ callId }) => {
        const seq = (next.get(callId) ?? 0) + 1;
        next.set(callId, seq);
        return seq;
      });
    } catch (error) {
      failure = error;
      throw storeError(error, 'commit');
    } finally {
      client.off('error', onError);
      // A client whose query failed or timed out may be mid-transaction or stuck: destroy it.
      client.release(failure === undefined ? undefined : failure instanceof Error ? failure : true);
    }
  }

  #commitStatements(batch: CommitBatch): { kind: string; sql: string; params: unknown[] }[] {
    const s = this.#schema;
    const statements: { kind: string; sql: string; params: unknown[] }[] = [];
    if (batch.events.length > 0) {
      statements.push({
        kind: 'events',
        sql: `WITH batch AS (
            SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS b(call_id, event, ord)
          ), counts AS (
            SELECT call_id, count(*)::int AS n FROM batch GROUP BY call_id
          ), bumped AS (
            UPDATE ${s}.calls c SET event_seq = c.event_seq + counts.n FROM counts
            WHERE c.call_id = counts.call_id RETURNING c.call_id, c.event_seq - counts.n AS base
          ), inserted AS (
            INSERT INTO ${s}.call_events (call_id, seq, event)
            SELECT b.call_id, bumped.base + row_number() OVER (PARTITION BY b.call_id ORDER BY b.ord), b.event
            FROM batch b JOIN bumped USING (call_id) RETURNING 1
          )
          SELECT call_id, base, (SELECT count(*) FROM inserted)::int AS inserted FROM bumped`,
        params: [batch.events.map((e) => e.callId), batch.events.map((e) => JSON.stringify(e.event))],
      });
    }
    if (batch.snapshots.length > 0) {
      const column = <K extends keyof CommitBatch['snapshots'][number]['update']>(key: K) =>
        batch.snapshots.map((s) => s.update[key]);
      statements.push({
        kind: 'snapshots',
        sql: `UPDATE ${s}.calls c SET state = u.state, status = u.status, snapshot = u.snapshot,
            applied_seq = u.applied_seq, transcript_items = u.transcript_items, machine_version = u.machine_version,
            egress_id = COALESCE(u.egress_id, c.egress_id), updated_at = u.updated_at
          FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::text[], $8::text[], $9::timestamptz[])
            AS u(call_id, state, status, snapshot, applied_seq, transcript_items, machine_version, egress_id, updated_at)
          WHERE c.call_id = u.call_id`,
        params: [
          batch.snapshots.map((s) => s.callId),
          column('state'),
          column('status'),
          batch.snapshots.map((s) => JSON.stringify(s.update.snapshot)),
          column('appliedSeq'),
          column('transcriptItems'),
          column('machineVersion'),
          column('egressId'),
          column('updatedAt'),
        ],
      });
    }
    if (batch.journal.length > 0) {
      const entries = batch.journal;
      statements.push({
        kind: 'journal',
        sql: `WITH batch AS (
            SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])
              WITH ORDINALITY AS b(call_id, at, kind, state, detail, ord)
          ), counts AS (
            SELECT call_id, count(*)::int AS n FROM batch GROUP BY call_id
          ), bumped AS (
            UPDATE ${s}.calls c SET journal_seq = c.journal_seq + counts.n FROM counts
            WHERE c.call_id = counts.call_id RETURNING c.call_id, c.journal_seq - counts.n AS base
          )
          INSERT INTO ${s}.call_journal (call_id, seq, at, kind, state, detail)
          SELECT b.call_id, bumped.base + row_number() OVER (PARTITION BY b.call_id ORDER BY b.ord), b.at, b.kind, b.state, b.detail
          FROM batch b JOIN bumped USING (call_id)`,
        params: [
          entries.map((e) => e.callId),
          entries.map((e) => e.entry.at),
          entries.map((e) => e.entry.kind),
          entries.map((e) => e.entry.state),
          entries.map((e) => (e.entry.detail === undefined ? null : JSON.stringify(e.entry.detail))),
        ],
      });
    }
    return statements;
  }

  async check(): Promise<void> {
    await this.#query('answer', 'SELECT 1');
  }

  async getEvents(callId: string, afterSeq = 0): Promise<StoredEvent[]> {
    const result = await this.#query<{ seq: number; event: string }>(
      'read the event log',
      `SELECT seq, event FROM ${this.#schema}.call_events WHERE call_id = $1 AND seq > $2 ORDER BY seq`,
      [callId, afterSeq],
    );
    return result.rows.map((row) => ({ seq: row.seq, event: JSON.parse(row.event) as unknown }));
  }

  async getCall(callId: string): Promise<CallRow | undefined> {
    const result = await this.#query<CallRowRecord>(
      'read the call',
      `SELECT ${CALL_COLUMNS} FROM ${this.#schema}.calls WHERE call_id = $1`,
      [callId],
    );
    const row = result.rows[0];
    return row ? toCallRow(row) : undefined;
  }

  async getJournal(callId: string): Promise<StoredJournalEntry[]> {
    const result = await this.#query<{
      seq: number;
      at: Date;
      kind: string;
      state: string;
      detail: string | null;
    }>(
      'read the journal',
      `SELECT seq, at, kind, state, detail FROM ${this.#schema}.call_journal WHERE call_id = $1 ORDER BY seq`,
      [callId],
    );
    return result.rows.map((row) => ({
      seq: row.seq,
      at: row.at.toISOString(),
      kind: row.kind,
      state: row.state,
      ...(row.detail === null ? {} : { detail: JSON.parse(row.detail) as Record<string, unknown> }),
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
    const result = await this.#query<CallRowRecord>(
      'list calls',
      `SELECT ${CALL_COLUMNS} FROM ${this.#schema}.calls ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY created_at DESC LIMIT $${params.length}`,
      params,
    );
    return result.rows.map(toCallRow);
  }

  async countCalls(status: CallStatus): Promise<number> {
    const result = await this.#query<{ count: string }>(
      'count calls',
      `SELECT COUNT(*) AS count FROM ${this.#schema}.calls WHERE status = $1`,
      [status],
    );
    return Number(result.rows[0]?.count ?? 0);
  }

  async listActive(): Promise<CallRow[]> {
    const result = await this.#query<CallRowRecord>(
      'list live calls',
      `SELECT ${CALL_COLUMNS} FROM ${this.#schema}.calls WHERE status = 'active' ORDER BY created_at`,
    );
    return result.rows.map(toCallRow);
  }

  async close(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    if (!pool) return;
    await pool.end();
  }
}
