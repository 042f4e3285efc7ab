/**
 * `callStateOf` over every state node of the call machine: each node's state value (as the
 * machine resolves it, initial descendants included) must land in the card state listed here,
 * written from the design card, not read from the machine's tags. The table must name every node
 * the machine has, so a state added to the machine fails this test until its card state is
 * decided here and tagged there.
 */
import { describe, expect, it } from 'vitest';
import { getInitialSnapshot, type StateValue } from 'xstate';
import { callMachine } from '../../src/machines/call.machine.ts';
import type { CallStateName } from '../../src/machines/call.events.ts';
import { CALL_STATE_NAMES, callStateOf, callStatusOf } from '../../src/supervisor/call-state.ts';
import { CARD_STATES } from '../machines/card-states.ts';
import { makeCallInput } from '../machines/harness.ts';

const EXPECTED: Record<string, CallStateName> = {
  call: 'recording',
  'call.active': 'recording',
  'call.active.live': 'recording',
  'call.active.live.recording': 'recording',
  'call.active.live.recording.starting': 'recording',
  'call.active.live.recording.backoff': 'recording',
  'call.active.live.inConversation': 'inConversation',
  'call.active.live.callEnded': 'awaitingEgress',
  'call.active.live.awaitingEgress': 'awaitingEgress',
  'call.active.live.awaitingEgress.stopping': 'awaitingEgress',
  'call.active.live.awaitingEgress.polling': 'awaitingEgress',
  'call.active.live.awaitingEgress.waiting': 'awaitingEgress',
  'call.active.egressSettled': 'awaitingEgress',
  'call.active.uploadingRecording': 'uploadingRecording',
  'call.active.preparingData': 'postingData',
  'call.active.postingData': 'postingData',
  'call.done': 'done',
  'call.failed': 'failed',
};

interface NodeLike {
  id: string;
  path: string[];
  states: Record<string, NodeLike>;
}

function allNodes(): NodeLike[] {
  const nodes: NodeLike[] = [];
  const walk = (node: NodeLike) => {
    nodes.push(node);
    Object.values(node.states).forEach(walk);
  };
  walk(callMachine.root);
  return nodes;
}

/** `['active', 'live', 'recording']` → `{ active: { live: 'recording' } }`. */
function valueOfPath(path: readonly string[]): StateValue {
  if (path.length === 0) return {};
  const [head, ...rest] = path as [string, ...string[]];
  return rest.length === 0 ? head : { [head]: valueOfPath(rest) };
}

/** The full state value the machine resolves for a node (its initial descendants filled in). */
function resolvedValueOf(node: NodeLike): StateValue {
  const initial = getInitialSnapshot(callMachine, makeCallInput());
  if (node.path.length === 0) return initial.value;
  return callMachine.resolveState({ value: valueOfPath(node.path), context: initial.context }).value;
}

describe('callStateOf', () => {
  it('has a card state for every state node of the machine, and no stale entry', () => {
    expect(
      allNodes()
        .map((node) => node.id)
        .sort(),
    ).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const node of allNodes()) {
    it(`folds ${node.id} into ${EXPECTED[node.id] ?? '(missing)'}`, () => {
      const value = resolvedValueOf(node);
      expect(callStateOf(value), JSON.stringify(value)).toBe(EXPECTED[node.id]);
    });
  }

  it('names the card states in the card’s order', () => {
    expect(CALL_STATE_NAMES).toEqual(CARD_STATES);
  });

  it('agrees with the tags of a resolved snapshot', () => {
    for (const node of allNodes()) {
      const snapshot = callMachine.resolveState({
        value: resolvedValueOf(node),
        context: getInitialSnapshot(callMachine, makeCallInput()).context,
      });
      expect(snapshot.hasTag(EXPECTED[node.id]!), node.id).toBe(true);
    }
  });

  it('reads a value the machine does not have (an older snapshot) as recording', () => {
    expect(callStateOf({ delivering: 'uploadingRecording' })).toBe('recording');
    expect(callStateOf({ active: { live: {} } })).toBe('recording');
    expect(callStateOf({})).toBe('recording');
  });

  it('reaches every card state, and only card states', () => {
    const reached = new Set(allNodes().map((node) => callStateOf(resolvedValueOf(node))));
    expect([...reached].sort()).toEqual([...CALL_STATE_NAMES].sort());
  });

  it('folds the exact values the machine produces', () => {
    expect(callStateOf({ active: { live: { recording: 'starting' } } })).toBe('recording');
    expect(callStateOf({ active: { live: { recording: 'backoff' } } })).toBe('recording');
    expect(callStateOf({ active: { live: 'inConversation' } })).toBe('inConversation');
    expect(callStateOf({ active: { live: { awaitingEgress: 'polling' } } })).toBe('awaitingEgress');
    expect(callStateOf({ active: 'uploadingRecording' })).toBe('uploadingRecording');
    expect(callStateOf({ active: 'postingData' })).toBe('postingData');
    expect(callStateOf('failed')).toBe('failed');
    expect(callStateOf('done')).toBe('done');
  });

  it('tells live, finished and failed calls apart', () => {
    expect(CALL_STATE_NAMES.map((state) => [state, callStatusOf(state)])).toEqual([
      ['recording', 'active'],
      ['inConversation', 'active'],
      ['awaitingEgress', 'active'],
      ['uploadingRecording', 'active'],
      ['postingData', 'active'],
      ['done', 'done'],
      ['failed', 'failed'],
    ]);
  });
});
