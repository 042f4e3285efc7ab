import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CallStore, NewCall } from '../../src/store/call-store.ts';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createCallStore } from '../../src/store/open-store.ts';

/** The machines' PostgreSQL (trust auth, database `test`); each test gets its own schema. */
const POSTGRES_URL = process.env.CALLSYNC_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schemas: string[] = [];
afterAll(async () => {
  if (schemas.length === 0) return;
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await client.end();
});
function postgresStore(): CallStore {
  const schema = `callsync_test_${randomBytes(6).toString('hex')}`;
  schemas.push(schema);
  return createCallStore(`${POSTGRES_URL}?schema=${schema}`);
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
    const repeat = await store.createCall(newCall({ callId: 'call-2' }));
    expect(repeat).toMatchObject({ created: false, call: { callId: 'call-1' } });
    expect(await store.getCall('call-2')).toBeUndefined();
  });

  it('frees the room name once the call is final', async () => {
    await store.createCall(newCall());
    await store.saveSnapshot('call-1', {
      state: 'done',
      status: 'done',
      snapshot: { value: 'done' },
      machineVersion: '1',
      egressId: 'EG_1',
      updatedAt: '2026-01-01T00:01:00.000Z',
    });
    const next = await store.createCall(newCall({ callId: 'call-2' }));
    expect(next.created).toBe(true);
  });

  it('stores snapshots, keeps a known egress id and survives a reopen', async () => {
    await store.createCall(newCall());
    const update = {
      state: 'awaitingEgress',
      status: 'active' as const,
      snapshot: { value: 'awaitingEgress', context: { egressId: 'EG_1' } },
      machineVersion: '1',
      egressId: 'EG_1',
      updatedAt: '2026-01-01T00:00:30.000Z',
    };
    await store.saveSnapshot('call-1', update);
    await store.saveSnapshot('call-1', { ...update, state: 'uploadingRecording', egressId: null });
    await store.close();
    await store.open();
    expect(await store.getCall('call-1')).toMatchObject({
      state: 'uploadingRecording',
      status: 'active',
      egressId: 'EG_1',
      snapshot: update.snapshot,
    });
    expect((await store.listActive()).map((call) => call.callId)).toEqual(['call-1']);
  });

  it('appends the journal in order', async () => {
    await store.createCall(newCall());
    for (const state of ['recording', 'inConversation', 'awaitingEgress']) {
      await store.appendJournal('call-1', { at: '2026-01-01T00:00:00.000Z', kind: 'transition', state });
    }
    await store.appendJournal('call-1', {
      at: '2026-01-01T00:00:01.000Z',
      kind: 'attempt_failed',
      state: 'awaitingEgress',
      detail: { code: 'LIVEKIT_TIMEOUT' },
    });
    const journal = await store.getJournal('call-1');
    expect(journal.map((entry) => [entry.seq, entry.state])).toEqual([
      [1, 'recording'],
      [2, 'inConversation'],
      [3, 'awaitingEgress'],
      [4, 'awaitingEgress'],
    ]);
    expect(journal[3]!.detail).toEqual({ code: 'LIVEKIT_TIMEOUT' });
  });

  it("applies one call's writes in the order they were made, even when nobody awaits them", async () => {
    await store.createCall(newCall());
    const states = Array.from({ length: 40 }, (_, index) => `s${index}`);
    await Promise.all(
      states.flatMap((state) => [
        store.appendJournal('call-1', { at: '2026-01-01T00:00:00.000Z', kind: 'transition', state }),
        store.saveSnapshot('call-1', {
          state,
          status: 'active',
          snapshot: { value: state },
          machineVersion: '1',
          egressId: null,
          updatedAt: '2026-01-01T00:00:00.000Z',
        }),
      ]),
    );
    expect((await store.getJournal('call-1')).map((entry) => entry.state)).toEqual(states);
    expect((await store.getCall('call-1'))?.state).toBe('s39');
  });

  it('lists calls by state and status', async () => {
    await store.createCall(newCall());
    await store.createCall(
      newCall({ callId: 'call-2', roomName: 'room-2', createdAt: '2026-01-01T00:00:05.000Z' }),
    );
    await store.saveSnapshot('call-2', {
      state: 'failed',
      status: 'failed',
      snapshot: {},
      machineVersion: '1',
      egressId: null,
      updatedAt: '2026-01-01T00:02:00.000Z',
    });
    expect((await store.listCalls({ state: 'failed' })).map((c) => c.callId)).toEqual(['call-2']);
    expect(await store.countCalls('failed')).toBe(1);
    expect(await store.countCalls('done')).toBe(0);
    expect((await store.listCalls({ status: 'active' })).map((c) => c.callId)).toEqual(['call-1']);
    expect((await store.listCalls({})).map((c) => c.callId)).toEqual(['call-2', 'call-1']);
  });
});
