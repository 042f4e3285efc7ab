/**
 * Reading a call actor's snapshot the way operators and the store see it: one state name from
 * the design card (`recording`, `inConversation`, `awaitingEgress`, `uploadingRecording`,
 * `postingData`, `done`, `failed`), and whether the call is still live, finished or waiting for
 * an operator.
 *
 * The machine nests its states (`active` wraps the whole call up to `done`/`failed`, `live` the
 * part before the egress settles; neither is a card state of its own) and has short internal
 * steps (`callEnded`, `egressSettled`, `preparingData`); those are folded into the card state
 * they belong to, so the store's `state` column, `GET /v1/calls?state=` and the
 * `callsync_calls_active{state}` gauge all speak the same small vocabulary.
 *
 * A snapshot read back from the store is untyped JSON: `contextOf` gives its machine context.
 */
import type { StateValue } from 'xstate';
import type { CallStateName } from '../machines/call.events.ts';
import type { CallContext } from '../machines/call.types.ts';
import type { CallStatus } from '../store/call-store.ts';

const FOLDED: Readonly<Record<string, CallStateName>> = {
  recording: 'recording',
  inConversation: 'inConversation',
  callEnded: 'awaitingEgress',
  awaitingEgress: 'awaitingEgress',
  egressSettled: 'awaitingEgress',
  uploadingRecording: 'uploadingRecording',
  preparingData: 'postingData',
  postingData: 'postingData',
  failed: 'failed',
  done: 'done',
};

export const CALL_STATE_NAMES: readonly CallStateName[] = [
  'recording',
  'inConversation',
  'awaitingEgress',
  'uploadingRecording',
  'postingData',
  'done',
  'failed',
];

/**
 * The card state of a machine state value: the outermost state on the path that has a card
 * state (`{ active: { live: 'recording' } }` → `recording`,
 * `{ active: { live: { awaitingEgress: 'polling' } } }` → `awaitingEgress`,
 * `{ active: 'preparingData' }` → `postingData`, `'failed'` → `failed`). The wrappers `active` and
 * `live` are descended through.
 */
export function callStateOf(value: StateValue): CallStateName {
  let current: StateValue = value;
  for (;;) {
    if (typeof current === 'string') return FOLDED[current] ?? 'recording';
    const [key, child] = Object.entries(current)[0] ?? [];
    if (key === undefined) return 'recording';
    const folded = FOLDED[key];
    if (folded !== undefined || child === undefined) return folded ?? 'recording';
    current = child;
  }
}

export function callStatusOf(state: CallStateName): CallStatus {
  if (state === 'done') return 'done';
  if (state === 'failed') return 'failed';
  return 'active';
}

/** The machine context of a snapshot (live or stored); `undefined` when it holds none. */
export function contextOf(snapshot: unknown): CallContext | undefined {
  const context = (snapshot as { context?: unknown } | null)?.context;
  return typeof context === 'object' && context !== null ? (context as CallContext) : undefined;
}
