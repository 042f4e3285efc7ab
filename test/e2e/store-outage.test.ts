/**
 * Store trouble is visible and loses nothing (the contract's "What an answer promises"), against
 * the real app over the LiveKit emulator and the CRM sandbox:
 *
 * - PostgreSQL behind a TCP fault proxy, once refusing connections (down) and once accepting
 *   them and answering nothing (stopped answering), with `CALLSYNC_STORE_TIMEOUT_MS` bounding
 *   every connection and query;
 * - SQLite made unwritable by another connection holding `BEGIN EXCLUSIVE` on the same file.
 *
 * Each: calls are started and fed (2xx) while the store works; during the outage a new call,
 * a transcript batch, a lead and an end each answer `503 STORE_UNAVAILABLE` (within a deadline:
 * a request left hanging is a failure, not a slow pass) and `/readyz` answers 503; once the
 * store is back, without a restart, `/readyz` is 200 again, the client re-sends what got 503,
 * and every call reaches the CRM with everything that was answered 2xx, before and after. The
 * store errors are counted in `callsync_store_write_errors_total{operation}`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { CallData } from '../../src/payload/call-data.ts';
import {
  INGEST_TOKEN,
  PERSONA_CONFIG,
  startCallsyncHarness,
  type CallsyncHarness,
} from '../helpers/callsync-harness.ts';
import { callTimes } from '../helpers/callsync-api.ts';
import { POSTGRES_URL, postgresSchemas } from '../helpers/postgres-schemas.ts';
import { startTcpFaultProxy, type TcpFaultProxy } from '../helpers/tcp-fault-proxy.ts';

/** The machines' PostgreSQL; each test gets its own schema. */
const POSTGRES = new URL(POSTGRES_URL);
const schemas = postgresSchemas('callsync_outage');
/**
 * The bound on every PostgreSQL connection and query (`CALLSYNC_STORE_TIMEOUT_MS`). Short, so the
 * outage shows quickly, yet above what a new connection and a commit take on a loaded CI machine
 * once the store is back: at 1 s a request after the recovery was once answered 503, in a
 * whole-suite run on Node 24.
 */
const STORE_TIMEOUT_MS = 2_500;
/**
 * How long a request may take to be answered during the outage: several store timeouts. Not a
 * timing assertion: an answer that does not come within it is recorded as "no answer", the
 * hang the store timeouts exist to prevent.
 */
const ANSWER_DEADLINE_MS = 15_000;
/** How long `/readyz` may take to reflect the store's state, either way. */
const READY_DEADLINE_MS = 30_000;
/** How long each call's delivery may take once the store is back. */
const DELIVERY_DEADLINE_MS = 60_000;
const TEST_TIMEOUT_MS = 180_000;

/** Calls that started a minute ago (the maximum call duration counts from `startedAt`). */
const { at } = callTimes();

let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  // Reverse order: the fault is lifted before the app closes, so its store can close too.
  const steps = cleanups.reverse();
  cleanups = [];
  const failures: unknown[] = [];
  for (const step of steps) await step().catch((error: unknown) => failures.push(error));
  if (failures.length > 0) throw failures[0];
});

interface Answer {
  /** The HTTP status, or `no answer within … ms`. */
  status: number | string;
  body: Record<string, unknown>;
}

