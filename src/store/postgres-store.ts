/**
 * The fleet call store: PostgreSQL through `pg`, for supervisors that share one database.
 *
 * Time policy: every connection attempt and every query has a deadline (`timeoutMs`, 5 s by
 * default): a database that stops answering turns into `StoreUnavailableError` (503 at the API)
 * within it, never into a request that hangs. The same deadline is set on the server
 * (`statement_timeout`), and an idle transaction is ended by the server after twice that.
 *
 * Write policy: a commit is one transaction of at most four statements (events, snapshots,
 * journal, decisions), each one statement for the whole batch (`unnest` of arrays); sequence
 * numbers come from per-call counters on the call row, whose row lock orders concurrent
 * committers of the same call. In a fleet, where another instance's commit may touch the same
 * calls (it logs events for calls this one owns), a commit of several calls first locks their
 * rows in `call_id` order: two statements that lock rows in the order of their plans deadlock
 * when they meet, and PostgreSQL then aborts one commit (a 503 for every event in it).
 * Documents are stored as text (JSON), so every string JSON can carry, NUL and lone surrogates
 * included, is stored exactly, and nothing is parsed twice.
 *
 * Each store may live in its own schema (`?schema=` on the URL, or the option), which the
 * tests use for isolation.
 */
import pg from 'pg';
import type { Logger } from '../logging/logger.ts';
import type { TimeSource } from '../machines/timer.actor.ts';
import { PostgresFleet } from './postgres-fleet.ts';
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
const POOL_SIZE = 10;
export const DEFAULT_STORE_TIMEOUT_MS = 5_000;

/**
 * Migration policy: the schema below is applied only when the store's recorded version differs
 * from `SCHEMA_VERSION` (bump it with every change below): its `ALTER TABLE`s take an exclusive
 * lock on `calls` even when they change nothing, and in a fleet a start must not queue every
 * other instance's writes behind that lock. It runs in one transaction, one supervisor at a time,
 * and gives up after the store timeout rather than wait behind a stalled instance's locks.
 */
export const SCHEMA_VERSION = 4;

const schemaSql = (schema: string, lockTimeoutMs: number) => `
-- Supervisors starting together migrate one at a time (the lock ends with this transaction).
SELECT pg_advisory_xact_lock(hashtext('callsync schema ${schema}'));
SET LOCAL lock_timeout = '${lockTimeoutMs}ms';
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
ALTER TABLE ${schema}.calls ADD COLUMN IF NOT EXISTS owner TEXT;
ALTER TABLE ${schema}.calls ADD COLUMN IF NOT EXISTS owner_epoch BIGINT;
ALTER TABLE ${schema}.calls ADD COLUMN IF NOT EXISTS handled_seq INTEGER;
CREATE INDEX IF NOT EXISTS calls_owner ON ${schema}.calls (owner, owner_epoch) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS calls_egress ON ${schema}.calls (egress_id) WHERE egress_id IS NOT NULL;
-- The fleet's leases: one row per supervisor instance, a new epoch per process start.
CREATE SEQUENCE IF NOT EXISTS ${schema}.supervisor_epochs;
CREATE TABLE IF NOT EXISTS ${schema}.supervisors (
  instance_id TEXT PRIMARY KEY,
  epoch       BIGINT NOT NULL,
  expires_at  TIMESTAMPTZ NOT NULL,
  started_at  TIMESTAMPTZ NOT NULL
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
  detail  TEXT,
  PRIMARY KEY (call_id, seq)
);
CREATE TABLE IF NOT EXISTS ${schema}.call_events (
  call_id TEXT NOT NULL REFERENCES ${schema}.calls (call_id),
  seq     INTEGER NOT NULL,
  event   TEXT NOT NULL,
  PRIMARY KEY (call_id, seq)
);
ALTER TABLE ${schema}.call_events ADD COLUMN IF NOT EXISTS refusal TEXT;
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
ALTER TABLE ${schema}.calls ALTER COLUMN journal_seq SET NOT NULL;
-- Events logged before decisions were recorded count as decided (applied) up to the snapshot.
UPDATE ${schema}.calls SET handled_seq = applied_seq WHERE handled_seq IS NULL;
ALTER TABLE ${schema}.calls ALTER COLUMN handled_seq SET DEFAULT 0;
ALTER TABLE ${schema}.calls ALTER COLUMN handled_seq SET NOT NULL;
CREATE TABLE IF NOT EXISTS ${schema}.callsync_schema (version INTEGER NOT NULL);
DELETE FROM ${schema}.callsync_schema;
INSERT INTO ${schema}.callsync_schema (version) VALUES (${SCHEMA_VERSION});`;

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
  owner: string | null;
  owner_epoch: string | null;
  created_at: Date;
  updated_at: Date;
}

