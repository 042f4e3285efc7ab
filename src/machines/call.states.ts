/**
 * The design card's states (`recording`, `inConversation`, `awaitingEgress`,
 * `uploadingRecording`, `postingData`, `done`, `failed`), read from the call machine's state tags:
 * each node carries the card state it belongs to (see `call.machine.ts`), so the store's `state`
 * column, `GET /v1/calls?state=`, the metrics' `state` label and the SLO rules speak the
 * vocabulary the machine declares, and a state added to the machine brings its card state along.
 *
 * A live snapshot has them in `snapshot.tags`; a state value read back from the store is resolved
 * against the machine's state nodes here (`callStateOf`), which needs no context.
 */
import type { StateValue } from 'xstate';
import type { CallStateName } from './call.events.ts';
import { ROLE_TAGS, callMachine } from './call.machine.ts';

interface StateNodeLike {
  tags: readonly string[];
  states: Readonly<Record<string, StateNodeLike>>;
}

const ROLE_TAG_SET: ReadonlySet<string> = new Set(ROLE_TAGS);

/** The card tags a node itself carries (not its ancestors'). */
export function cardTagsOf(node: StateNodeLike): CallStateName[] {
  return node.tags.filter((tag): tag is CallStateName => !ROLE_TAG_SET.has(tag));
}

function walk(node: StateNodeLike, visit: (node: StateNodeLike) => void): void {
  visit(node);
  for (const child of Object.values(node.states)) walk(child, visit);
}

/** The card states, in the order the machine declares them (the card's order). */
export const CALL_STATE_NAMES: readonly CallStateName[] = (() => {
  const names = new Set<CallStateName>();
  walk(callMachine.root, (node) => cardTagsOf(node).forEach((tag) => names.add(tag)));
  return [...names];
})();

/** Where a value that names no state node lands: the state a new call starts in. */
const FALLBACK: CallStateName = 'recording';

/**
 * The card state of a state value: the card tag of the outermost node on its path that has one
 * (`{ active: { live: { awaitingEgress: 'polling' } } }` → `awaitingEgress`,
 * `{ active: 'preparingData' }` → `postingData`, `'failed'` → `failed`). A value the machine does
 * not have (an older snapshot, a missing value) is `recording`.
 */
export function callStateOf(value: StateValue): CallStateName {
  let node: StateNodeLike = callMachine.root;
  let current: StateValue | undefined = value;
  while (current !== undefined) {
    const [key, child]: [string | undefined, StateValue | undefined] =
      typeof current === 'string'
        ? [current, undefined]
        : (Object.entries(current)[0] ?? [undefined, undefined]);
    const next = key === undefined ? undefined : node.states[key];
    if (next === undefined) return FALLBACK;
    const [card] = cardTagsOf(next);
    if (card !== undefined) return card;
    node = next;
    current = child;
  }
  return FALLBACK;
}
