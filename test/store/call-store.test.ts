import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import type { CallStore, NewCall, SnapshotUpdate } from '../../src/store/call-store.ts';
import { createCallStore } from '../../src/store/open-store.ts';
import { postgresSchemas } from '../helpers/postgres-schemas.ts';

/** The machines' PostgreSQL; each test gets its own schema. */
const schemas = postgresSchemas('callsync_test');
afterAll(() => schemas.dropAll());
function postgresStore(): CallStore {
  return createCallStore(schemas.storeUrl());
}

const newCall = (overrides: Partial<NewCall> = {}): NewCall => ({
  callId: 'call-1',
  roomName: 'room-1',
  machineVersion: '1',
  state: 'recording',
  snapshot: { value: 'recording', context: { transcript: [] } },
  createdAt: '2026-01-01T00:00:00.000Z',
  ...overrides,
});

const NO_WRITES = { events: [], snapshots: [], journal: [] };

const snapshotUpdate = (overrides: Partial<SnapshotUpdate> = {}): SnapshotUpdate => ({
  state: 'inConversation',
  status: 'active',
  snapshot: { value: 'inConversation' },
  appliedSeq: 0,
  transcriptItems: 0,
  machineVersion: '1',
  egressId: null,
  updatedAt: '2026-01-01T00:00:30.000Z',
  ...overrides,
});

/** One snapshot commit, as the supervisor's writer makes it. */
const saveSnapshot = (store: CallStore, callId: string, update: SnapshotUpdate) =>
  store.commit({ ...NO_WRITES, snapshots: [{ callId, update }] });

