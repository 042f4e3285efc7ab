/**
 * callsync loses nothing when its own process is killed: the real supervisor runs as a child
 * process (`npm start`'s command) and is SIGKILLed four times, each time with a group of calls
 * held at a different point of their lives, then started again on the same SQLite store:
 *
 *   A. calls ended, egress still ENDING (finalisation held by the emulator; half the rooms drop
 *      `egress_ended`, so only ListEgress polling after the restart can learn the file);
 *   B. recording upload in flight (the CRM holds `/upload` open with nothing stored, or stored
 *      the file and loses the answer, or handles the request late, after the sender died);
 *   C. recording acknowledged, call-data POST in flight (held open, or stored and answer lost);
 *   D. call-data refused with 503 + Retry-After, the process killed during the backoff.
 *
 * Calls not yet ended ride through every earlier kill in conversation (their transcripts and
 * leads must survive). At the end every call is delivered with exactly one accepted CRM effect
 * per step: one stored upload per `<callId>:recording` and one stored document per
 * `<callId>:call-data`, each request that repeated a stored step answered as a replay, the
 * recording bytes identical to the egress file, and no call left unfinished.
 *
 * Synchronisation: the emulator's egress events, the CRM sandbox's read-out (`waitFor…`), the
 * child's own log lines, and `/readyz` and `GET /v1/calls/{id}` polled in bounded loops. No
 * sleeps, no timing asserts.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { EgressStatus } from 'livekit-server-sdk';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CrmFault } from '../../src/sandbox/crm/index.ts';
import type { CrmSandboxEndpoint } from '../../src/sandbox/crm/types.ts';
import { CHILD_WAIT_MS } from '../helpers/child-callsync.ts';
import {
  TRANSCRIPT_ITEMS_PER_CALL,
  startChildPipeline,
  type ChildPipeline,
  type OpenCall,
} from '../helpers/child-pipeline.ts';

/**
 * Group A's egresses stay ENDING this long after the stop, and group D's 503s ask for this much
 * backoff: both must outlast the few milliseconds between the last observation and the kill by a
 * wide margin on a loaded machine, because the kill must find every one of those calls unfinished.
 */
const HELD_ENDING_MS = 5_000;
const RETRY_AFTER_SECONDS = 5;
/** Any one awaited condition, e.g. a group's deliveries after a restart (start-up, polling, backoff). */
const WAIT = { timeoutMs: CHILD_WAIT_MS };

let p: ChildPipeline | undefined;
afterEach(async () => {
  await p?.close();
  p = undefined;
});

interface JournalEntry {
  kind: string;
  detail?: Record<string, unknown>;
}
const journalOf = (view: Record<string, unknown>) => view.journal as JournalEntry[];

/**
 * How the CRM holds the requests of a group, in turn: held open and nothing stored; stored, then
 * the answer lost; and (for uploads) handled late, after the sender died: before the new process
 * retries (the retry stores it), or after the retry was stored (the late one is a replay).
 */
const HOLDS: readonly CrmFault[] = [
  { hang: true },
  { hang: true, afterProcessing: true },
  { delayMs: 100 },
  { delayMs: 10_000 },
];
const holds = (count: number, kinds: number): CrmFault[] =>
  Array.from({ length: count }, (_, index) => HOLDS[index % kinds]!);
const storesFirst = (fault: CrmFault) => 'hang' in fault && fault.afterProcessing === true;

/** Calls the SQLite store holds unfinished (read directly, while no supervisor runs). */
function activeRows(storeUrl: string): number {
  const db = new Database(storeUrl.replace(/^sqlite:/, ''), { readonly: true });
  try {
    return db
      .prepare<[], { count: number }>(`SELECT COUNT(*) AS count FROM calls WHERE status = 'active'`)
      .get()!.count;
  } finally {
    db.close();
  }
}

/**
 * The kinds of the call's journal entries that are committed to the SQLite store (read directly,
 * beside the running supervisor: WAL lets a reader in). `GET /v1/calls/{id}` also shows entries
 * still queued for the next group commit, which a kill loses together with the snapshot.
 */
function storedJournalKinds(storeUrl: string, callId: string, step: string): string[] {
  const db = new Database(storeUrl.replace(/^sqlite:/, ''), { readonly: true });
  try {
    return db
      .prepare<[string, string], { kind: string }>(
        `SELECT kind FROM call_journal WHERE call_id = ? AND json_extract(detail, '$.step') = ? ORDER BY seq`,
      )
      .all(callId, step)
      .map((row) => row.kind);
  } finally {
    db.close();
  }
}

