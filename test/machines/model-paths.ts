/**
 * What the model tests of both machines share: a model path as the events that follow the
 * initial state, the model's edges, a tour over them, and the model's expected snapshots along
 * a path.
 *
 * The expected snapshots come from replaying a path's events through the pure machine
 * (`getNextSnapshot`). Paths share long prefixes (a shortest path is another one plus a step,
 * the simple paths fan out late, a path with a crash before every step replays the same events
 * as the path without), so a replay remembers each distinct prefix once and a path replays only
 * what no earlier path did. Replays run inside the tests when first asked for, not while the
 * tests are collected.
 */
import { isDeepStrictEqual } from 'node:util';
import { expect } from 'vitest';
import {
  getInitialSnapshot,
  getNextSnapshot,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  type EventObject,
} from 'xstate';
import type { StatePath } from 'xstate/graph';

/** A model step's event: a machine event or one of XState's internal events. */
export type ModelEvent = EventObject & Record<string, unknown>;

/** What happens after the initial state, in order. */
export type ModelEvents = readonly ModelEvent[];

/** The model graph as `xstate/graph`'s `getAdjacencyMap` gives it, keyed by model state. */
export type Adjacency<TSnapshot> = Record<
  string,
  { state: TSnapshot; transitions: Record<string, { event: ModelEvent; state: TSnapshot }> }
>;

export function eventsOf(path: StatePath<AnyMachineSnapshot, ModelEvent>): ModelEvent[] {
  return path.steps.slice(1).map((step) => step.event);
}

export function edgeId(from: string, event: ModelEvent): string {
  return `${from} -- ${JSON.stringify(event)}`;
}

/** Every model edge (model state × enabled event) of the adjacency. */
export function modelEdges<TSnapshot>(
  adjacency: Adjacency<TSnapshot>,
): Map<string, { from: string; event: ModelEvent }> {
  const edges = new Map<string, { from: string; event: ModelEvent }>();
  for (const [from, { transitions }] of Object.entries(adjacency)) {
    for (const { event } of Object.values(transitions)) edges.set(edgeId(from, event), { from, event });
  }
  return edges;
}

/**
 * Paths that together take every model edge: to each edge not taken yet, its source's shortest
 * path, the edge, then further untaken edges from wherever that leads (a greedy tour), so one
 * path takes many edges.
 */
export function edgeTour<TSnapshot extends AnyMachineSnapshot>(
  adjacency: Adjacency<TSnapshot>,
  shortestPaths: ReadonlyArray<StatePath<TSnapshot, ModelEvent>>,
  key: (snapshot: TSnapshot) => string,
): ModelEvent[][] {
  const shortestTo = new Map(shortestPaths.map((path) => [key(path.state), eventsOf(path)]));
  const taken = new Set<string>();
  const tour: ModelEvent[][] = [];
  for (const [id, edge] of modelEdges(adjacency)) {
    if (taken.has(id)) continue;
    const prefix = shortestTo.get(edge.from);
    if (prefix === undefined) throw new Error(`no path to ${edge.from}`);
    const events = [...prefix];
    let from = edge.from;
    let next: { id: string; event: ModelEvent } | undefined = { id, event: edge.event };
    while (next !== undefined) {
      taken.add(next.id);
      events.push(next.event);
      from = key(adjacency[from]!.transitions[JSON.stringify(next.event)]!.state);
      next = undefined;
      for (const { event } of Object.values(adjacency[from]?.transitions ?? {})) {
        const candidate = edgeId(from, event);
        if (!taken.has(candidate)) {
          next = { id: candidate, event };
          break;
        }
      }
    }
    tour.push(events);
  }
  return tour;
}

/**
 * `expect(actual, message).toEqual(expected)`, asked only when the two are not deep-strict-equal
 * (which implies equal): a model test compares projections some hundred thousand times, nearly
 * always equal, and `isDeepStrictEqual` answers those in a fraction of `expect`'s time.
 */
export function expectEqual(actual: unknown, expected: unknown, message?: string): void {
  if (!isDeepStrictEqual(actual, expected)) expect(actual, message).toEqual(expected);
}

/** The model's state along a path: its projection (what the actor must match) and its key. */
export interface ModelState<TProjection> {
  readonly projection: TProjection;
  readonly key: string;
}

interface ReplayNode<TProjection> extends ModelState<TProjection> {
  readonly snapshot: AnyMachineSnapshot;
  readonly next: Map<string, ReplayNode<TProjection>>;
}

/** The pure machine's states along paths from one initial state, each distinct prefix once. */
export class ModelReplay<TProjection> {
  private root: ReplayNode<TProjection> | undefined;

  constructor(
    private readonly machine: AnyStateMachine,
    private readonly input: unknown,
    private readonly project: (snapshot: AnyMachineSnapshot) => TProjection,
    private readonly key: (snapshot: AnyMachineSnapshot) => string,
  ) {}

  private node(snapshot: AnyMachineSnapshot): ReplayNode<TProjection> {
    return { snapshot, projection: this.project(snapshot), key: this.key(snapshot), next: new Map() };
  }

  /** The initial state and the state after each event of `events`. */
  along(events: ModelEvents): Array<ModelState<TProjection>> {
    this.root ??= this.node(getInitialSnapshot(this.machine, this.input));
    let node = this.root;
    const states: Array<ModelState<TProjection>> = [node];
    for (const event of events) {
      const id = JSON.stringify(event);
      let next = node.next.get(id);
      if (next === undefined) {
        next = this.node(getNextSnapshot(this.machine, node.snapshot, event));
        node.next.set(id, next);
      }
      node = next;
      states.push(node);
    }
    return states;
  }

  /** The model states a path visits and the model edges it takes. */
  visits(events: ModelEvents): { states: string[]; edges: string[] } {
    const states = this.along(events).map((state) => state.key);
    return { states, edges: events.map((event, index) => edgeId(states[index]!, event)) };
  }
}
