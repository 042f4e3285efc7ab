/**
 * A fleet of supervisors on one PostgreSQL: this instance's lease, the claims that move calls
 * between instances, and the notes they send each other (`LISTEN`/`NOTIFY`).
 *
 * Lease policy (the reason for each number):
 * - Each process start registers a new epoch (a sequence) in `supervisors`; renewals change the
 *   row only while that epoch still holds an unexpired lease, judged on the database's clock,
 *   so clock skew between machines does not matter.
 * - A start under an instance id whose lease has not lapsed waits for it to lapse (at most
 *   `leaseMs`): the process holding it may only be paused, and until the lapse it still trusts
 *   its lease and may send to the CRM, so its calls must not move yet. If the holder is seen
 *   renewing twice meanwhile (once may be a dead holder's last renewal landing late) it is
 *   running: the start fails (`INSTANCE_ID_IN_USE`); a running process displaced that way tries
 *   again each lease, so two processes never take one id from each other in turn.
 * - Renewal every `leaseMs / 5` (1 s for the default 5 s lease): four renewals can fail before
 *   the lease lapses.
 * - Trust window: a renewal that started at t lets this instance act until t + leaseMs −
 *   `LEASE_TRUST_MARGIN_MS` (or − leaseMs / 5 for short leases), before the database would let
 *   another instance take its calls. Past it the instance stops its calls itself (`lost`), and
 *   registers a new epoch: its old calls become orphans that any instance (itself included)
 *   claims.
 * - Renewals run on a dedicated connection, so a busy pool cannot starve them; their deadline is
 *   half the lease.
 * - Notes go out coalesced per tick from the pool, not inside write transactions (a NOTIFY
 *   inside one serialises every commit); they only speed things up: every waiter also polls.
 * - Claims use `FOR UPDATE SKIP LOCKED` and re-check the owner they read, so concurrent
 *   sweepers claim each orphan once. No advisory locks: a stopped (SIGSTOP) process keeps them.
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Logger } from '../logging/logger.ts';
import type { TimeSource } from '../machines/timer.actor.ts';
import { CallsyncError } from '../errors.ts';
import {
  StoreUnavailableError,
  type CallFleet,
  type CallRow,
  type FleetEventMap,
  type FleetNote,
} from './call-store.ts';

export const LEASE_TRUST_MARGIN_MS = 1_000;
/** How long past the lease's expiry a start waiting for it tries again (the read and the expiry race). */
export const LEASE_LAPSE_WAIT_MARGIN_MS = 50;
/** Waits before reconnecting the notification listener: quick first, then every 5 s. */
export const LISTEN_RECONNECT_DELAYS_MS: readonly number[] = [200, 500, 1_000, 2_000, 5_000];

export interface PostgresFleetOptions {
  connectionString: string;
  schema: string;
  /** The pool the store uses: claims and notes go through it. */
  pool: pg.Pool;
  instanceId: string;
  leaseMs: number;
  time: TimeSource;
  logger?: Logger | undefined;
  /** Turns a row of `calls` into a `CallRow` (the store's reader). */
  toCallRow: (record: never) => CallRow;
  /** The store's column list for `calls`. */
  callColumns: string;
  /** The store's own error mapping (unavailable vs. refused). */
  storeError: (error: unknown, doing: string) => unknown;
}

function fleetClosed(): StoreUnavailableError {
  return new StoreUnavailableError('the fleet is closed');
}

/** The process holding this instance id's lease, as its row reads. */
interface LeaseHolder {
  epoch: string;
  expiresAt: string;
  remainingMs: number;
}

interface PublishedNote {
  from: string;
  note: FleetNote;
}