describe('callsync killed with SIGKILL and started again', () => {
  it('delivers every call exactly once per step across kills at every point of a call', async () => {
    // The deadline must outlast the held ENDING plus a restart, or group A would go out without audio.
    p = await startChildPipeline({ env: { CALLSYNC_EGRESS_DEADLINE_SECONDS: '60' } });
    const { emulator, crm } = p;
    await p.start();

    const group = (name: string, size: number) =>
      Array.from({ length: size }, (_, i) => `crash-${name}-${i}`);
    const rooms = { A: group('a', 8), B: group('b', 8), C: group('c', 8), D: group('d', 6) };
    /** Rooms whose `egress_ended` webhook is dropped: only polling can settle them. */
    const pollOnly = new Set(rooms.A.filter((_, i) => i % 2 === 1));
    const opened = await Promise.all(
      Object.values(rooms)
        .flat()
        .map((room) =>
          p!.openCall(room, {
            recordingSeconds: 2,
            ...(rooms.A.includes(room) ? { finalizeAfterMs: HELD_ENDING_MS } : {}),
            ...(pollOnly.has(room) ? { webhooks: { drop: ['egress_ended'] } } : {}),
          }),
        ),
    );
    const calls = new Map(opened.map((call) => [call.room, call]));
    const callsOf = (names: string[]) => names.map((room) => calls.get(room)!);
    let finished = 0;
    /** Waits for the group's call data, then checks the CRM stored each step once so far. */
    const deliveredAll = async (group: OpenCall[]) => {
      await Promise.all(
        group.map((call) =>
          crm.waitForCallData(call.callId, WAIT).catch(async (error: unknown) => {
            // Say where the call is stuck, as the supervisor sees it.
            const { body } = await p!.child.api('GET', `/v1/calls/${call.callId}`);
            throw new Error(`${call.room}: ${String(error)}; state ${String(body.state)}`, { cause: body });
          }),
        ),
      );
      // And acknowledged in callsync: a call whose answer was lost to the kill asks again (a
      // replay) before it is done, and that request must not meet the next group's faults.
      await Promise.all(
        group.map((call) => p!.child.poll(`/v1/calls/${call.callId}`, ({ body }) => body.state === 'done')),
      );
      finished += group.length;
      const { uploads, callData } = crm.received();
      expect(uploads).toHaveLength(finished);
      expect(callData).toHaveLength(finished);
    };
    /**
     * Kills the child, starts a new one, and checks it restored exactly the calls the store holds
     * unfinished: at most `unfinished`, and at least that less the group's two 100 ms CRM holds
     * (such a hold may run out before the kill, letting its call finish).
     */
    const killAndRestart = async (unfinished: number) => {
      expect((await p!.child.kill()).signal).toBe('SIGKILL');
      const active = activeRows(p!.storeUrl);
      expect(active).toBeLessThanOrEqual(unfinished);
      expect(active).toBeGreaterThanOrEqual(unfinished - 2);
      const next = await p!.start();
      const recovery = await next.waitForLog((line) => line.msg === 'recovery done');
      expect(recovery).toMatchObject({ restored: active, skipped: 0 });
    };
    /** Waits until `count` more requests reached `endpoint`, and every "stored, answer lost" one was stored. */
    const held = async (endpoint: CrmSandboxEndpoint, before: number, count: number) => {
      await crm.waitForRequests(endpoint, before + count, WAIT);
      const storedFirst = crm
        .received()
        .faults.filter((f) => f.endpoint === endpoint && storesFirst(f.fault))
        .map((f) => f.idempotencyKey);
      await crm.waitFor(
        (received) =>
          storedFirst.every((key) =>
            (endpoint === 'upload' ? received.uploads : received.callData).some(
              (item) => item.idempotencyKey === key,
            ),
          ),
        WAIT,
      );
    };

    // A: ended, each egress held in ENDING (its file not written yet); killed there.
    await Promise.all(callsOf(rooms.A).map((call) => p!.endCall(call)));
    await Promise.all(
      callsOf(rooms.A).map((call) =>
        emulator.waitForEgress(call.egressId, (info) => info.status === EgressStatus.EGRESS_ENDING, WAIT),
      ),
    );
    await killAndRestart(30);
    await deliveredAll(callsOf(rooms.A));

    // B: upload requests held by the CRM in the three ways above; killed mid-upload.
    const uploadHolds = holds(rooms.B.length, 4);
    crm.injectFaults('upload', uploadHolds);
    const uploadsBefore = crm.received().requests.upload;
    await Promise.all(callsOf(rooms.B).map((call) => p!.endCall(call)));
    await held('upload', uploadsBefore, rooms.B.length);
    await killAndRestart(22);
    await deliveredAll(callsOf(rooms.B));

    // C: recordings acknowledged, call-data held open (half already stored); killed between.
    const callDataHolds = holds(rooms.C.length, 2);
    crm.injectFaults('call-data', callDataHolds);
    const callDataBefore = crm.received().requests['call-data'];
    await Promise.all(callsOf(rooms.C).map((call) => p!.endCall(call)));
    await Promise.all(callsOf(rooms.C).map((call) => crm.waitForUpload(`${call.callId}:recording`, WAIT)));
    await held('call-data', callDataBefore, rooms.C.length);
    await killAndRestart(14);
    await deliveredAll(callsOf(rooms.C));

    // D: call-data answered 503 with Retry-After; killed while every call waits out its backoff.
    crm.injectFaults(
      'call-data',
      rooms.D.map(() => ({ status: 503, retryAfterSeconds: RETRY_AFTER_SECONDS })),
    );
    const refusedBefore = crm.received().requests['call-data'];
    await Promise.all(callsOf(rooms.D).map((call) => p!.endCall(call)));
    await crm.waitForRequests('call-data', refusedBefore + rooms.D.length, WAIT);
    // The 503 reached each call (not just the CRM) and is committed with the call's snapshot:
    // the process is killed mid-backoff, and the backoff must outlive it.
    await vi.waitFor(
      () => {
        for (const call of callsOf(rooms.D))
          expect(storedJournalKinds(p!.storeUrl, call.callId, 'call-data')).toContain('attempt_failed');
      },
      { timeout: CHILD_WAIT_MS, interval: 50 },
    );
    await killAndRestart(6);
    await deliveredAll(callsOf(rooms.D));

    // Exactly one accepted CRM effect per step, for every call.
    const received = crm.received();
    expect(crm.pendingFaults()).toEqual({ upload: 0, 'call-data': 0 });
    const keys = (step: string) => opened.map((call) => `${call.callId}:${step}`).sort();
    expect(received.uploads.map((upload) => upload.idempotencyKey).sort()).toEqual(keys('recording'));
    expect(received.callData.map((item) => item.idempotencyKey).sort()).toEqual(keys('call-data'));
    // Every step the CRM stored before its answer was lost was asked again and got the replay.
    const storedThenLost = received.faults.filter((f) => storesFirst(f.fault));
    expect(storedThenLost).toHaveLength([...uploadHolds, ...callDataHolds].filter(storesFirst).length);
    for (const { endpoint, idempotencyKey } of storedThenLost) {
      expect(received.duplicateRequests).toContainEqual(
        expect.objectContaining({ endpoint, idempotencyKey }),
      );
    }
    for (const duplicate of received.duplicateRequests) {
      expect(duplicate.status).toBeLessThan(300);
    }

    for (const call of opened) {
      const upload = received.uploads.find((item) => item.idempotencyKey === `${call.callId}:recording`)!;
      const egress = emulator.getEgress(call.egressId)!;
      expect(egress.status).toBe(EgressStatus.EGRESS_COMPLETE);
      const original = await readFile(egress.fileResults[0]!.location);
      expect(upload.sha256).toBe(createHash('sha256').update(original).digest('hex'));

      const { document } = received.callData.find((item) => item.callId === call.callId)!;
      expect(document.callDetails).toMatchObject({
        callId: call.callId,
        recordingUrl: upload.url,
        recordingSize: original.length,
      });
      expect(document.transcription.total_items).toBe(TRANSCRIPT_ITEMS_PER_CALL);
      expect(document.lead).toMatchObject({ leadId: call.leadId });

      const view = await p.child.api('GET', `/v1/calls/${call.callId}`);
      expect(view.body).toMatchObject({ state: 'done', status: 'done', outcome: 'delivered' });
      const journal = journalOf(view.body);
      if (pollOnly.has(call.room)) {
        expect(journal.find((entry) => entry.kind === 'egress_final')?.detail?.via).toBe('poll');
      }
      if (rooms.D.includes(call.room)) {
        // The backoff survived the kill: the second attempt, after the restart, was the one stored.
        expect(journal.filter((entry) => entry.detail?.step === 'call-data')).toMatchObject([
          { kind: 'attempt_failed', detail: { attempt: 1, error: { status: 503 } } },
          { kind: 'step_succeeded', detail: { attempts: 2 } },
        ]);
      }
    }
    const all = (await p.child.api('GET', '/v1/calls')).body.calls as { status: string }[];
    expect(all).toHaveLength(opened.length);
    expect(all.every((call) => call.status === 'done')).toBe(true);

    p.child.signal('SIGTERM');
    expect(await p.child.exited).toEqual({ code: 0, signal: null });
  }, 90_000);
});
