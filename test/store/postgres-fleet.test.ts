/**
 * The fleet's guarantees at the SQL level, on the machines' PostgreSQL (a schema per test):
 * ownership is fenced (a stale epoch's writes change nothing), an orphan is claimed exactly once
 * however many sweepers race, and a paused instance that resumes cannot write.
 *
 * Time: each store's lease renewals run on its own `SimulatedClock` (they never run unless the
 * test advances it, which is what a paused process looks like); the database's clock is what
 * leases are judged on, and a lapse is made by moving the lease's `expires_at` into the past —
 * exactly what time passing does to it.
 */
import { Writable } from 'node:stream';
import pg from 'pg';
import { SimulatedClock } from 'xstate';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { CommitBatch, NewCall, SnapshotUpdate } from '../../src/store/call-store.ts';
import { createLogger, type Logger } from '../../src/logging/logger.ts';
import { PostgresCallStore } from '../../src/store/postgres-store.ts';
import { POSTGRES_URL, postgresSchemas } from '../helpers/postgres-schemas.ts';

const LEASE_MS = 5_000;
/** For tests that must not see a lease lapse on the database's clock while they run. */
const LONG_LEASE_MS = 60_000;
const STILL_HELD = 'fleet lease of this instance id still held; waiting for it to lapse';
const MACHINE_VERSION = '1';

const schemas = postgresSchemas('callsync_fleet');
const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
afterAll(async () => {
  await admin.end();
  await schemas.dropAll();
});

let opened: PostgresCallStore[] = [];
afterEach(async () => {
  await Promise.all(opened.map((store) => store.close()));
  opened = [];
});

/** A fleet member of the schema in `url`, with its own simulated clock. */
function member(url: string, instanceId: string, options: { logger?: Logger; leaseMs?: number } = {}) {
  const clock = new SimulatedClock();
  clock.set(Date.now());
  return joined(clock, instanceId, url, options.logger, options.leaseMs ?? LEASE_MS);
}

async function joined(
  clock: SimulatedClock,
  instanceId: string,
  url: string,
  logger: Logger | undefined,
  leaseMs: number,
) {
  const store = new PostgresCallStore({
    connectionString: url,
    fleet: { instanceId, leaseMs, time: clock, logger },
  });
  starting.set(store, clock);
  try {
    await store.open();
  } finally {
    starting.delete(store);
  }
  opened.push(store);
  const fleet = store.fleet;
  if (!fleet) throw new Error('the store did not join the fleet');
  const fenced: string[] = [];
  fleet.on('fenced', ({ callIds }) => fenced.push(...callIds));
  return { store, fleet, clock, fenced, instanceId };
}

/** The clocks of members still starting, so a test can move a waiting start on. */
const starting = new Map<PostgresCallStore, SimulatedClock>();

/** Moves every starting member's clock on by `ms`: a start waiting for a lease to lapse tries again. */
function advanceStarting(ms: number): void {
  for (const clock of starting.values()) clock.increment(ms);
}

