/**
 * The group-commit writer over a real SQLite store: what reaches the store, when, and what the
 * callers are told, including while another connection holds the write lock (the store is then
 * unavailable). Retry timers run on xstate's SimulatedClock; commits are real.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { SimulatedClock } from 'xstate';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CallStore, CommitBatch, SnapshotUpdate } from '../../src/store/call-store.ts';
import { SqliteCallStore } from '../../src/store/sqlite-store.ts';
import { STORE_RETRY_DELAYS_MS, StoreWriter } from '../../src/supervisor/store-writer.ts';

const update = (state: string): SnapshotUpdate => ({
  state,
  status: state === 'done' ? 'done' : 'active',
  snapshot: { value: state },
  appliedSeq: 0,
  transcriptItems: 0,
  machineVersion: '1',
  egressId: null,
  updatedAt: '2026-01-01T00:00:00.000Z',
});

/** Yields to the event loop until `done()` holds (the writer commits on its own schedule). */
async function settled(done: () => boolean): Promise<void> {
  for (let turn = 0; turn < 1_000 && !done(); turn += 1) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(done()).toBe(true);
}

const entry = (kind: string) => ({ at: '2026-01-01T00:00:00.000Z', kind, state: 's' });

describe('StoreWriter', () => {
  let dir: string;
  let path: string;
  let store: SqliteCallStore;
  let commits: CommitBatch[];
  let clock: SimulatedClock;
  let availability: boolean[];
  let writer: StoreWriter;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'callsync-writer-'));
    path = join(dir, 'callsync.db');
    store = new SqliteCallStore(path);
    await store.open();
    for (const id of ['call-1', 'call-2']) {
      await store.createCall({
        callId: id,
        roomName: `room-${id}`,
        machineVersion: '1',
        state: 'recording',
        snapshot: {},
        createdAt: '2026-01-01T00:00:00.000Z',
      });
    }
    commits = [];
    // Counts the commits the writer makes; each still goes to the real store.
    const counted: Pick<CallStore, 'commit' | 'check'> = {
      commit: (batch) => {
        commits.push(batch);
        return store.commit(batch);
      },
      check: () => store.check(),
    };
    clock = new SimulatedClock();
    availability = [];
    writer = new StoreWriter({
      store: counted,
      logger: pino({ level: 'silent' }),
      time: clock,
      onAvailability: (available) => availability.push(available),
    });
  });

  afterEach(async () => {
    await writer.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('commits everything accepted in one tick in one commit, then applies events in order, then answers', async () => {
    const applied: string[] = [];
    const answers = ['a', 'b', 'c'].map((name, index) =>
      writer.append(index === 1 ? 'call-2' : 'call-1', { name }, (seq) => {
        applied.push(`${name}@${seq}`);
        return name.toUpperCase();
      }),
    );
    writer.saveSnapshot('call-1', update('inConversation'));
    writer.saveSnapshot('call-1', update('awaitingEgress')); // the newer one wins
    writer.appendJournal('call-1', entry('state_entered'));
    expect(applied).toEqual([]); // nothing is applied before its commit

    expect(await Promise.all(answers)).toEqual(['A', 'B', 'C']);
    expect(applied).toEqual(['a@1', 'b@1', 'c@2']);
    expect(commits).toHaveLength(1);
    expect(commits[0]?.snapshots).toEqual([{ callId: 'call-1', update: update('awaitingEgress') }]);
    expect(await store.getEvents('call-1')).toEqual([
      { seq: 1, event: { name: 'a' } },
      { seq: 2, event: { name: 'c' } },
    ]);
    await writer.flush();
    expect((await store.getCall('call-1'))?.state).toBe('awaitingEgress');
    expect((await store.getJournal('call-1')).map((e) => e.kind)).toEqual(['state_entered']);
  });

  it('shows queued snapshots and journal entries before they are committed', async () => {
    writer.saveSnapshot('call-1', update('done'));
    writer.appendJournal('call-1', entry('delivered'));
    expect(writer.pendingSnapshot('call-1')?.state).toBe('done');
    expect(writer.pendingJournal('call-1').map((e) => e.kind)).toEqual(['delivered']);
    expect(writer.pendingJournal('call-2')).toEqual([]);
    await writer.flush();
    expect(writer.pendingSnapshot('call-1')).toBeUndefined();
    expect((await store.getCall('call-1'))?.status).toBe('done');
  });

  it('while the store is locked: refuses events with STORE_UNAVAILABLE, keeps its own writes, and resumes on the retry', async () => {
    const other = new Database(path);
    other.exec('BEGIN EXCLUSIVE');
    let applied = 0;
    const refused = writer.append('call-1', { name: 'lost' }, () => (applied += 1));
    writer.saveSnapshot('call-1', update('awaitingEgress'));
    writer.appendJournal('call-1', entry('call_ended'));
    await expect(refused).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', retryable: true });
    expect(applied).toBe(0);
    expect(writer.available).toBe(false);
    expect(availability).toEqual([false]);

    // A later event waits for the retry instead of trying alone.
    const later = writer.append('call-1', { name: 'later' }, (seq) => seq);
    other.exec('ROLLBACK');
    other.close();
    clock.increment(STORE_RETRY_DELAYS_MS[0]!);
    expect(await later).toBe(1);
    expect(writer.available).toBe(true);
    expect(availability).toEqual([false, true]);
    expect(await store.getEvents('call-1')).toEqual([{ seq: 1, event: { name: 'later' } }]);
    expect((await store.getCall('call-1'))?.state).toBe('awaitingEgress');
    expect((await store.getJournal('call-1')).map((e) => e.kind)).toEqual(['call_ended']);
  });

  it('snapshotStored resolves once the row holds the snapshot: at once with none queued, after the store is back', async () => {
    await writer.snapshotStored('call-2');
    const other = new Database(path);
    other.exec('BEGIN EXCLUSIVE');
    let resolved = false;
    let stored: Promise<unknown>;
    try {
      writer.saveSnapshot('call-1', update('postingData'));
      stored = writer.snapshotStored('call-1').then(() => (resolved = true));
      stored.catch(() => undefined);
      await settled(() => !writer.available);
      expect(resolved).toBe(false);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    clock.increment(STORE_RETRY_DELAYS_MS[0]!);
    await stored;
    expect((await store.getCall('call-1'))?.state).toBe('postingData');
  });

  it('snapshotStored rejects with STORE_UNAVAILABLE when the writer closes before the store holds it', async () => {
    const other = new Database(path);
    other.exec('BEGIN EXCLUSIVE');
    try {
      writer.saveSnapshot('call-1', update('postingData'));
      const stored = writer.snapshotStored('call-1');
      await writer.close();
      await expect(stored).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await expect(writer.snapshotStored('call-2')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
  });

  it('backs off between retries while the store stays away, and probes it when nothing is queued', async () => {
    const other = new Database(path);
    other.exec('BEGIN EXCLUSIVE');
    writer.saveSnapshot('call-1', update('awaitingEgress'));
    await writer.flush();
    expect(writer.available).toBe(false);
    // Each retry fails again, after the next wait of STORE_RETRY_DELAYS_MS, and not before it.
    const [first = 0, second = 0] = STORE_RETRY_DELAYS_MS;
    expect(commits).toHaveLength(1);
    clock.increment(first - 1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(commits).toHaveLength(1);
    clock.increment(1);
    await settled(() => commits.length === 2);
    clock.increment(second - 1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(commits).toHaveLength(2);
    clock.increment(1);
    await settled(() => commits.length === 3);
    expect(writer.available).toBe(false);
    other.exec('ROLLBACK');
    other.close();
    await writer.flush();
    expect(writer.available).toBe(true);
    expect((await store.getCall('call-1'))?.state).toBe('awaitingEgress');

    // A read elsewhere found the store away: the probe (check) brings it back with nothing queued.
    writer.noteUnavailable(new Error('read failed'));
    expect(writer.available).toBe(false);
    clock.increment(STORE_RETRY_DELAYS_MS.at(-1)!);
    await writer.flush();
    expect(writer.available).toBe(true);
  });

  it('drops only the write the store refuses as wrong, and commits the rest', async () => {
    const good = writer.append('call-1', { name: 'good' }, (seq) => seq);
    const bad = writer.append('no-such-call', { name: 'bad' }, (seq) => seq);
    writer.saveSnapshot('call-2', update('inConversation'));
    expect(await good).toBe(1);
    await expect(bad).rejects.toThrow();
    await writer.flush();
    expect(writer.available).toBe(true);
    expect((await store.getCall('call-2'))?.state).toBe('inConversation');
    expect(await store.getEvents('call-1')).toEqual([{ seq: 1, event: { name: 'good' } }]);
  });

  it('snapshotStored rejects SNAPSHOT_REFUSED while the store holds an older snapshot than the one it refused', async () => {
    writer.saveSnapshot('call-1', { ...update('postingData'), state: null as never });
    await expect(writer.snapshotStored('call-1')).rejects.toMatchObject({
      code: 'SNAPSHOT_REFUSED',
      retryable: false,
    });
    expect((await store.getCall('call-1'))?.state).toBe('recording');
    await expect(writer.snapshotStored('call-1')).rejects.toMatchObject({ code: 'SNAPSHOT_REFUSED' });
    // A later snapshot the store takes ends it.
    writer.saveSnapshot('call-1', update('postingData'));
    await writer.snapshotStored('call-1');
    expect((await store.getCall('call-1'))?.state).toBe('postingData');
  });

  it('close() writes what is queued, then refuses events; safe twice', async () => {
    writer.saveSnapshot('call-1', update('done'));
    await writer.close();
    await writer.close();
    expect((await store.getCall('call-1'))?.state).toBe('done');
    await expect(writer.append('call-1', {}, () => undefined)).rejects.toMatchObject({
      code: 'STORE_UNAVAILABLE',
    });
  });
});