describe.each([
  ['sqlite', (dir: string) => createCallStore(`sqlite:${join(dir, 'nested', 'callsync.db')}`)],
  ['postgres', () => postgresStore()],
])('CallStore (%s)', (_name, makeStore) => {
  let dir: string;
  let store: CallStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'callsync-store-'));
    store = makeStore(dir);
    await store.open();
    await store.open(); // safe twice
  });
  afterEach(async () => {
    await store.close();
    await store.close(); // safe twice
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a call once per live room and answers repeats with the same call', async () => {
    const first = await store.createCall(newCall());
    expect(first.created).toBe(true);
    expect(first.call).toMatchObject({ appliedSeq: 0, transcriptItems: 0 });
    const repeat = await store.createCall(newCall({ callId: 'call-2' }));
    expect(repeat).toMatchObject({ created: false, call: { callId: 'call-1' } });
    expect(await store.getCall('call-2')).toBeUndefined();
  });

  it('frees the room name once the call is final', async () => {
    await store.createCall(newCall());
    await saveSnapshot(store, 'call-1', snapshotUpdate({ state: 'done', status: 'done', egressId: 'EG_1' }));
    const next = await store.createCall(newCall({ callId: 'call-2' }));
    expect(next.created).toBe(true);
  });

  it('stores snapshots with their log position, keeps a known egress id and survives a reopen', async () => {
    await store.createCall(newCall());
    const update = snapshotUpdate({
      state: 'awaitingEgress',
      snapshot: { value: 'awaitingEgress', context: { egressId: 'EG_1' } },
      egressId: 'EG_1',
      appliedSeq: 7,
      transcriptItems: 12,
    });
    await saveSnapshot(store, 'call-1', update);
    await saveSnapshot(store, 'call-1', { ...update, state: 'uploadingRecording', egressId: null });
    await store.close();
    await store.open();
    expect(await store.getCall('call-1')).toMatchObject({
      state: 'uploadingRecording',
      status: 'active',
      egressId: 'EG_1',
      snapshot: update.snapshot,
      appliedSeq: 7,
      transcriptItems: 12,
    });
    expect((await store.listActive()).map((call) => call.callId)).toEqual(['call-1']);
  });

  it("numbers each call's events from 1 in commit and batch order, across calls in one commit", async () => {
    await store.createCall(newCall());
    await store.createCall(newCall({ callId: 'call-2', roomName: 'room-2' }));
    const first = await store.commit({
      ...NO_WRITES,
      events: [
        { callId: 'call-1', event: { n: 'a' } },
        { callId: 'call-2', event: { n: 'x' } },
        { callId: 'call-1', event: { n: 'b' } },
      ],
    });
    expect(first).toEqual([1, 1, 2]);
    const second = await store.commit({ ...NO_WRITES, events: [{ callId: 'call-1', event: { n: 'c' } }] });
    expect(second).toEqual([3]);
    expect(await store.getEvents('call-1')).toEqual([
      { seq: 1, event: { n: 'a' } },
      { seq: 2, event: { n: 'b' } },
      { seq: 3, event: { n: 'c' } },
    ]);
    expect(await store.getEvents('call-1', 2)).toEqual([{ seq: 3, event: { n: 'c' } }]);
    expect(await store.getEvents('call-2')).toEqual([{ seq: 1, event: { n: 'x' } }]);
  });

  it('commits all or nothing: an event for an unknown call fails the whole batch', async () => {
    await store.createCall(newCall());
    await expect(
      store.commit({
        events: [
          { callId: 'call-1', event: { n: 'a' } },
          { callId: 'no-such-call', event: { n: 'b' } },
        ],
        snapshots: [{ callId: 'call-1', update: snapshotUpdate({ state: 'awaitingEgress' }) }],
        journal: [{ callId: 'call-1', entry: { at: '2026-01-01T00:00:00.000Z', kind: 'x', state: 'y' } }],
      }),
    ).rejects.toThrow();
    expect(await store.getEvents('call-1')).toEqual([]);
    expect(await store.getJournal('call-1')).toEqual([]);
    expect((await store.getCall('call-1'))?.state).toBe('recording');
    // The counters did not move either: the next event is still number 1.
    expect(await store.commit({ ...NO_WRITES, events: [{ callId: 'call-1', event: {} }] })).toEqual([1]);
  });

  it('stores NUL, lone surrogates and deep text exactly, in events, snapshots and the journal', async () => {
    await store.createCall(newCall());
    const text = `a\u0000b \ud800 c \udfff \u{1F600} "quoted" \\`;
    const event = { type: 'call.transcript', items: [{ id: text, content: text }], data: { [text]: text } };
    await store.commit({
      events: [{ callId: 'call-1', event }],
      snapshots: [
        { callId: 'call-1', update: snapshotUpdate({ snapshot: { value: 'x', context: { text } } }) },
      ],
      journal: [
        {
          callId: 'call-1',
          entry: { at: '2026-01-01T00:00:00.000Z', kind: 'k', state: 's', detail: { text } },
        },
      ],
    });
    expect(await store.getEvents('call-1')).toEqual([{ seq: 1, event }]);
    expect((await store.getCall('call-1'))?.snapshot).toEqual({ value: 'x', context: { text } });
    expect((await store.getJournal('call-1'))[0]?.detail).toEqual({ text });
  });

  it('appends the journal in order, numbered per call', async () => {
    await store.createCall(newCall());
    await store.createCall(newCall({ callId: 'call-2', roomName: 'room-2' }));
    const entry = (state: string) => ({ at: '2026-01-01T00:00:00.000Z', kind: 'transition', state });
    await store.commit({
      ...NO_WRITES,
      journal: [
        { callId: 'call-1', entry: entry('recording') },
        { callId: 'call-2', entry: entry('recording') },
        { callId: 'call-1', entry: entry('inConversation') },
      ],
    });
    await store.commit({
      ...NO_WRITES,
      journal: [
        { callId: 'call-1', entry: entry('awaitingEgress') },
        {
          callId: 'call-1',
          entry: {
            at: '2026-01-01T00:00:01.000Z',
            kind: 'attempt_failed',
            state: 'awaitingEgress',
            detail: { code: 'LIVEKIT_TIMEOUT' },
          },
        },
      ],
    });
    const journal = await store.getJournal('call-1');
    expect(journal.map((e) => [e.seq, e.state])).toEqual([
      [1, 'recording'],
      [2, 'inConversation'],
      [3, 'awaitingEgress'],
      [4, 'awaitingEgress'],
    ]);
    expect(journal[3]!.detail).toEqual({ code: 'LIVEKIT_TIMEOUT' });
    expect((await store.getJournal('call-2')).map((e) => e.seq)).toEqual([1]);
  });

  it('numbers events and journal entries apart in one commit, and drops only a journal entry for a call it does not hold', async () => {
    await store.createCall(newCall());
    await store.createCall(newCall({ callId: 'call-2', roomName: 'room-2' }));
    const entry = (state: string) => ({ at: '2026-01-01T00:00:00.000Z', kind: 'transition', state });
    await store.commit({ ...NO_WRITES, journal: [{ callId: 'call-1', entry: entry('recording') }] });
    const seqs = await store.commit({
      events: [
        { callId: 'call-2', event: { n: 'x' } },
        { callId: 'call-1', event: { n: 'a' } },
        { callId: 'call-1', event: { n: 'b' } },
      ],
      snapshots: [{ callId: 'call-1', update: snapshotUpdate({ state: 'inConversation' }) }],
      journal: [
        { callId: 'call-1', entry: entry('inConversation') },
        { callId: 'no-such-call', entry: entry('recording') },
        { callId: 'call-2', entry: entry('recording') },
        { callId: 'call-1', entry: entry('awaitingEgress') },
      ],
    });
    expect(seqs).toEqual([1, 1, 2]);
    expect((await store.getEvents('call-1')).map((e) => [e.seq, e.event])).toEqual([
      [1, { n: 'a' }],
      [2, { n: 'b' }],
    ]);
    expect((await store.getJournal('call-1')).map((e) => [e.seq, e.state])).toEqual([
      [1, 'recording'],
      [2, 'inConversation'],
      [3, 'awaitingEgress'],
    ]);
    expect((await store.getJournal('call-2')).map((e) => [e.seq, e.state])).toEqual([[1, 'recording']]);
    expect((await store.getCall('call-1'))?.state).toBe('inConversation');
    expect(await store.commit({ ...NO_WRITES, events: [{ callId: 'call-1', event: {} }] })).toEqual([3]);
  });

  it('answers check() while it can take writes', async () => {
    await expect(store.check()).resolves.toBeUndefined();
  });

  it('lists calls by state and status', async () => {
    await store.createCall(newCall());
    await store.createCall(
      newCall({ callId: 'call-2', roomName: 'room-2', createdAt: '2026-01-01T00:00:05.000Z' }),
    );
    await saveSnapshot(store, 'call-2', snapshotUpdate({ state: 'failed', status: 'failed', snapshot: {} }));
    expect((await store.listCalls({ state: 'failed' })).map((c) => c.callId)).toEqual(['call-2']);
    expect(await store.countCalls('failed')).toBe(1);
    expect(await store.countCalls('done')).toBe(0);
    expect((await store.listCalls({ status: 'active' })).map((c) => c.callId)).toEqual(['call-1']);
    expect((await store.listCalls({})).map((c) => c.callId)).toEqual(['call-2', 'call-1']);
  });

  it('pages newest first by keyset, from a time on, and never skips or repeats a call', async () => {
    for (let n = 1; n <= 5; n += 1) {
      await store.createCall(
        newCall({ callId: `call-${n}`, roomName: `room-${n}`, createdAt: `2026-01-01T00:00:0${n}.000Z` }),
      );
    }
    // Two calls created in the same millisecond are ordered by id.
    await store.createCall(
      newCall({ callId: 'call-5b', roomName: 'room-5b', createdAt: '2026-01-01T00:00:05.000Z' }),
    );
    const first = await store.listCalls({ limit: 2 });
    expect(first.map((c) => c.callId)).toEqual(['call-5b', 'call-5']);
    const last = first.at(-1)!;
    const second = await store.listCalls({
      limit: 10,
      after: { createdAt: last.createdAt, callId: last.callId },
    });
    expect(second.map((c) => c.callId)).toEqual(['call-4', 'call-3', 'call-2', 'call-1']);
    expect((await store.listCalls({ since: '2026-01-01T00:00:04.000Z' })).map((c) => c.callId)).toEqual([
      'call-5b',
      'call-5',
      'call-4',
    ]);
  });

  it('dismisses a failed call once, with a journal entry saying why', async () => {
    await store.createCall(newCall());
    expect(
      await store.dismissCall('call-1', { reason: 'not failed', at: '2026-01-01T00:02:00.000Z' }),
    ).toBeUndefined();
    await saveSnapshot(store, 'call-1', snapshotUpdate({ state: 'failed', status: 'failed' }));
    const dismissed = await store.dismissCall('call-1', {
      reason: 'CRM rejected the campaign',
      at: '2026-01-01T00:02:00.000Z',
    });
    expect(dismissed).toMatchObject({ callId: 'call-1', state: 'dismissed', status: 'done' });
    expect(await store.countCalls('failed')).toBe(0);
    expect((await store.getJournal('call-1')).at(-1)).toMatchObject({
      kind: 'dismissed',
      state: 'dismissed',
      detail: { reason: 'CRM rejected the campaign' },
    });
    expect(
      await store.dismissCall('call-1', { reason: 'again', at: '2026-01-01T00:03:00.000Z' }),
    ).toBeUndefined();
  });

  it("reads finished calls' end, acknowledgement and failure times, and counts calls by state", async () => {
    await store.createCall(newCall());
    await store.createCall(newCall({ callId: 'call-2', roomName: 'room-2' }));
    await store.createCall(newCall({ callId: 'call-3', roomName: 'room-3' }));
    await store.commit({
      events: [],
      snapshots: [
        {
          callId: 'call-1',
          update: snapshotUpdate({
            state: 'done',
            status: 'done',
            snapshot: {
              context: { end: { endedAtMs: 1_000 }, callDataAcknowledgedAt: 4_000, failure: null },
            },
            updatedAt: '2026-01-01T00:10:00.000Z',
          }),
        },
        {
          callId: 'call-2',
          update: snapshotUpdate({
            state: 'failed',
            status: 'failed',
            snapshot: {
              context: { end: { endedAtMs: 2_000 }, callDataAcknowledgedAt: null, failure: { at: 9_000 } },
            },
            updatedAt: '2026-01-01T00:20:00.000Z',
          }),
        },
      ],
      journal: [],
    });
    const finished = await store.finishedSince('2026-01-01T00:05:00.000Z', 10);
    expect(finished).toEqual([
      { endedAtMs: 2_000, callDataAcknowledgedAtMs: null, failedAtMs: 9_000 },
      { endedAtMs: 1_000, callDataAcknowledgedAtMs: 4_000, failedAtMs: null },
    ]);
    expect(await store.finishedSince('2026-01-01T00:15:00.000Z', 10)).toHaveLength(1);
    expect(await store.finishedSince('2026-01-01T00:05:00.000Z', 1)).toHaveLength(1);
    expect(await store.countByState()).toEqual({ done: 1, failed: 1, recording: 1 });
  });

  it('prunes calls that finished done before the cutoff, with their log and journal; failed and live calls stay', async () => {
    await store.createCall(newCall());
    await store.createCall(newCall({ callId: 'call-2', roomName: 'room-2' }));
    await store.createCall(newCall({ callId: 'call-3', roomName: 'room-3' }));
    await store.createCall(newCall({ callId: 'call-4', roomName: 'room-4' }));
    await store.commit({
      events: [{ callId: 'call-1', event: { type: 'call.end' } }],
      snapshots: [
        {
          callId: 'call-1',
          update: snapshotUpdate({ state: 'done', status: 'done', updatedAt: '2026-01-01T00:01:00.000Z' }),
        },
        {
          callId: 'call-2',
          update: snapshotUpdate({
            state: 'failed',
            status: 'failed',
            updatedAt: '2026-01-01T00:01:00.000Z',
          }),
        },
        {
          callId: 'call-4',
          update: snapshotUpdate({ state: 'done', status: 'done', updatedAt: '2026-03-01T00:00:00.000Z' }),
        },
      ],
      journal: [
        { callId: 'call-1', entry: { at: '2026-01-01T00:01:00.000Z', kind: 'delivered', state: 'done' } },
      ],
    });
    expect(await store.pruneFinished('2026-02-01T00:00:00.000Z', 10)).toBe(1);
    expect(await store.getCall('call-1')).toBeUndefined();
    expect(await store.getEvents('call-1')).toEqual([]);
    expect(await store.getJournal('call-1')).toEqual([]);
    for (const kept of ['call-2', 'call-3', 'call-4']) expect(await store.getCall(kept)).toBeDefined();
    expect(await store.pruneFinished('2026-02-01T00:00:00.000Z', 10)).toBe(0);
  });
});