export class PostgresFleet extends EventEmitter<FleetEventMap> implements CallFleet {
  readonly instanceId: string;
  readonly leaseMs: number;
  readonly #options: PostgresFleetOptions;
  readonly #channel: string;
  #epoch = 0;
  #trustedUntil = 0;
  #leaseClient: pg.Client | undefined;
  #listenClient: pg.Client | undefined;
  #renewTimer: unknown;
  #listenTimer: unknown;
  #listenFailures = 0;
  #outbox: FleetNote[] = [];
  #flushScheduled = false;
  #closed = false;
  #released = false;
  #cancelWait: (() => void) | undefined;
  /** Another running process holds this instance id (said once, until this one registers again). */
  #displaced = false;

  constructor(options: PostgresFleetOptions) {
    super();
    this.#options = options;
    this.instanceId = options.instanceId;
    this.leaseMs = options.leaseMs;
    this.#channel = `callsync_${options.schema}`;
  }

  get epoch(): number {
    return this.#epoch;
  }

  get #renewEveryMs(): number {
    return Math.max(100, Math.floor(this.leaseMs / 5));
  }

  trusted(): boolean {
    return !this.#released && this.#epoch > 0 && this.#options.time.now() < this.#trustedUntil;
  }

  /** Registers the lease and starts renewing it and listening. */
  async start(): Promise<void> {
    this.#leaseClient = await this.#connect('connect the lease connection');
    await this.#register();
    this.#scheduleRenew();
    await this.#listen().catch((error: unknown) => this.#listenFailed(error));
    if (this.#closed) throw fleetClosed();
  }

  async #connect(doing: string): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.#options.connectionString,
      connectionTimeoutMillis: Math.max(1_000, Math.floor(this.leaseMs / 2)),
      query_timeout: Math.max(500, Math.floor(this.leaseMs / 2)),
      keepAlive: true,
    });
    // A lost connection is emitted; the next query reports it and is retried.
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw this.#options.storeError(error, doing);
    }
    // Closed while it connected: nobody else will end this one.
    if (this.#closed) {
      await client.end().catch(() => undefined);
      throw fleetClosed();
    }
    return client;
  }

  async #leaseQuery<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    if (this.#closed) throw fleetClosed();
    if (!this.#leaseClient) this.#leaseClient = await this.#connect('connect the lease connection');
    try {
      return await this.#leaseClient.query<R>(sql, params);
    } catch (error) {
      const client = this.#leaseClient;
      this.#leaseClient = undefined;
      await client.end().catch(() => undefined);
      throw this.#options.storeError(error, 'renew the lease');
    }
  }

  async #register(): Promise<void> {
    const s = this.#options.schema;
    let seen: LeaseHolder | undefined;
    let renewals = 0;
    for (;;) {
      if (this.#closed || this.#released) throw fleetClosed();
      const startedAt = this.#options.time.now();
      const result = await this.#leaseQuery<{ epoch: string }>(
        `INSERT INTO ${s}.supervisors (instance_id, epoch, expires_at, started_at)
         VALUES ($1, nextval('${s}.supervisor_epochs'), now() + make_interval(secs => $2::float8 / 1000), now())
         ON CONFLICT (instance_id) DO UPDATE SET epoch = EXCLUDED.epoch, expires_at = EXCLUDED.expires_at,
           started_at = EXCLUDED.started_at
         WHERE ${s}.supervisors.expires_at <= now()
         RETURNING epoch`,
        [this.instanceId, this.leaseMs],
      );
      const registered = result.rows[0];
      if (registered) {
        this.#epoch = Number(registered.epoch);
        this.#trustedUntil = startedAt + this.#trustMs();
        this.#released = false;
        this.#displaced = false;
        this.#options.logger?.info(
          { instanceId: this.instanceId, epoch: this.#epoch },
          'fleet lease registered',
        );
        this.emit('registered', { epoch: this.#epoch });
        return;
      }
      const holder = await this.#leaseHolder();
      if (!holder) continue; // released meanwhile
      // A dead holder's last renewal may still land once after it was read; a running one renews
      // every fifth of the lease, so it is seen renewing again.
      if (seen && (holder.epoch !== seen.epoch || holder.expiresAt !== seen.expiresAt)) renewals += 1;
      if (renewals >= 2) {
        throw new CallsyncError(
          'INSTANCE_ID_IN_USE',
          `CALLSYNC_INSTANCE_ID ${this.instanceId} is held by a running process (epoch ${holder.epoch}, ` +
            'which kept renewing its lease while this one waited for it to lapse); give each process its own id',
          { retryable: false, details: { instanceId: this.instanceId, epoch: holder.epoch } },
        );
      }
      seen = holder;
      this.#options.logger?.warn(
        { instanceId: this.instanceId, epoch: holder.epoch, waitMs: holder.remainingMs },
        'fleet lease of this instance id still held; waiting for it to lapse',
      );
      await this.#wait(holder.remainingMs + LEASE_LAPSE_WAIT_MARGIN_MS);
    }
  }

  /** The lease row of this instance id: its epoch, expiry (as the database wrote it) and time left. */
  async #leaseHolder(): Promise<LeaseHolder | undefined> {
    const result = await this.#leaseQuery<{ epoch: string; expires_at: string; remaining_ms: number }>(
      `SELECT epoch, expires_at::text AS expires_at,
         GREATEST(0, EXTRACT(EPOCH FROM expires_at - now()) * 1000)::float8 AS remaining_ms
       FROM ${this.#options.schema}.supervisors WHERE instance_id = $1`,
      [this.instanceId],
    );
    const row = result.rows[0];
    if (!row) return undefined;
    return { epoch: row.epoch, expiresAt: row.expires_at, remainingMs: Math.ceil(row.remaining_ms) };
  }

  /** Resolves after `ms` on this fleet's clock, or at once (rejecting) when the fleet closes. */
  #wait(ms: number): Promise<void> {
    if (this.#closed) return Promise.reject(fleetClosed());
    return new Promise<void>((resolve, reject) => {
      const { time } = this.#options;
      const timer = time.setTimeout(() => {
        this.#cancelWait = undefined;
        resolve();
      }, ms);
      this.#cancelWait = () => {
        this.#cancelWait = undefined;
        time.clearTimeout(timer);
        reject(fleetClosed());
      };
    });
  }

  #trustMs(): number {
    return this.leaseMs - Math.min(LEASE_TRUST_MARGIN_MS, Math.floor(this.leaseMs / 5));
  }

  #scheduleRenew(): void {
    if (this.#closed || this.#released) return;
    this.#renewTimer = this.#options.time.setTimeout(() => {
      this.#renewTimer = undefined;
      void this.#renew().finally(() => this.#scheduleRenew());
    }, this.#renewEveryMs);
  }

  async #renew(): Promise<void> {
    const s = this.#options.schema;
    const startedAt = this.#options.time.now();
    const wasTrusted = this.trusted();
    try {
      if (this.#epoch === 0) {
        await this.#register();
        return;
      }
      const result = await this.#leaseQuery(
        `UPDATE ${s}.supervisors SET expires_at = now() + make_interval(secs => $3::float8 / 1000)
         WHERE instance_id = $1 AND epoch = $2 AND expires_at > now() RETURNING 1`,
        [this.instanceId, this.#epoch, this.leaseMs],
      );
      if (this.#closed || this.#released) return;
      if (result.rowCount === 1) {
        this.#trustedUntil = startedAt + this.#trustMs();
        this.emit('renewed', { seconds: (this.#options.time.now() - startedAt) / 1000 });
        return;
      }
      // The lease lapsed on the database's clock (or another process took this instance id).
      this.#options.logger?.error(
        { instanceId: this.instanceId, epoch: this.#epoch },
        'fleet lease lost: it lapsed before it was renewed; its calls go to other instances',
      );
      this.#lose();
      await this.#register();
    } catch (error) {
      if (this.#closed) return;
      if (error instanceof CallsyncError && error.code === 'INSTANCE_ID_IN_USE') {
        // Another process runs under this id: this one owns nothing, says so once, and registers
        // again only once that process's lease lapses (each try waits for it).
        if (!this.#displaced) {
          this.#options.logger?.error(
            { err: error, instanceId: this.instanceId },
            'fleet lease given up: another running process holds this instance id; this one drives no calls until it stops',
          );
        }
        this.#displaced = true;
        return;
      }
      this.#options.logger?.warn({ err: error, instanceId: this.instanceId }, 'fleet lease renewal failed');
      if (wasTrusted && !this.trusted()) {
        this.#options.logger?.error(
          { instanceId: this.instanceId, epoch: this.#epoch },
          'fleet lease not renewed within its trust window; this instance stops its calls',
        );
        this.#lose();
      }
    }
  }

  #lose(): void {
    // A new epoch is registered next: the calls of this one are orphans for every sweeper.
    this.#epoch = 0;
    this.#trustedUntil = 0;
    this.emit('lost');
  }

  async #listen(): Promise<void> {
    if (this.#closed) return;
    const client = await this.#connect('connect the notification listener');
    client.on('notification', (message) => {
      if (message.channel !== this.#channel || message.payload === undefined) return;
      let published: PublishedNote;
      try {
        published = JSON.parse(message.payload) as PublishedNote;
      } catch {
        return;
      }
      if (published.from !== this.instanceId) this.emit('note', published.note);
    });
    client.on('error', (error) => this.#listenFailed(error));
    client.on('end', () => {
      if (this.#listenClient === client) this.#listenFailed(new Error('listener connection ended'));
    });
    await client.query(`LISTEN ${this.#channel}`);
    if (this.#closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#listenClient = client;
    this.#listenFailures = 0;
  }

  #listenFailed(error: unknown): void {
    const client = this.#listenClient;
    this.#listenClient = undefined;
    void client?.end().catch(() => undefined);
    if (this.#closed || this.#listenTimer !== undefined) return;
    this.#listenFailures += 1;
    this.#options.logger?.warn({ err: error }, 'fleet notification listener lost; polling until it is back');
    const delays = LISTEN_RECONNECT_DELAYS_MS;
    const delay = delays[Math.min(this.#listenFailures, delays.length) - 1] ?? 5_000;
    this.#listenTimer = this.#options.time.setTimeout(() => {
      this.#listenTimer = undefined;
      void this.#listen().catch((next: unknown) => this.#listenFailed(next));
    }, delay);
  }

  notify(notes: readonly FleetNote[]): void {
    if (this.#closed || notes.length === 0) return;
    this.#outbox.push(...notes);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const payloads = [
        ...new Set(this.#outbox.map((note) => JSON.stringify({ from: this.instanceId, note }))),
      ];
      this.#outbox = [];
      if (this.#closed) return;
      // Best effort: a lost note is made up for by the pollers.
      this.#options.pool
        .query(`SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload`, [this.#channel, payloads])
        .catch((error: unknown) => this.#options.logger?.warn({ err: error }, 'fleet notes not sent'));
    });
  }

  /** The fence every owner write carries: `$me`/`$epoch` are the given parameter numbers. */
  static ownerFence(schema: string, me: number, epoch: number, alias = 'c'): string {
    return `${alias}.owner = $${me} AND ${alias}.owner_epoch = $${epoch} AND EXISTS (
      SELECT 1 FROM ${schema}.supervisors sv WHERE sv.instance_id = $${me} AND sv.epoch = $${epoch} AND sv.expires_at > now())`;
  }

  async claimOrphans(
    limit: number,
    machineVersions: readonly string[],
  ): Promise<{ call: CallRow; previousOwner: string | null }[]> {
    if (!this.trusted()) return [];
    const s = this.#options.schema;
    const columns = this.#options.callColumns
      .split(',')
      .map((column) => `c.${column.trim()}`)
      .join(', ');
    const result = await this.#query(
      'claim orphaned calls',
      `WITH orphans AS (
         SELECT o.call_id, o.owner, o.owner_epoch FROM ${s}.calls o
         LEFT JOIN ${s}.supervisors sv ON sv.instance_id = o.owner AND sv.epoch = o.owner_epoch AND sv.expires_at > now()
         WHERE o.status = 'active' AND o.machine_version = ANY($3::text[]) AND sv.instance_id IS NULL
         ORDER BY o.created_at LIMIT $4 FOR UPDATE OF o SKIP LOCKED
       )
       UPDATE ${s}.calls c SET owner = $1, owner_epoch = $2
       FROM orphans
       WHERE c.call_id = orphans.call_id
         AND c.owner IS NOT DISTINCT FROM orphans.owner AND c.owner_epoch IS NOT DISTINCT FROM orphans.owner_epoch
         AND EXISTS (SELECT 1 FROM ${s}.supervisors me WHERE me.instance_id = $1 AND me.epoch = $2 AND me.expires_at > now())
       RETURNING ${columns}, orphans.owner AS previous_owner`,
      [this.instanceId, this.#epoch, [...machineVersions], limit],
    );
    return result.rows.map((row) => ({
      call: this.#options.toCallRow(row as never),
      previousOwner: (row as { previous_owner: string | null }).previous_owner,
    }));
  }

  async callsWithNewEvents(): Promise<string[]> {
    if (this.#epoch === 0) return [];
    const result = await this.#query(
      'find calls with new events',
      `SELECT call_id FROM ${this.#options.schema}.calls
       WHERE owner = $1 AND owner_epoch = $2 AND status = 'active' AND event_seq > handled_seq`,
      [this.instanceId, this.#epoch],
    );
    return result.rows.map((row) => (row as { call_id: string }).call_id);
  }

  async claimFailed(callId: string): Promise<CallRow | undefined> {
    const s = this.#options.schema;
    const columns = this.#options.callColumns;
    // The call becomes live again in the same statement, so a second retry finds it active.
    const result = await this.#query(
      'claim the call',
      `UPDATE ${s}.calls SET owner = $1, owner_epoch = $2, status = 'active'
       WHERE call_id = $3 AND status = 'failed'
         AND EXISTS (SELECT 1 FROM ${s}.supervisors me WHERE me.instance_id = $1 AND me.epoch = $2 AND me.expires_at > now())
       RETURNING ${columns}`,
      [this.instanceId, this.#epoch, callId],
    );
    const row = result.rows[0];
    return row ? this.#options.toCallRow(row as never) : undefined;
  }

  async #query(
    doing: string,
    sql: string,
    params: unknown[],
  ): Promise<pg.QueryResult<Record<string, unknown>>> {
    try {
      return await this.#options.pool.query<Record<string, unknown>>(sql, params);
    } catch (error) {
      throw this.#options.storeError(error, doing);
    }
  }

  async release(): Promise<void> {
    if (this.#released || this.#epoch === 0) return;
    this.#released = true;
    if (this.#renewTimer !== undefined) this.#options.time.clearTimeout(this.#renewTimer);
    this.#renewTimer = undefined;
    const s = this.#options.schema;
    try {
      await this.#leaseQuery(`DELETE FROM ${s}.supervisors WHERE instance_id = $1 AND epoch = $2`, [
        this.instanceId,
        this.#epoch,
      ]);
      const note: PublishedNote = {
        from: this.instanceId,
        note: { kind: 'released', instanceId: this.instanceId },
      };
      await this.#leaseQuery(`SELECT pg_notify($1, $2)`, [this.#channel, JSON.stringify(note)]);
    } catch (error) {
      // The lease then lapses by itself within `leaseMs`.
      if (!(error instanceof StoreUnavailableError)) throw error;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelWait?.();
    for (const timer of [this.#renewTimer, this.#listenTimer]) {
      if (timer !== undefined) this.#options.time.clearTimeout(timer);
    }
    this.#renewTimer = this.#listenTimer = undefined;
    const clients = [this.#leaseClient, this.#listenClient];
    this.#leaseClient = this.#listenClient = undefined;
    await Promise.all(
      clients.map(async (client) => {
        await client?.end().catch(() => undefined);
      }),
    );
  }
}
