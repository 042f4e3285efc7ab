/**
 * The call data leaves only once the store holds the call as no longer collecting.
 *
 * Policy: the CRM keeps the first call-data document it acknowledges under an `Idempotency-Key`;
 * a later one under the same key changes nothing there. A restored call rebuilds its document
 * from the stored snapshot and event log (`machines/call.snapshot.ts`), so the document sent must
 * be the one a restore would build. It is, once the snapshot in which the call stopped collecting
 * (from then on items and leads are refused, `409 CALL_DATA_SENT`) is stored: so that snapshot is
 * committed before the document is sent. Without this, a crash, a store outage or a take-over
 * between the send and that commit lets the restored call collect again, answer `202` to an item,
 * and send a document that the CRM ignores: the item is lost.
 *
 * Cost: one group commit (a tick on SQLite, a round trip on PostgreSQL) before each call-data
 * request. While the store is away the request waits for it inside the attempt, whose timeout
 * keeps running: an outage longer than the fast lane's attempts (about 80 s) moves the step to the
 * slow lane, so the call data goes out at the next slow-lane attempt after the store is back.
 * Nothing is lost; a wait outside the attempt (a call-machine state) would deliver at once.
 */
import { once } from 'node:events';
import type { CrmEffects } from '../machines/call.actors.ts';

/** Resolves once the store holds every snapshot of the call queued so far. */
export type SnapshotStored = (callId: string) => Promise<void>;

export function gateCallDataOnStoredSnapshot(effects: CrmEffects, stored: SnapshotStored): CrmEffects {
  return {
    uploadRecording: (request, signal, timeoutMs) => effects.uploadRecording(request, signal, timeoutMs),
    async postCallData(request, signal, timeoutMs) {
      // XState starts a state's children before its observers see the state, so the snapshot of
      // the state that sends this is queued right after this starts, in the same turn.
      await Promise.resolve();
      await untilAborted(stored(request.callId), signal);
      return effects.postCallData(request, signal, timeoutMs);
    },
  };
}

/** Waits for `promise`; throws the signal's reason if it aborts first (a stopped call sends nothing). */
async function untilAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  const done = new AbortController();
  try {
    await Promise.race([promise, once(signal, 'abort', { signal: done.signal })]);
  } finally {
    done.abort();
  }
  signal.throwIfAborted();
}