/** One request to the app, answered within `deadlineMs` or recorded as no answer. */
async function ask(
  h: CallsyncHarness,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  deadlineMs = ANSWER_DEADLINE_MS,
): Promise<Answer> {
  try {
    const answer = await request(`${h.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${INGEST_TOKEN}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(deadlineMs),
    });
    const text = await answer.body.text();
    let parsed: Record<string, unknown> = {};
    try {
      parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      parsed = { text };
    }
    return { status: answer.statusCode, body: parsed };
  } catch (error) {
    if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
      return { status: `no answer within ${deadlineMs} ms`, body: {} };
    }
    throw error;
  }
}

/** `503 STORE_UNAVAILABLE`, `202`, `no answer…`: what a comparison shows best. */
const summary = (answer: Answer) =>
  typeof answer.body.error === 'string' ? `${answer.status} ${answer.body.error}` : `${answer.status}`;

/** Asks `/readyz` until it answers `status`, or fails with the last answer after the deadline. */
async function readyzBecomes(h: CallsyncHarness, status: number): Promise<void> {
  const deadline = Date.now() + READY_DEADLINE_MS;
  let last: Answer;
  for (;;) {
    last = await ask(h, 'GET', '/readyz', undefined, Math.max(1, Math.min(5_000, deadline - Date.now())));
    if (last.status === status || Date.now() >= deadline) break;
    await delay(100);
  }
  expect({ readyz: last.status, body: last.body }).toMatchObject({ readyz: status });
}

/** The sum of `callsync_store_write_errors_total` over its series (0 before any), each with `operation`. */
async function storeErrorsTotal(h: CallsyncHarness): Promise<{ declared: boolean; total: number }> {
  const answer = await request(`${h.url}/metrics`, { signal: AbortSignal.timeout(ANSWER_DEADLINE_MS) });
  expect(answer.statusCode).toBe(200);
  const text = await answer.body.text();
  let total = 0;
  for (const line of text.split('\n')) {
    const sample = /^callsync_store_write_errors_total(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!sample) continue;
    expect(sample[1] ?? '', line).toMatch(/operation="[^"]+"/);
    total += Number(sample[2]);
  }
  return { declared: /^# TYPE callsync_store_write_errors_total counter$/m.test(text), total };
}

interface TrackedCall {
  room: string;
  callId: string;
  /** Contents of the items answered 202, in timestamp order. */
  items: string[];
  /** Lead ids answered 202, in the order linked. */
  leads: string[];
}

let nextSecond = 1;
const item = (call: TrackedCall, n: number) => ({
  id: `${call.room}-item-${n}`,
  role: n % 2 === 0 ? 'user' : 'assistant',
  content: `${call.room} turn ${n}`,
  timestamp: at(nextSecond++),
});

async function startCall(h: CallsyncHarness, room: string): Promise<TrackedCall> {
  const created = await ask(h, 'POST', '/v1/calls', createBody(room));
  expect(summary(created), `POST /v1/calls for ${room}`).toBe('201');
  return { room, callId: created.body.callId as string, items: [], leads: [] };
}

const createBody = (room: string) => ({
  roomName: room,
  callerNumber: '+918655066243',
  config: PERSONA_CONFIG,
  direction: 'inbound',
  startedAt: at(0),
});

async function sendItems(h: CallsyncHarness, call: TrackedCall, numbers: number[]): Promise<void> {
  const items = numbers.map((n) => item(call, n));
  const answer = await ask(h, 'POST', `/v1/calls/${call.callId}/transcript`, { items });
  expect(summary(answer), `transcript for ${call.room}`).toBe('202');
  call.items.push(...items.map((i) => i.content));
}

async function sendLead(h: CallsyncHarness, call: TrackedCall, leadId: string): Promise<void> {
  const answer = await ask(h, 'POST', `/v1/calls/${call.callId}/leads`, {
    leadId,
    data: { name: `caller of ${call.room}` },
  });
  expect(summary(answer), `lead for ${call.room}`).toBe('202');
  call.leads.push(leadId);
}

const END_BODY = { endedAt: at(40), status: 'completed' };

async function endCall(h: CallsyncHarness, call: TrackedCall): Promise<void> {
  const answer = await ask(h, 'POST', `/v1/calls/${call.callId}/end`, END_BODY);
  expect(summary(answer), `end of ${call.room}`).toBe('202');
}

function leadIdsOf(document: CallData): string[] {
  const listed = document.transcription.metadata.lead_ids;
  if (Array.isArray(listed)) return listed as string[];
  return typeof document.lead.leadId === 'string' ? [document.lead.leadId] : [];
}

/** A store outage the test switches on and off while the app runs. */
interface StoreFault {
  on(): Promise<void>;
  off(): Promise<void>;
}

/**
 * The scenario, the same on every store: three calls fed before the outage, four requests
 * during it (one of each kind), the same four re-sent after it, more fed after, every call
 * delivered with everything answered 2xx.
 */
async function outageScenario(h: CallsyncHarness, fault: StoreFault): Promise<void> {
  nextSecond = 1;
  // Before: three calls recording, with transcript and leads stored.
  const calls: TrackedCall[] = [];
  for (const room of ['room-a', 'room-b', 'room-c']) {
    h.startLiveKitCall(room);
    calls.push(await startCall(h, room));
  }
  const [callA, callB, callC] = calls as [TrackedCall, TrackedCall, TrackedCall];
  await sendItems(h, callA, [1, 2]);
  await sendItems(h, callB, [1, 2]);
  await sendItems(h, callC, [1]);
  await sendLead(h, callA, 'lead-a-1');
  await sendLead(h, callC, 'lead-c-1');
  for (const call of calls) await h.recordingStarted(call.room);
  const errorsBefore = await storeErrorsTotal(h);

  // During: one request of each kind, each answered 503 STORE_UNAVAILABLE.
  await fault.on();
  h.startLiveKitCall('room-d');
  const itemA3 = item(callA, 3);
  const during = {
    create: summary(await ask(h, 'POST', '/v1/calls', createBody('room-d'))),
    transcript: summary(await ask(h, 'POST', `/v1/calls/${callA.callId}/transcript`, { items: [itemA3] })),
    lead: summary(
      await ask(h, 'POST', `/v1/calls/${callB.callId}/leads`, {
        leadId: 'lead-b-1',
        data: { name: 'caller of room-b' },
      }),
    ),
    end: summary(await ask(h, 'POST', `/v1/calls/${callC.callId}/end`, END_BODY)),
  };
  expect(during).toEqual({
    create: '503 STORE_UNAVAILABLE',
    transcript: '503 STORE_UNAVAILABLE',
    lead: '503 STORE_UNAVAILABLE',
    end: '503 STORE_UNAVAILABLE',
  });
  await readyzBecomes(h, 503);

  // After: ready again without a restart; the client re-sends what got 503, then goes on.
  await fault.off();
  await readyzBecomes(h, 200);
  const errorsAfter = await storeErrorsTotal(h);
  expect(errorsAfter.declared, 'callsync_store_write_errors_total is a counter').toBe(true);
  expect(errorsAfter.total).toBeGreaterThan(errorsBefore.total);

  const recreated = await ask(h, 'POST', '/v1/calls', createBody('room-d'));
  // 201, or 200 if the refused attempt was stored after all: either way one call for the room.
  expect(['200', '201'], 'POST /v1/calls for room-d, re-sent').toContain(summary(recreated));
  const callD: TrackedCall = {
    room: 'room-d',
    callId: recreated.body.callId as string,
    items: [],
    leads: [],
  };
  calls.push(callD);
  const resentItem = await ask(h, 'POST', `/v1/calls/${callA.callId}/transcript`, { items: [itemA3] });
  expect(summary(resentItem), 'transcript for room-a, re-sent').toBe('202');
  callA.items.push(itemA3.content);
  await sendLead(h, callB, 'lead-b-1');
  await endCall(h, callC);

  await sendItems(h, callA, [4]);
  await sendItems(h, callB, [3]);
  await sendItems(h, callD, [1, 2]);
  await sendLead(h, callD, 'lead-d-1');
  await h.recordingStarted(callD.room);
  for (const call of [callA, callB, callD]) await endCall(h, call);

  // Every call reaches the CRM once, with everything that was answered 2xx.
  const delivered: Record<string, { items: string[]; leads: string[] }> = {};
  const expected: Record<string, { items: string[]; leads: string[] }> = {};
  for (const call of calls) {
    const { document } = await h.crm.waitForCallData(call.callId, {
      timeoutMs: DELIVERY_DEADLINE_MS,
      description: `the call data of ${call.room} (${call.callId})`,
    });
    delivered[call.room] = {
      items: document.transcription.conversation_items.map((i) => i.content),
      leads: leadIdsOf(document),
    };
    expected[call.room] = { items: call.items, leads: call.leads };
  }
  expect(delivered).toEqual(expected);
  const received = h.crm.received();
  for (const call of calls) {
    expect(
      received.callData.filter((document) => document.callId === call.callId),
      `call-data documents for ${call.room}`,
    ).toHaveLength(1);
  }
}

describe('store outage on PostgreSQL', () => {
  async function postgresHarness(proxy: TcpFaultProxy): Promise<{ h: CallsyncHarness }> {
    cleanups.push(() => schemas.dropAll());
    const store = schemas.storeUrl({ host: proxy.host, port: proxy.port });
    const h = await startCallsyncHarness({
      env: { CALLSYNC_STORE: store, CALLSYNC_STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS) },
    });
    cleanups.push(() => h.close());
    return { h };
  }

  async function startProxy(): Promise<TcpFaultProxy> {
    const proxy = await startTcpFaultProxy({
      targetHost: POSTGRES.hostname,
      targetPort: Number(POSTGRES.port || 5432),
    });
    cleanups.push(() => proxy.close());
    return proxy;
  }

  it.each([
    ['refusing connections (down)', 'refuse'],
    ['accepting connections and answering nothing', 'blackhole'],
  ] as const)(
    'PostgreSQL %s: 503 STORE_UNAVAILABLE and /readyz 503 during, everything accepted delivered after, no restart',
    async (_name, mode) => {
      const proxy = await startProxy();
      const { h } = await postgresHarness(proxy);
      // Lifted before the app closes (cleanups run in reverse), whatever the test reached.
      cleanups.push(() => proxy.setMode('pass'));
      await outageScenario(h, {
        on: () => proxy.setMode(mode),
        off: () => proxy.setMode('pass'),
      });
    },
    TEST_TIMEOUT_MS,
  );
});

describe('store outage on SQLite', () => {
  it(
    'SQLite locked by another connection (BEGIN EXCLUSIVE): 503 STORE_UNAVAILABLE and /readyz 503 during, everything accepted delivered after, no restart',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'callsync-outage-'));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      const path = join(dir, 'callsync.db');
      const h = await startCallsyncHarness({
        // The timeout is the PostgreSQL one; a SQLite store may use it for its lock wait too.
        env: { CALLSYNC_STORE: `sqlite:${path}`, CALLSYNC_STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS) },
      });
      cleanups.push(() => h.close());

      let holder: Database.Database | undefined;
      const release = () => {
        if (holder?.inTransaction) holder.exec('ROLLBACK');
        holder?.close();
        holder = undefined;
        return Promise.resolve();
      };
      cleanups.push(release);
      await outageScenario(h, {
        on() {
          holder = new Database(path);
          // The app's file is in WAL mode: readers go on, every writer waits for this lock.
          expect(holder.pragma('journal_mode', { simple: true })).toBe('wal');
          holder.pragma('busy_timeout = 5000');
          holder.exec('BEGIN EXCLUSIVE');
          return Promise.resolve();
        },
        off: release,
      });
    },
    TEST_TIMEOUT_MS,
  );
});
