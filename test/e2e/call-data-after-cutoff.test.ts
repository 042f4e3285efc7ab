/**
 * "A transcript item answered 202 is in the call data the CRM receives" across a crash in the
 * middle of a store outage: the CRM keeps the first call-data document it acknowledges under a
 * key, so callsync must not send one that a restart would build differently.
 *
 * callsync runs as a child process on SQLite. A call is reported and ended; then another
 * connection locks the store (`BEGIN EXCLUSIVE`), the egress finishes, callsync uploads the
 * recording and has its call data ready, but cannot store that the call stopped collecting. It
 * must hold the call data (it says so in its log) rather than send it. It is SIGKILLed, the store
 * unlocked, and callsync started again: the restored call collects again (its recording upload
 * is answered 503 with `Retry-After` meanwhile), takes one more item with a 202, and the call
 * data the CRM keeps must hold that item.
 *
 * Synchronisation: real HTTP answers, the child's log lines, the CRM sandbox's received log.
 * The egress's ENDING → COMPLETE delay (`finalizeAfterMs`) only leaves room to take the lock
 * after the end was answered; no wait in the test is on time alone.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { callTimes } from '../helpers/callsync-api.ts';
import { CHILD_WAIT_MS } from '../helpers/child-callsync.ts';
import { startChildPipeline, type ChildPipeline } from '../helpers/child-pipeline.ts';

/** ENDING → COMPLETE: room to take the store's lock after the end was answered. */
const EGRESS_FINALIZE_MS = 3_000;
/** The restored call waits this long in its recording step (still collecting) for the late item. */
const UPLOAD_RETRY_AFTER_SECONDS = 5;
const HELD = 'call data held until the store is back: the call must be stored as no longer collecting first';

let pipeline: ChildPipeline | undefined;
afterEach(async () => {
  await pipeline?.close();
  pipeline = undefined;
});

describe('call data after a crash during a store outage', () => {
  it('is held until the call is stored as no longer collecting, so an item accepted after the restart reaches the CRM', async () => {
    const p = (pipeline = await startChildPipeline({
      env: { CALLSYNC_STORE_TIMEOUT_MS: '300' },
    }));
    await p.start();
    const room = 'room-cutoff-1';
    const call = await p.openCall(room, { finalizeAfterMs: EGRESS_FINALIZE_MS });
    await p.endCall(call);

    // The store is locked before the egress finishes.
    const holder = new Database(join(p.dir, 'callsync.db'));
    holder.pragma('busy_timeout = 5000');
    holder.exec('BEGIN EXCLUSIVE');
    try {
      await p.crm.waitForUpload(`${call.callId}:recording`, { timeoutMs: CHILD_WAIT_MS });
      // Either callsync holds the call data (right), or the CRM has it (wrong, and the end shows it).
      const held = p.child.waitForLog((line) => line.msg === HELD && line.callId === call.callId);
      const sent = p.crm.waitFor((received) =>
        received.callData.some((entry) => entry.idempotencyKey === `${call.callId}:call-data`),
      );
      held.catch(() => undefined);
      sent.catch(() => undefined);
      await Promise.race([held, sent]);
      await p.child.kill();
      // Held, not sent: the CRM has no call data for the call.
      expect(p.crm.received().callData.map((entry) => entry.idempotencyKey)).not.toContain(
        `${call.callId}:call-data`,
      );
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }

    // The restored call uploads its recording again; the CRM asks it to come back later.
    const uploadsBefore = p.crm.received().requests.upload;
    p.crm.injectFaults('upload', [{ status: 503, retryAfterSeconds: UPLOAD_RETRY_AFTER_SECONDS }]);
    const faulted = p.crm.waitForRequests('upload', uploadsBefore + 1, { timeoutMs: CHILD_WAIT_MS });
    await p.start();
    await faulted;
    const { at } = callTimes();
    const late = await p.child.api('POST', `/v1/calls/${call.callId}/transcript`, {
      items: [{ id: `${room}-late`, role: 'user', content: 'One more thing.', timestamp: at(7) }],
    });
    expect(late.status).toBe(202);

    const { document } = await p.crm.waitForCallData(call.callId, { timeoutMs: CHILD_WAIT_MS });
    const contents = document.transcription.conversation_items.map((item) => item.content);
    expect(contents).toContain('One more thing.');
    expect(
      p.crm.received().callData.filter((e) => e.idempotencyKey === `${call.callId}:call-data`),
    ).toHaveLength(1);
  }, 90_000);
});