const CALL_COLUMNS = `call_id, room_name, machine_version, state, status, snapshot, applied_seq, handled_seq,
  transcript_items, egress_id, owner, owner_epoch, created_at, updated_at`;

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
    owner:
      record.owner === null || record.owner_epoch === null
        ? null
        : { instanceId: record.owner, epoch: Number(record.owner_epoch) },
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

/** Every call a commit writes (PostgreSQL's `ORDER BY call_id` sets the order they are locked in). */
function callsOf(batch: CommitBatch): string[] {
  const callIds = new Set<string>();
  for (const { callId } of batch.events) callIds.add(callId);
  for (const { callId } of batch.snapshots) callIds.add(callId);
  for (const { callId } of batch.journal) callIds.add(callId);
  for (const { callId } of batch.handled ?? []) callIds.add(callId);
  return [...callIds];
}

interface CommitStatement {
  kind: 'events' | 'snapshots' | 'journal' | 'handled';
  /** For owner writes: the calls it writes (those not written were fenced). */
  callIds: readonly string[];
  sql: string;
  params: unknown[];
}

export interface PostgresCallStoreOptions {
  connectionString: string;
  /** Schema for the tables; `public` by default, or `?schema=` on the URL. */
  schema?: string;
  /** Deadline for each connection attempt and each query, in milliseconds. */
  timeoutMs?: number;
  /** Join a fleet: hold a lease as this instance, own the calls it creates or claims. */
  fleet?: { instanceId: string; leaseMs: number; time: TimeSource; logger?: Logger | undefined } | undefined;
}

export class PostgresCallStore implements CallStore {
  readonly #schema: string;
  readonly #connectionString: string;
  readonly #timeoutMs: number;
  readonly #fleetOptions: PostgresCallStoreOptions['fleet'];
  #pool: pg.Pool | undefined;
  #fleet: PostgresFleet | undefined;
  #startingFleet: PostgresFleet | undefined;
  #closeRequested = false;

