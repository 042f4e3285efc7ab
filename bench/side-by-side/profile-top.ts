/**
 * Where a profile's cost went, summed by function and by where the code lives (our `src/…` or
 * `dist/…` file, the npm package under `node_modules`, or node's own), the top entries of each
 * as shares of the whole, and callsync's own functions including what they call. It reads a
 * `--cpu-prof` profile (`.cpuprofile`: time) or a `--heap-prof` one (`.heapprofile`, written by
 * heap-sampler.js: bytes allocated, freed ones included).
 *
 *   node --import tsx bench/side-by-side/profile-top.ts <file.cpuprofile|file.heapprofile> [--top 25]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}
/** V8's sampling heap profile: a tree of call frames, each with the bytes allocated in it. */
interface HeapProfileNode {
  id: number;
  callFrame: CallFrame;
  selfSize: number;
  children: HeapProfileNode[];
}
interface HeapProfile {
  head: HeapProfileNode;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '25' } },
});
const file = positionals[0];
if (file === undefined) {
  console.error('usage: profile-top.ts <file.cpuprofile|file.heapprofile> [--top N]');
  process.exit(2);
}
const top = Number(values.top);
const parsed = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile | HeapProfile;

/** Every node by id, and its own cost: µs of CPU, or bytes allocated. */
const byId = new Map<number, ProfileNode>();
const selfCost = new Map<number, number>();
const heap = 'head' in parsed;
if (heap) {
  const visit = (node: HeapProfileNode) => {
    byId.set(node.id, {
      id: node.id,
      callFrame: node.callFrame,
      children: node.children.map((child) => child.id),
    });
    selfCost.set(node.id, node.selfSize);
    node.children.forEach(visit);
  };
  visit(parsed.head);
} else {
  for (const node of parsed.nodes) byId.set(node.id, node);
  parsed.samples.forEach((id, index) => {
    selfCost.set(id, (selfCost.get(id) ?? 0) + (parsed.timeDeltas[index] ?? 0));
  });
}
const total = [...selfCost.values()].reduce((sum, value) => sum + value, 0);
const amount = (cost: number) =>
  heap ? `${(cost / 1_048_576).toFixed(1).padStart(7)} MiB` : `${(cost / 1000).toFixed(0).padStart(6)} ms`;

/** `pkg` for node_modules/pkg (or @scope/pkg), `src/x/y.ts` for ours, else node's own or the VM's. */
function whereOf(url: string, functionName: string): string {
  if (url === '') return `(${functionName || 'vm'})`;
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const ours = /\/(src|dist)\/(.*)$/.exec(url);
  if (ours) return `${ours[1]}/${ours[2]}`;
  if (url.startsWith('node:')) return url;
  return url;
}

const byWhere = new Map<string, number>();
const byFunction = new Map<string, number>();
for (const [id, cost] of selfCost) {
  const node = byId.get(id);
  if (node === undefined) continue;
  const { functionName, url, lineNumber } = node.callFrame;
  const where = whereOf(url, functionName);
  byWhere.set(where, (byWhere.get(where) ?? 0) + cost);
  const name = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
  byFunction.set(name, (byFunction.get(name) ?? 0) + cost);
}

const print = (title: string, entries: Map<string, number>) => {
  console.log(`\n${title}`);
  for (const [name, cost] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((100 * cost) / total).toFixed(1).padStart(5)} %  ${amount(cost)}  ${name}`);
  }
};
// Inclusive cost of our own functions (callsync's `src/` or `dist/`): each sample counts once
// for every distinct one of them on its stack.
const parentOf = new Map<number, number>();
for (const node of byId.values()) for (const child of node.children ?? []) parentOf.set(child, node.id);
const inclusive = new Map<string, number>();
for (const [id, cost] of selfCost) {
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
    const node = byId.get(at);
    if (node === undefined) break;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = whereOf(url, functionName);
    if (!where.startsWith('src/') && !where.startsWith('dist/')) continue;
    const name = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
    if (seen.has(name)) continue;
    seen.add(name);
    inclusive.set(name, (inclusive.get(name) ?? 0) + cost);
  }
}

const what = heap ? 'bytes allocated' : 'time';
console.log(`${file}: ${amount(total).trim()} ${heap ? 'allocated' : 'sampled'}`);
print(`self ${what} by where the code lives`, byWhere);
print(`self ${what} by function`, byFunction);
print(`callsync's own functions, ${what} including what they call`, inclusive);
