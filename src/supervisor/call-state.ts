/**
 * Reading a call actor's snapshot the way operators and the store see it: one card state
 * (`callStateOf`, `CALL_STATE_NAMES`: derived from the call machine's state tags in
 * `machines/call.states.ts`), and whether the call is still live, finished or waiting for an
 * operator.
 *
 * A snapshot read back from the store is untyped JSON: `contextOf` gives its machine context.
 */
import type { CallStateName } from '../machines/call.events.ts';
import type { CallContext } from '../machines/call.types.ts';
import type { CallStatus } from '../store/call-store.ts';

export { CALL_STATE_NAMES, callStateOf } from '../machines/call.states.ts';

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