describe('SQLite store trouble', () => {
  it('reports a write lock held by another connection as STORE_UNAVAILABLE, and works again once it is released', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'callsync-store-'));
    const path = join(dir, 'callsync.db');
    const store = createCallStore(`sqlite:${path}`);
    await store.open();
    await store.createCall(newCall());
    const other = new Database(path);
    try {
      other.exec('BEGIN EXCLUSIVE');
      const write = store.commit({ ...NO_WRITES, events: [{ callId: 'call-1', event: {} }] });
      await expect(write).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', retryable: true });
      await expect(store.check()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await expect(store.createCall(newCall({ callId: 'c2', roomName: 'r2' }))).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
      });
      other.exec('ROLLBACK');
      await expect(store.check()).resolves.toBeUndefined();
      expect(await store.commit({ ...NO_WRITES, events: [{ callId: 'call-1', event: {} }] })).toEqual([1]);
    } finally {
      other.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('migrates a store written before the event log, keeping its journal numbering', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'callsync-store-'));
    const path = join(dir, 'callsync.db');
    const old = new Database(path);
    old.exec(`
      CREATE TABLE calls (call_id TEXT PRIMARY KEY, room_name TEXT NOT NULL, machine_version TEXT NOT NULL,
        state TEXT NOT NULL, status TEXT NOT NULL, snapshot TEXT NOT NULL, egress_id TEXT,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
      CREATE TABLE call_journal (call_id TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL, kind TEXT NOT NULL,
        state TEXT NOT NULL, detail TEXT, PRIMARY KEY (call_id, seq));
      INSERT INTO calls VALUES ('old-1', 'room-old', '3', 'inConversation', 'active',
        '{"value":"x","context":{"transcript":[{"id":"t1"}]}}', NULL, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
      INSERT INTO call_journal VALUES ('old-1', 1, '2026-01-01T00:00:00.000Z', 'state_entered', 'recording', NULL);
      INSERT INTO call_journal VALUES ('old-1', 2, '2026-01-01T00:00:01.000Z', 'state_entered', 'inConversation', NULL);
    `);
    old.close();
    const store = createCallStore(`sqlite:${path}`);
    try {
      await store.open();
      expect(await store.getCall('old-1')).toMatchObject({
        appliedSeq: 0,
        snapshot: { context: { transcript: [{ id: 't1' }] } },
      });
      await store.commit({
        events: [{ callId: 'old-1', event: { n: 1 } }],
        snapshots: [],
        journal: [{ callId: 'old-1', entry: { at: '2026-01-01T00:00:02.000Z', kind: 'k', state: 's' } }],
      });
      expect((await store.getJournal('old-1')).map((e) => e.seq)).toEqual([1, 2, 3]);
      expect(await store.getEvents('old-1')).toEqual([{ seq: 1, event: { n: 1 } }]);
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('PostgreSQL store trouble', () => {
  it('reports a database it cannot reach as STORE_UNAVAILABLE within its timeout', async () => {
    // Port 9 (discard) is closed here: the connection is refused.
    const store = createCallStore('postgres://postgres@127.0.0.1:9/test', { timeoutMs: 1_000 });
    await expect(store.open()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', retryable: true });
    await store.close();
  });
});
