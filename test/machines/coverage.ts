/**
 * State-node and transition coverage of a machine, counted on its definition and on what real
 * actors did (recorded from `@xstate.microstep` inspection events by the harnesses).
 *
 * A transition is one candidate of one state node for one event: `source | event | index`, so
 * the two guarded branches of an `onDone` count as two transitions. Eventless (`always`)
 * candidates are named `(always)`. Invoke `onDone`/`onError`/`onSnapshot` are ordinary
 * `xstate.done.actor.*` / `xstate.error.actor.*` / `xstate.snapshot.*` transitions.
 */
import type { AnyStateMachine } from 'xstate';

interface NodeLike {
  id: string;
  states: Record<string, NodeLike>;
  transitions: Map<string, unknown[]>;
  always?: unknown[] | undefined;
}

export interface TransitionLike {
  source: { id: string; transitions: Map<string, unknown[]>; always?: unknown[] | undefined };
  eventType: string;
}

/** A stable name for a transition definition: source node, event, index among its candidates. */
export function transitionKey(transition: TransitionLike): string {
  const { source, eventType } = transition;
  const candidates = eventType === '' ? (source.always ?? []) : (source.transitions.get(eventType) ?? []);
  return `${source.id} | ${eventType === '' ? '(always)' : eventType} | ${candidates.indexOf(transition)}`;
}

function walk(node: NodeLike, visit: (node: NodeLike) => void): void {
  visit(node);
  for (const child of Object.values(node.states)) walk(child, visit);
}

export function stateNodeIds(machine: AnyStateMachine): string[] {
  const ids: string[] = [];
  walk(machine.root as NodeLike, (node) => ids.push(node.id));
  return ids;
}

export function transitionKeys(machine: AnyStateMachine): string[] {
  const keys: string[] = [];
  walk(machine.root as NodeLike, (node) => {
    for (const [eventType, candidates] of node.transitions) {
      candidates.forEach((_, index) => keys.push(`${node.id} | ${eventType} | ${index}`));
    }
    (node.always ?? []).forEach((_, index) => keys.push(`${node.id} | (always) | ${index}`));
  });
  return keys;
}

export class Coverage {
  readonly nodes = new Set<string>();
  readonly transitions = new Set<string>();

  report(machine: AnyStateMachine) {
    const allNodes = stateNodeIds(machine);
    const allTransitions = transitionKeys(machine);
    return {
      nodes: { covered: allNodes.filter((id) => this.nodes.has(id)).length, total: allNodes.length },
      transitions: {
        covered: allTransitions.filter((key) => this.transitions.has(key)).length,
        total: allTransitions.length,
      },
      uncoveredNodes: allNodes.filter((id) => !this.nodes.has(id)),
      uncoveredTransitions: allTransitions.filter((key) => !this.transitions.has(key)),
    };
  }
}