  constructor(options: PostgresCallStoreOptions) {
    const url = new URL(options.connectionString);
    const schema = options.schema ?? url.searchParams.get('schema') ?? 'public';
    if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`invalid PostgreSQL schema name: ${schema}`);
    url.searchParams.delete('schema');
    this.#schema = schema;
    this.#connectionString = url.toString();
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
    this.#fleetOptions = options.fleet;
  }

  get fleet(): PostgresFleet | undefined {
    return this.#fleet;
  }

  async open(): Promise<void> {
    if (this.#pool) return;
    this.#closeRequested = false;
    const timeoutMs = this.#timeoutMs;
    const pool = new pg.Pool({
      connectionString: this.#connectionString,
      max: POOL_SIZE,
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs,
      statement_timeout: timeoutMs,
      // A stopped (SIGSTOP) process holding a transaction keeps its call rows locked until this
      // ends it; in a fleet that must come before the lease would let another instance take over.
      idle_in_transaction_session_timeout: this.#fleetOptions
        ? Math.min(2 * timeoutMs, Math.max(500, Math.floor(this.#fleetOptions.leaseMs / 2)))
        : 2 * timeoutMs,
      keepAlive: true,
    });
    // An idle client's error (server restart) must not crash the process; the pool replaces it.
    pool.on('error', () => undefined);
    try {
      if ((await this.#schemaVersion(pool)) !== SCHEMA_VERSION)
        await pool.query(schemaSql(this.#schema, timeoutMs));
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw storeError(error, 'open the store');
    }
    if (this.#closeRequested) {
      await pool.end().catch(() => undefined);
      throw new StoreUnavailableError('the call store was closed while it opened');
    }
    if (this.#fleetOptions) {
      const fleet = new PostgresFleet({
        ...this.#fleetOptions,
        connectionString: this.#connectionString,
        schema: this.#schema,
        pool,
        toCallRow,
        callColumns: CALL_COLUMNS,
        storeError,
      });
      // A start may wait for this instance id's old lease to lapse: `close()` ends that wait.
      this.#startingFleet = fleet;
      try {
        await fleet.start();
      } catch (error) {
        await fleet.close();
        await pool.end().catch(() => undefined);
        throw error;
      } finally {
        this.#startingFleet = undefined;
      }
      this.#fleet = fleet;
    }
    this.#pool = pool;
  }

  /** The schema version the store records; undefined before the first migration. */
  async #schemaVersion(pool: pg.Pool): Promise<number | undefined> {
    const table = await pool.query<{ exists: string | null }>(`SELECT to_regclass($1)::text AS exists`, [
      `${this.#schema}.callsync_schema`,
    ]);
    if (table.rows[0]?.exists == null) return undefined;
    const version = await pool.query<{ version: number }>(
      `SELECT version FROM ${this.#schema}.callsync_schema`,
    );
    return version.rows[0]?.version;
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
      `INSERT INTO ${this.#schema}.calls (call_id, room_name, machine_version, state, status, snapshot, egress_id,
         created_at, updated_at, owner, owner_epoch)
       VALUES ($1, $2, $3, $4, 'active', $5, NULL, $6, $6, $7, $8)
       ON CONFLICT (room_name) WHERE status = 'active' DO NOTHING RETURNING ${CALL_COLUMNS}`,
      [
        call.callId,
        call.roomName,
        call.machineVersion,
        call.state,
        JSON.stringify(call.snapshot),
        call.createdAt,
        this.#fleet?.instanceId ?? null,
        this.#fleet ? this.#fleet.epoch : null,
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
    // The epoch the owner writes carry: a report of refused writes names it.
    const fencedEpoch = this.#fleet?.epoch ?? 0;
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
      const lockFirst = this.#fleet === undefined ? [] : callsOf(batch);
      // One statement is a transaction of its own; more, or a lock first, need BEGIN/COMMIT.
      const wrap = statements.length > 1 || lockFirst.length > 1;
      if (wrap) await client.query('BEGIN');
      if (lockFirst.length > 1) {
        await client.query(
          `SELECT 1 FROM ${this.#schema}.calls WHERE call_id = ANY($1::text[]) ORDER BY call_id FOR UPDATE`,
          [lockFirst],
        );
      }
      let bases: Map<string, number> | undefined;
      const fenced = new Set<string>();
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
        } else {
          // An owner write changes only the calls this instance still owns.
          const written = new Set(result.rows.map((row) => row.call_id));
          for (const callId of statement.callIds) if (!written.has(callId)) fenced.add(callId);
        }
      }
      if (wrap) await client.query('COMMIT');
      if (fenced.size > 0) this.#fleet?.emit('fenced', { callIds: [...fenced], epoch: fencedEpoch });
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

  #commitStatements(batch: CommitBatch): CommitStatement[] {
    const s = this.#schema;
    const statements: CommitStatement[] = [];
    // Owner writes carry the fence: the call's owner and epoch, and that epoch's lease unexpired.
    const fleet = this.#fleet;
    const fenced = (params: unknown[]): { sql: string; params: unknown[] } =>
      fleet
        ? {
            sql: PostgresFleet.ownerFence(s, params.length + 1, params.length + 2),
            params: [...params, fleet.instanceId, fleet.epoch],
          }
        : { sql: 'TRUE', params };
    if (batch.events.length > 0) {
      statements.push({
        kind: 'events',
        callIds: [],
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
      const fence = fenced([
        batch.snapshots.map((s) => s.callId),
        column('state'),
        column('status'),
        batch.snapshots.map((s) => JSON.stringify(s.update.snapshot)),
        column('appliedSeq'),
        column('transcriptItems'),
        column('machineVersion'),
        column('egressId'),
        column('updatedAt'),
      ]);
      statements.push({
        kind: 'snapshots',
        callIds: batch.snapshots.map((s) => s.callId),
        sql: `UPDATE ${s}.calls c SET state = u.state, status = u.status, snapshot = u.snapshot,
            applied_seq = u.applied_seq, transcript_items = u.transcript_items, machine_version = u.machine_version,
            egress_id = COALESCE(u.egress_id, c.egress_id), updated_at = u.updated_at
          FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::text[], $8::text[], $9::timestamptz[])
            AS u(call_id, state, status, snapshot, applied_seq, transcript_items, machine_version, egress_id, updated_at)
          WHERE c.call_id = u.call_id AND ${fence.sql}
          RETURNING c.call_id`,
        params: fence.params,
      });
    }
    if (batch.journal.length > 0) {
      const entries = batch.journal;
      const fence = fenced([
        entries.map((e) => e.callId),
        entries.map((e) => e.entry.at),
        entries.map((e) => e.entry.kind),
        entries.map((e) => e.entry.state),
        entries.map((e) => (e.entry.detail === undefined ? null : JSON.stringify(e.entry.detail))),
      ]);
      statements.push({
        kind: 'journal',
        callIds: [...new Set(entries.map((e) => e.callId))],
        sql: `WITH batch AS (
            SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])
              WITH ORDINALITY AS b(call_id, at, kind, state, detail, ord)
          ), counts AS (
            SELECT call_id, count(*)::int AS n FROM batch GROUP BY call_id
          ), bumped AS (
            UPDATE ${s}.calls c SET journal_seq = c.journal_seq + counts.n FROM counts
            WHERE c.call_id = counts.call_id AND ${fence.sql}
            RETURNING c.call_id, c.journal_seq - counts.n AS base
          ), inserted AS (
            INSERT INTO ${s}.call_journal (call_id, seq, at, kind, state, detail)
            SELECT b.call_id, bumped.base + row_number() OVER (PARTITION BY b.call_id ORDER BY b.ord), b.at, b.kind, b.state, b.detail
            FROM batch b JOIN bumped USING (call_id) RETURNING 1
          )
          SELECT call_id FROM bumped`,
        params: fence.params,
      });
    }
    const handled = batch.handled ?? [];
    if (handled.length > 0) {
      const fence = fenced([
        handled.map((h) => h.callId),
        handled.map((h) => h.seq),
        handled.map((h) => (h.refusal === undefined ? null : JSON.stringify(h.refusal))),
      ]);
      statements.push({
        kind: 'handled',
        callIds: [...new Set(handled.map((h) => h.callId))],
        sql: `WITH batch AS (
            SELECT * FROM unnest($1::text[], $2::int[], $3::text[]) AS b(call_id, seq, refusal)
          ), owned AS (
            UPDATE ${s}.calls c SET handled_seq = GREATEST(c.handled_seq, m.seq)
            FROM (SELECT call_id, max(seq) AS seq FROM batch GROUP BY call_id) m
            WHERE c.call_id = m.call_id AND ${fence.sql}
            RETURNING c.call_id
          ), refused AS (
            UPDATE ${s}.call_events e SET refusal = b.refusal FROM batch b JOIN owned USING (call_id)
            WHERE e.call_id = b.call_id AND e.seq = b.seq AND b.refusal IS NOT NULL RETURNING 1
          )
          SELECT call_id FROM owned`,
        params: fence.params,
      });
    }
    return statements;
  }

  async check(): Promise<void> {
    await this.#query('answer', 'SELECT 1');
  }

  async getEvents(callId: string, afterSeq = 0): Promise<StoredEvent[]> {
    const result = await this.#query<{ seq: number; event: string; refusal: string | null }>(
      'read the event log',
      `SELECT seq, event, refusal FROM ${this.#schema}.call_events WHERE call_id = $1 AND seq > $2 ORDER BY seq`,
      [callId, afterSeq],
    );
    return result.rows.map((row) => ({
      seq: row.seq,
      event: JSON.parse(row.event) as unknown,
      ...(row.refusal === null ? {} : { refusal: JSON.parse(row.refusal) as Refusal }),
    }));
  }

  async getEventOutcome(callId: string, seq: number): Promise<EventOutcome | undefined> {
    const result = await this.#query<{ status: CallStatus; handled_seq: number; refusal: string | null }>(
      'read an event outcome',
      `SELECT c.status, c.handled_seq, e.refusal FROM ${this.#schema}.calls c
       LEFT JOIN ${this.#schema}.call_events e ON e.call_id = c.call_id AND e.seq = $2
       WHERE c.call_id = $1`,
      [callId, seq],
    );
    const row = result.rows[0];
    if (!row) return undefined;
    const refusal = row.refusal === null ? undefined : (JSON.parse(row.refusal) as Refusal);
    return { status: row.status, handledSeq: row.handled_seq, refusal };
  }

  async findLiveCall(by: {
    egressId?: string | undefined;
    roomName?: string | undefined;
  }): Promise<CallRow | undefined> {
    const s = this.#schema;
    if (by.egressId !== undefined) {
      const result = await this.#query<CallRowRecord>(
        'find the call',
        `SELECT ${CALL_COLUMNS} FROM ${s}.calls WHERE egress_id = $1 AND status = 'active'`,
        [by.egressId],
      );
      const row = result.rows[0];
      if (row) return toCallRow(row);
    }
    if (by.roomName === undefined) return undefined;
    const result = await this.#query<CallRowRecord>(
      'find the call',
      `SELECT ${CALL_COLUMNS} FROM ${s}.calls WHERE room_name = $1 AND status = 'active'`,
      [by.roomName],
    );
    const row = result.rows[0];
    return row ? toCallRow(row) : undefined;
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
    if (query.since !== undefined) {
      params.push(query.since);
      where.push(`created_at >= $${params.length}::timestamptz`);
    }
    if (query.after !== undefined) {
      params.push(query.after.createdAt, query.after.callId);
      where.push(`(created_at, call_id) < ($${params.length - 1}::timestamptz, $${params.length})`);
    }
    params.push(query.limit ?? DEFAULT_LIST_LIMIT);
    const result = await this.#query<CallRowRecord>(
      'list calls',
      `SELECT ${CALL_COLUMNS} FROM ${this.#schema}.calls ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY created_at DESC, call_id DESC LIMIT $${params.length}`,
      params,
    );
    return result.rows.map(toCallRow);
  }

  async dismissCall(callId: string, dismissal: { reason: string; at: string }): Promise<CallRow | undefined> {
    const s = this.#schema;
    // One statement: the call leaves `failed` and its journal says why, or nothing happens.
    const result = await this.#query<CallRowRecord>(
      'dismiss the call',
      `WITH dismissed AS (
         UPDATE ${s}.calls SET status = 'done', state = '${DISMISSED_STATE}', updated_at = $2::timestamptz,
           journal_seq = journal_seq + 1
         WHERE call_id = $1 AND status = 'failed'
         RETURNING ${CALL_COLUMNS}, journal_seq
       ), journaled AS (
         INSERT INTO ${s}.call_journal (call_id, seq, at, kind, state, detail)
         SELECT call_id, journal_seq, $2::timestamptz, 'dismissed', '${DISMISSED_STATE}', $3 FROM dismissed
       )
       SELECT ${CALL_COLUMNS} FROM dismissed`,
      [callId, dismissal.at, JSON.stringify({ reason: dismissal.reason })],
    );
    const row = result.rows[0];
    return row ? toCallRow(row) : undefined;
  }

  async pruneFinished(before: string, limit: number): Promise<number> {
    const s = this.#schema;
    // SKIP LOCKED: in a fleet every instance prunes; none waits for another's batch.
    const result = await this.#query<{ pruned: string }>(
      'prune finished calls',
      `WITH old AS (
         SELECT call_id FROM ${s}.calls WHERE status = 'done' AND updated_at <= $1::timestamptz
         ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED
       ), events AS (
         DELETE FROM ${s}.call_events e USING old WHERE e.call_id = old.call_id
       ), journal AS (
         DELETE FROM ${s}.call_journal j USING old WHERE j.call_id = old.call_id
       ), gone AS (
         DELETE FROM ${s}.calls c USING old WHERE c.call_id = old.call_id RETURNING 1
       )
       SELECT count(*)::text AS pruned FROM gone`,
      [before, limit],
    );
    return Number(result.rows[0]?.pruned ?? 0);
  }

  async countCalls(status: CallStatus): Promise<number> {
    const result = await this.#query<{ count: string }>(
      'count calls',
      `SELECT COUNT(*) AS count FROM ${this.#schema}.calls WHERE status = $1`,
      [status],
    );
    return Number(result.rows[0]?.count ?? 0);
  }

  async finishedSince(sinceIso: string, limit: number): Promise<FinishedCallTimes[]> {
    // The snapshot is JSON text (see the schema); `::json` parses it without jsonb's rewriting.
    const result = await this.#query<{
      ended_at_ms: string | null;
      acknowledged_at_ms: string | null;
      failed_at_ms: string | null;
    }>(
      'read finished calls',
      `SELECT snapshot::json #>> '{context,end,endedAtMs}' AS ended_at_ms,
              snapshot::json #>> '{context,callDataAcknowledgedAt}' AS acknowledged_at_ms,
              snapshot::json #>> '{context,failure,at}' AS failed_at_ms
       FROM ${this.#schema}.calls WHERE status IN ('done', 'failed') AND updated_at >= $1::timestamptz
       ORDER BY updated_at DESC LIMIT $2`,
      [sinceIso, limit],
    );
    const ms = (text: string | null) => (text === null ? null : Number(text));
    return result.rows.map((row) => ({
      endedAtMs: ms(row.ended_at_ms),
      callDataAcknowledgedAtMs: ms(row.acknowledged_at_ms),
      failedAtMs: ms(row.failed_at_ms),
    }));
  }

  async countByState(): Promise<Record<string, number>> {
    const result = await this.#query<{ state: string; count: string }>(
      'count calls by state',
      `SELECT state, COUNT(*) AS count FROM ${this.#schema}.calls GROUP BY state`,
    );
    return Object.fromEntries(result.rows.map((row) => [row.state, Number(row.count)]));
  }

  async listActive(): Promise<CallRow[]> {
    const result = await this.#query<CallRowRecord>(
      'list live calls',
      `SELECT ${CALL_COLUMNS} FROM ${this.#schema}.calls WHERE status = 'active' ORDER BY created_at`,
    );
    return result.rows.map(toCallRow);
  }

  async close(): Promise<void> {
    // An open in progress stops at its next step (a fleet start at once) and ends what it made.
    this.#closeRequested = true;
    await this.#startingFleet?.close();
    const pool = this.#pool;
    const fleet = this.#fleet;
    this.#pool = undefined;
    this.#fleet = undefined;
    await fleet?.close();
    if (!pool) return;
    await pool.end();
  }
}