/** A logger whose lines a test can wait for by message. */
function logLines() {
  const seen: Record<string, unknown>[] = [];
  const waiters: { msg: string; resolve: (line: Record<string, unknown>) => void }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (!text) continue;
        const line = JSON.parse(text) as Record<string, unknown>;
        seen.push(line);
        for (const waiter of waiters.filter((candidate) => line.msg === candidate.msg)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
      done();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  /** The `n`th line (from 1) with this message, once it is written. */
  const nth = (msg: string, n: number) =>
    new Promise<Record<string, unknown>>((resolve) => {
      const line = seen.filter((entry) => entry.msg === msg)[n - 1];
      if (line) return resolve(line);
      const wait = () =>
        waiters.push({
          msg,
          resolve: (found) =>
            seen.filter((entry) => entry.msg === msg).length >= n ? resolve(found) : wait(),
        });
      wait();
    });
  return { logger, nth };
}

function schemaOf(url: string): string {
  return new URL(url).searchParams.get('schema') ?? 'public';
}

/** What time passing does to a lease: it lapses (on the database's clock). */
async function lapse(url: string, instanceId: string): Promise<void> {
  await admin.query(
    `UPDATE ${schemaOf(url)}.supervisors SET expires_at = now() - interval '1 second' WHERE instance_id = $1`,
    [instanceId],
  );
}

async function ownerOf(url: string, callId: string) {
  const result = await admin.query<{ owner: string | null; owner_epoch: string | null; state: string }>(
    `SELECT owner, owner_epoch, state FROM ${schemaOf(url)}.calls WHERE call_id = $1`,
    [callId],
  );
  return result.rows[0];
}

const newCall = (n: number): NewCall => ({
  callId: `call-${n}`,
  roomName: `room-${n}`,
  machineVersion: MACHINE_VERSION,
  state: 'recording',
  snapshot: { value: 'recording', context: { transcript: [] } },
  createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
});

const update = (state: string): SnapshotUpdate => ({
  state,
  status: 'active',
  snapshot: { value: state },
  appliedSeq: 0,
  transcriptItems: 0,
  machineVersion: MACHINE_VERSION,
  egressId: null,
  updatedAt: '2026-01-01T00:01:00.000Z',
});

const NONE: CommitBatch = { events: [], snapshots: [], journal: [] };

describe('a fleet on one PostgreSQL', () => {
  it('claims the orphans stored by the versions it is given, and leaves the others alone', async () => {
    const url = schemas.storeUrl();
    const a = await member(url, 'instance-a');
    await a.store.createCall(newCall(1));
    await a.store.createCall({ ...newCall(2), machineVersion: `${MACHINE_VERSION}.1` });
    await a.store.createCall({ ...newCall(3), machineVersion: 'another' });
    await lapse(url, 'instance-a');
    const older = await member(url, 'instance-older');
    const claimedByOlder = await older.fleet.claimOrphans(10, [MACHINE_VERSION]);
    expect(claimedByOlder.map(({ call }) => call.callId)).toEqual(['call-1']);
    const newer = await member(url, 'instance-newer');
    await lapse(url, 'instance-older');
    const claimed = await newer.fleet.claimOrphans(10, [MACHINE_VERSION, `${MACHINE_VERSION}.1`]);
    expect(claimed.map(({ call }) => call.callId).sort()).toEqual(['call-1', 'call-2']);
    expect((await ownerOf(url, 'call-3'))?.owner).toBe('instance-a');
  });

  it('refuses the writes of an epoch that no longer owns the call, and reports them fenced', async () => {
    const url = schemas.storeUrl();
    const a = await member(url, 'instance-a');
    await a.store.createCall(newCall(1));
    expect(await ownerOf(url, 'call-1')).toMatchObject({
      owner: 'instance-a',
      owner_epoch: String(a.fleet.epoch),
    });

    const b = await member(url, 'instance-b');
    // B cannot take a call whose owner's lease is valid.
    expect(await b.fleet.claimOrphans(10, [MACHINE_VERSION])).toEqual([]);
    await lapse(url, 'instance-a');
    const claimed = await b.fleet.claimOrphans(10, [MACHINE_VERSION]);
    expect(claimed.map(({ call }) => call.callId)).toEqual(['call-1']);
    expect(claimed[0]?.previousOwner).toBe('instance-a');
    expect(claimed[0]?.call.owner).toEqual({ instanceId: 'instance-b', epoch: b.fleet.epoch });

    // A's late snapshot, journal entry and decision change nothing; its event is logged (any
    // instance may log events), and the call is reported fenced.
    const seqs = await a.store.commit({
      events: [{ callId: 'call-1', event: { type: 'late' } }],
      snapshots: [{ callId: 'call-1', update: update('postingData') }],
      journal: [
        { callId: 'call-1', entry: { at: '2026-01-01T00:01:00.000Z', kind: 'late', state: 'postingData' } },
      ],
      handled: [{ callId: 'call-1', seq: 1 }],
    });
    expect(seqs).toEqual([1]);
    expect(a.fenced).toEqual(['call-1']);
    expect(await ownerOf(url, 'call-1')).toMatchObject({ owner: 'instance-b', state: 'recording' });
    expect(await b.store.getJournal('call-1')).toEqual([]);
    expect((await b.store.getCall('call-1'))?.handledSeq).toBe(0);

    // The owner's writes go through.
    await b.store.commit({ ...NONE, snapshots: [{ callId: 'call-1', update: update('inConversation') }] });
    expect(b.fenced).toEqual([]);
    expect(await ownerOf(url, 'call-1')).toMatchObject({ owner: 'instance-b', state: 'inConversation' });
  });

  it("commits two members' writes to the same calls concurrently without a deadlock", async () => {
    // The owner writes its calls' events, snapshots and decisions in one transaction while the
    // other member logs events for the same calls (as a fleet behind a load balancer does), in
    // the opposite order. PostgreSQL aborts one side of a deadlock: a 503 for every event in it.
    const url = schemas.storeUrl();
    const owner = await member(url, 'instance-owner');
    const other = await member(url, 'instance-other');
    const callIds = ['call-1', 'call-2', 'call-3', 'call-4'];
    for (const [index] of callIds.entries()) await owner.store.createCall(newCall(index + 1));
    const ROUNDS = 60;
    const failures: unknown[] = [];
    const run = async (commit: (round: number) => Promise<unknown>) => {
      for (let round = 0; round < ROUNDS; round++)
        await commit(round).catch((error: unknown) => failures.push(error));
    };
    await Promise.all([
      run((round) =>
        owner.store.commit({
          // Its events lock two calls' rows, then its snapshots and decisions lock the other two.
          events: ['call-1', 'call-3'].map((callId) => ({ callId, event: { by: 'owner', round } })),
          snapshots: ['call-4', 'call-2'].map((callId) => ({ callId, update: update('inConversation') })),
          journal: [],
          handled: ['call-4', 'call-2'].map((callId) => ({ callId, seq: 1 })),
        }),
      ),
      run((round) =>
        other.store.commit({
          ...NONE,
          events: [...callIds].reverse().map((callId) => ({ callId, event: { by: 'other', round } })),
        }),
      ),
    ]);
    expect(failures.map((error) => String(error))).toEqual([]);
    for (const callId of callIds) {
      const seqs = (await owner.store.getEvents(callId)).map((event) => event.seq);
      const logged = callId === 'call-1' || callId === 'call-3' ? 2 * ROUNDS : ROUNDS;
      expect(seqs).toEqual(Array.from({ length: logged }, (_, index) => index + 1));
    }
  });

  it('claims each call of a dead instance exactly once, however many sweepers race', async () => {
    const url = schemas.storeUrl();
    const dead = await member(url, 'instance-dead');
    const calls = 120;
    for (let n = 1; n <= calls; n += 1) await dead.store.createCall(newCall(n));
    const sweepers = await Promise.all(
      ['s1', 's2', 's3', 's4', 's5', 's6'].map((id) => member(url, `instance-${id}`)),
    );
    await lapse(url, 'instance-dead');

    // Each sweeper claims small batches until nothing is left, all at once.
    const claims = await Promise.all(
      sweepers.map(async ({ fleet, instanceId }) => {
        const mine: string[] = [];
        for (;;) {
          const batch = await fleet.claimOrphans(7, [MACHINE_VERSION]);
          if (batch.length === 0) return { instanceId, mine };
          mine.push(...batch.map(({ call }) => call.callId));
        }
      }),
    );
    const all = claims.flatMap(({ mine }) => mine);
    expect(all).toHaveLength(calls);
    expect(new Set(all).size).toBe(calls);
    // Each call's row names the sweeper that claimed it.
    for (const { instanceId, mine } of claims) {
      for (const callId of mine) expect((await ownerOf(url, callId))?.owner).toBe(instanceId);
    }
  });

  it('a paused instance that resumes cannot write, drops its calls and starts a new epoch', async () => {
    const url = schemas.storeUrl();
    const paused = await member(url, 'instance-paused');
    await paused.store.createCall(newCall(1));
    await paused.store.createCall(newCall(2));
    const firstEpoch = paused.fleet.epoch;
    const lost: number[] = [];
    paused.fleet.on('lost', () => lost.push(paused.fleet.epoch));
    const registered = new Promise<number>((resolve) =>
      paused.fleet.on('registered', ({ epoch }) => resolve(epoch)),
    );

    // Paused: no renewal ran (its clock did not move), and the database's clock passed the lease.
    await lapse(url, 'instance-paused');
    const other = await member(url, 'instance-other');
    expect(
      (await other.fleet.claimOrphans(10, [MACHINE_VERSION])).map(({ call }) => call.callId).sort(),
    ).toEqual(['call-1', 'call-2']);

    // It resumes: past its trust window it no longer trusts its lease, before any renewal.
    paused.clock.increment(LEASE_MS);
    expect(paused.fleet.trusted()).toBe(false);
    // Its writes are refused.
    await paused.store.commit({
      ...NONE,
      snapshots: [
        { callId: 'call-1', update: update('postingData') },
        { callId: 'call-2', update: update('postingData') },
      ],
    });
    expect(paused.fenced.sort()).toEqual(['call-1', 'call-2']);
    expect(await ownerOf(url, 'call-1')).toMatchObject({ owner: 'instance-other', state: 'recording' });
    // Its renewal finds the lease gone: it says so and registers a new epoch (owning nothing).
    const newEpoch = await registered;
    expect(lost).toEqual([0]);
    expect(newEpoch).toBeGreaterThan(firstEpoch);
    expect(paused.fleet.trusted()).toBe(true);
    expect(await paused.fleet.claimOrphans(10, [MACHINE_VERSION])).toEqual([]);
  });

  it('a restart under the same id waits for the old lease to lapse, then claims its own calls', async () => {
    const url = schemas.storeUrl();
    const before = await member(url, 'instance-x', { leaseMs: LONG_LEASE_MS });
    await before.store.createCall(newCall(1));
    // Killed (or only paused: it cannot tell): nothing ends its lease. The same id starts again.
    const log = logLines();
    const restarting = member(url, 'instance-x', { logger: log.logger, leaseMs: LONG_LEASE_MS });
    const waiting = await log.nth(STILL_HELD, 1);
    expect(waiting).toMatchObject({ instanceId: 'instance-x', epoch: String(before.fleet.epoch) });
    // Until the old lease lapses its calls stay where they are, and its writes still count.
    await before.store.commit({
      ...NONE,
      snapshots: [{ callId: 'call-1', update: update('awaitingEgress') }],
    });
    expect(before.fenced).toEqual([]);
    expect(await ownerOf(url, 'call-1')).toMatchObject({ owner: 'instance-x', state: 'awaitingEgress' });
    // It lapses; the restarted process's wait runs out (its clock passes the lease) and it registers.
    await lapse(url, 'instance-x');
    advanceStarting(2 * LONG_LEASE_MS);
    const after = await restarting;
    expect(after.fleet.epoch).toBeGreaterThan(before.fleet.epoch);
    const claimed = await after.fleet.claimOrphans(10, [MACHINE_VERSION]);
    expect(claimed.map(({ call }) => call.callId)).toEqual(['call-1']);
    // The old epoch's writes are refused now, though the instance id is the same.
    await before.store.commit({ ...NONE, snapshots: [{ callId: 'call-1', update: update('postingData') }] });
    expect(before.fenced).toEqual(['call-1']);
  });

  it('a start under an id whose holder keeps renewing while it waits fails INSTANCE_ID_IN_USE', async () => {
    const url = schemas.storeUrl();
    const running = await member(url, 'instance-y', { leaseMs: LONG_LEASE_MS });
    await running.store.createCall(newCall(1));
    const log = logLines();
    const second = member(url, 'instance-y', { logger: log.logger, leaseMs: LONG_LEASE_MS });
    second.catch(() => undefined);
    // One renewal seen may be a dead holder's last one landing late; a second one is not.
    for (const look of [1, 2]) {
      await log.nth(STILL_HELD, look);
      const renewed = new Promise((resolve) => running.fleet.once('renewed', resolve));
      running.clock.increment(LONG_LEASE_MS / 5); // the holder's next renewal
      await renewed;
      advanceStarting(2 * LONG_LEASE_MS);
    }
    await expect(second).rejects.toMatchObject({ code: 'INSTANCE_ID_IN_USE', retryable: false });
    // The running one kept its lease and its call.
    expect(running.fleet.trusted()).toBe(true);
    await running.store.commit({
      ...NONE,
      snapshots: [{ callId: 'call-1', update: update('awaitingEgress') }],
    });
    expect(running.fenced).toEqual([]);
  });

  it('a start waiting for a lease to lapse ends when its store is closed', async () => {
    const url = schemas.storeUrl();
    await member(url, 'instance-z', { leaseMs: LONG_LEASE_MS });
    const log = logLines();
    const waiting = member(url, 'instance-z', { logger: log.logger, leaseMs: LONG_LEASE_MS });
    waiting.catch(() => undefined);
    await log.nth(STILL_HELD, 1);
    await Promise.all([...starting.keys()].map((store) => store.close()));
    await expect(waiting).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
  });

  it('a store closed while it opens rejects the open and registers no lease', async () => {
    const url = schemas.storeUrl();
    const store = new PostgresCallStore({
      connectionString: url,
      fleet: { instanceId: 'instance-closed', leaseMs: LONG_LEASE_MS, time: new SimulatedClock() },
    });
    const opening = store.open();
    opening.catch(() => undefined);
    await store.close();
    await expect(opening).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect(store.fleet).toBeUndefined();
    const leases = await admin.query(
      `SELECT 1 FROM ${schemaOf(url)}.supervisors WHERE instance_id = 'instance-closed'`,
    );
    expect(leases.rowCount).toBe(0);
  });

  it('a released lease frees its calls at once; claims skip other machine versions', async () => {
    const url = schemas.storeUrl();
    const leaving = await member(url, 'instance-leaving');
    await leaving.store.createCall(newCall(1));
    await leaving.store.createCall({ ...newCall(2), machineVersion: '0' });
    const staying = await member(url, 'instance-staying');
    expect(await staying.fleet.claimOrphans(10, [MACHINE_VERSION])).toEqual([]);
    await leaving.fleet.release();
    expect(leaving.fleet.trusted()).toBe(false);
    const claimed = await staying.fleet.claimOrphans(10, [MACHINE_VERSION]);
    expect(claimed.map(({ call }) => call.callId)).toEqual(['call-1']);
  });

  it('records decisions for the sender to read, and lets one retry claim a failed call', async () => {
    const url = schemas.storeUrl();
    const owner = await member(url, 'instance-owner');
    const sender = await member(url, 'instance-sender');
    await owner.store.createCall(newCall(1));
    // Another instance logs two events; the owner applies the first and refuses the second.
    const seqs = await sender.store.commit({
      ...NONE,
      events: [
        { callId: 'call-1', event: { type: 'call.transcript' } },
        { callId: 'call-1', event: { type: 'call.lead' } },
      ],
    });
    expect(seqs).toEqual([1, 2]);
    expect(await sender.store.getEventOutcome('call-1', 1)).toEqual({
      status: 'active',
      handledSeq: 0,
      refusal: undefined,
    });
    const refusal = { code: 'CALL_DATA_SENT', message: 'call call-1 has built its call data' };
    // A non-owner's decisions are refused.
    await sender.store.commit({ ...NONE, handled: [{ callId: 'call-1', seq: 2, refusal }] });
    expect(sender.fenced).toEqual(['call-1']);
    expect((await sender.store.getEventOutcome('call-1', 2))?.handledSeq).toBe(0);
    await owner.store.commit({
      ...NONE,
      handled: [
        { callId: 'call-1', seq: 1 },
        { callId: 'call-1', seq: 2, refusal },
      ],
    });
    expect(await sender.store.getEventOutcome('call-1', 1)).toEqual({
      status: 'active',
      handledSeq: 2,
      refusal: undefined,
    });
    expect(await sender.store.getEventOutcome('call-1', 2)).toEqual({
      status: 'active',
      handledSeq: 2,
      refusal,
    });
    expect((await sender.store.getEvents('call-1')).map((event) => event.refusal)).toEqual([
      undefined,
      refusal,
    ]);

    // Failed: two instances retry it at once; one claims it.
    await owner.store.commit({
      ...NONE,
      snapshots: [{ callId: 'call-1', update: { ...update('failed'), status: 'failed' } }],
    });
    const [first, second] = await Promise.all([
      owner.fleet.claimFailed('call-1'),
      sender.fleet.claimFailed('call-1'),
    ]);
    expect([first, second].filter((row) => row !== undefined)).toHaveLength(1);
    expect((first ?? second)?.status).toBe('active');
  });
});
