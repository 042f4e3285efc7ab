/**
 * A call actor's snapshot as the store keeps it, and a stored one made ready to restore.
 *
 * Policy: the stored snapshot stays small however long the call. Two things are left out:
 * - the transcript items: the event log holds every accepted batch, and the supervisor hands
 *   them back on restore (`restorableCallSnapshot`'s `transcript`);
 * - the call-data document the `callDataPost` step is sending (in the upload machine's request,
 *   and again in its `deliver` attempt's input), which holds the whole transcript twice more.
 *   It is built from the context once the call stops collecting (`preparingData`), and nothing
 *   it is built from changes after that (items and leads are refused, `CALL_DATA_SENT`), so a
 *   restore rebuilds the same document, sent under the same idempotency key.
 *
 * Versions: a snapshot stored without a document carries `STORED_WITHOUT_DOCUMENT_VERSION`
 * instead of the machine's version. A release from before this file knows only the machine's,
 * so it leaves such a call alone (logged as stored by another version, or not claimed in a
 * fleet) instead of posting it without its document; every other snapshot is stored as before.
 * This release restores both (`RESTORABLE_VERSIONS`), and one stored with its document (by an
 * earlier release) with that document, as stored.
 */
import type { Snapshot } from 'xstate';
import { CALL_MACHINE_VERSION, callDataOf } from './call.machine.ts';
import type { TranscriptItem } from '../payload/call-data.ts';
import { NO_DELIVERY_ATTEMPTS, type CallContext } from './call.types.ts';

/** A persisted call snapshot as JSON sees it: the call's context, and its children's snapshots. */
export type PersistedCallSnapshot = Snapshot<unknown> & {
  context: CallContext;
  children?: Record<string, PersistedChild | undefined>;
};

interface PersistedChild {
  src?: unknown;
  snapshot?: {
    context?: { request?: unknown };
    input?: { request?: unknown };
    children?: Record<string, PersistedChild | undefined>;
  };
}

/** The child that posts the call data (`deliveryInvoke('callDataPost', …)` in `call.machine.ts`). */
const CALL_DATA_CHILD = 'callDataPost';

/** The version of a stored snapshot that holds everything but the transcript items. */
const MACHINE_VERSION = String(CALL_MACHINE_VERSION);
/** The version of a stored snapshot whose call-data document was left out (see the policy). */
export const STORED_WITHOUT_DOCUMENT_VERSION = `${CALL_MACHINE_VERSION}.1`;
/** The stored versions this release restores. */
export const RESTORABLE_VERSIONS: readonly string[] = [MACHINE_VERSION, STORED_WITHOUT_DOCUMENT_VERSION];

export interface StoredCallSnapshot {
  snapshot: PersistedCallSnapshot;
  /** The row's `machineVersion`. */
  version: string;
}

/** What the store keeps of `persisted` (from `actor.getPersistedSnapshot()`): see the policy. */
export function storedCallSnapshot(persisted: PersistedCallSnapshot): StoredCallSnapshot {
  const stored = { ...persisted, context: { ...persisted.context, transcript: [] } };
  const post = persisted.children?.[CALL_DATA_CHILD];
  // The step's own request holds the document for as long as the step runs.
  if (post === undefined || !hasDocument(post.snapshot?.context?.request)) {
    return { snapshot: stored, version: MACHINE_VERSION };
  }
  const children = { ...persisted.children, [CALL_DATA_CHILD]: withRequests(post, withoutDocument) };
  return { snapshot: { ...stored, children }, version: STORED_WITHOUT_DOCUMENT_VERSION };
}

/**
 * A stored snapshot made ready to restore at `at`, with the call's `transcript` from its event
 * log: the context marked restored (`restoredContext`), the call-data document rebuilt.
 */
export function restorableCallSnapshot(
  stored: PersistedCallSnapshot,
  transcript: TranscriptItem[],
  at: number,
): PersistedCallSnapshot {
  const context = restoredContext({ ...stored.context, transcript }, at);
  const restorable = { ...stored, context };
  const post = stored.children?.[CALL_DATA_CHILD];
  if (post === undefined) return restorable;
  const built = callDataOf(context);
  // Unbuildable contexts never reach `postingData`; such a request is left as stored.
  if (!built.ok) return restorable;
  const withDocument = (request: unknown) =>
    isCallDataRequest(request) && !hasDocument(request) ? { ...request, document: built.document } : request;
  return {
    ...restorable,
    children: { ...stored.children, [CALL_DATA_CHILD]: withRequests(post, withDocument) },
  };
}

/**
 * A stored context made ready to restore at `at`: marked restored (its effects in flight are
 * re-run, and may repeat what already happened), with the fields that snapshots stored by an
 * earlier release of this machine version lack filled in (`attempts` came later).
 */
export function restoredContext(stored: CallContext, at: number): CallContext {
  return { ...stored, attempts: { ...NO_DELIVERY_ATTEMPTS, ...stored.attempts }, restoredAt: at };
}

function isCallDataRequest(request: unknown): request is Record<string, unknown> {
  return (
    typeof request === 'object' && request !== null && (request as { step?: unknown }).step === 'call-data'
  );
}

function hasDocument(request: unknown): request is Record<string, unknown> & { document: unknown } {
  return isCallDataRequest(request) && 'document' in request;
}

function withoutDocument(request: unknown): unknown {
  if (!hasDocument(request)) return request;
  const { document: _document, ...rest } = request;
  return rest;
}

/**
 * The upload machine's persisted snapshot with `change` applied to its request and to the
 * request in each of its children's input (the `deliver` attempt in flight).
 */
function withRequests(child: PersistedChild, change: (request: unknown) => unknown): PersistedChild {
  const snapshot = child.snapshot;
  if (snapshot === undefined) return child;
  const children: Record<string, PersistedChild | undefined> = {};
  for (const [id, grandchild] of Object.entries(snapshot.children ?? {})) {
    const input = grandchild?.snapshot?.input;
    children[id] =
      grandchild?.snapshot === undefined || input === undefined
        ? grandchild
        : {
            ...grandchild,
            snapshot: { ...grandchild.snapshot, input: { ...input, request: change(input.request) } },
          };
  }
  return {
    ...child,
    snapshot: {
      ...snapshot,
      ...(snapshot.context === undefined
        ? {}
        : { context: { ...snapshot.context, request: change(snapshot.context.request) } }),
      ...(snapshot.children === undefined ? {} : { children }),
    },
  };
}
