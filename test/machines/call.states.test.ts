/**
 * The call machine's card tags (`call.machine.ts`): every leaf state node belongs to exactly one
 * card state, carried by itself or one of its ancestors, and only the design card's seven names
 * are card tags.
 */
import { describe, expect, it } from 'vitest';
import { callMachine } from '../../src/machines/call.machine.ts';
import { cardTagsOf } from '../../src/machines/call.states.ts';
import { CARD_STATES } from './card-states.ts';

interface NodeLike {
  id: string;
  tags: readonly string[];
  states: Record<string, NodeLike>;
}

/** Every node with its ancestors' card tags and its own, root first. */
function nodesWithCardTags(): Array<{ node: NodeLike; cardTags: string[] }> {
  const found: Array<{ node: NodeLike; cardTags: string[] }> = [];
  const walk = (node: NodeLike, inherited: string[]) => {
    const cardTags = [...inherited, ...cardTagsOf(node)];
    found.push({ node, cardTags });
    Object.values(node.states).forEach((child) => walk(child, cardTags));
  };
  walk(callMachine.root, []);
  return found;
}

describe('card tags', () => {
  const nodes = nodesWithCardTags();
  const leaves = nodes.filter(({ node }) => Object.keys(node.states).length === 0);

  it('finds the leaves', () => {
    expect(leaves.length).toBeGreaterThanOrEqual(CARD_STATES.length);
  });

  for (const { node, cardTags } of leaves) {
    it(`${node.id} has exactly one card tag`, () => {
      expect(cardTags).toHaveLength(1);
      expect(CARD_STATES).toContain(cardTags[0]!);
    });
  }

  it('tags nothing else as a card state', () => {
    const tags = new Set(nodes.flatMap(({ node }) => cardTagsOf(node)));
    expect([...tags].sort()).toEqual([...CARD_STATES].sort());
  });
});
