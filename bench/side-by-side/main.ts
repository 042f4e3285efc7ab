/**
 * `npm run bench:side-by-side`: callsync (its compiled supervisor, `node dist/main.js`, as
 * `npm start` runs it) against the straight-line baseline of the design note's flow
 * (bench/baseline/), each as its own process, against the same LiveKit emulator and CRM sandbox
 * setup in this process, driven by the same call plan; prints one table with both and their
 * ratios, then a second with the same burst on PostgreSQL, one callsync process against two
 * (the script builds `dist/` first). See args.ts for the flags (for example `--calls 100
 * --fault-calls 0 --fleet-calls 0` for a quick run).
 */
import { CALL_WEBHOOK_EVENTS } from '../../src/services/livekit-webhook.ts';
import { parseBenchArgs, USAGE } from './args.ts';
import { startBaselineContender } from './baseline-contender.ts';
import { startCallsyncContender } from './callsync-contender.ts';
import { planBenchCalls } from './plan.ts';
import { runOnce, type WorkloadSpec } from './run-once.ts';
import type { BenchSandboxes } from './sandboxes.ts';
import { cpuRatio, formatTable, type WorkloadResult } from './table.ts';

// The sandboxes run in this process: a peer resetting a connection under one of their sockets
// (a contender under load) must not end the whole bench. Said on stderr; anything else ends it.
const SOCKET_RESET_CODES = new Set(['ECONNRESET', 'EPIPE']);
process.on('uncaughtException', (error: NodeJS.ErrnoException) => {
  if (error.code !== undefined && SOCKET_RESET_CODES.has(error.code)) {
    process.stderr.write(`bench: a sandbox connection failed (${error.code}); carrying on\n`);
    return;
  }
  process.stderr.write(`${error.stack ?? String(error)}\n`);
  process.exit(1);
});

// The loop emptying before the table is printed means a wait lost its last handle: say so.
process.on('beforeExit', () => {
  if (process.exitCode === undefined && !printed) {
    process.stderr.write('bench: the event loop emptied before the table was printed\n');
    process.exitCode = 1;
  }
});
let printed = false;

const args = parseBenchArgs(process.argv.slice(2));
if (args === null) {
  console.log(USAGE);
  process.exit(0);
}

const webhookIncludeEvents = args.webhookFilter ? CALL_WEBHOOK_EVENTS : undefined;
const filtered = args.webhookFilter ? ', webhooks filtered' : '';
const workloads: { title: string; spec: WorkloadSpec }[] = [
  ...args.burstSizes.map((calls) => ({
    title: `${calls} calls ended together${filtered}`,
    spec: {
      calls: planBenchCalls(calls, args.seed),
      crmFaultPercent: 0,
      seed: args.seed,
      webhookIncludeEvents,
    },
  })),
  ...(args.faultCalls > 0
    ? [
        {
          title: `${args.faultCalls} calls, ${args.faultPercent} % of CRM requests fail transiently${filtered}`,
          spec: {
            calls: planBenchCalls(args.faultCalls, args.seed),
            crmFaultPercent: args.faultPercent,
            seed: args.seed,
            webhookIncludeEvents,
          },
        },
      ]
    : []),
];

const results: WorkloadResult[] = [];
for (const { title, spec } of workloads) {
  const result: WorkloadResult = { title, first: [], second: [] };
  // Interleaved, so a machine that gets busier or quieter during the run weighs on both alike.
  for (let round = 1; round <= args.rounds; round++) {
    if (args.only !== 'baseline') {
      process.stderr.write(`${title}, round ${round}/${args.rounds}: callsync …\n`);
      result.first.push(await runOnce(spec, (sandboxes) => startCallsyncContender(sandboxes, args)));
    }
    if (args.only !== 'callsync') {
      process.stderr.write(`${title}, round ${round}/${args.rounds}: baseline …\n`);
      result.second.push(await runOnce(spec, startBaselineContender));
    }
  }
  results.push(result);
  // The table so far after each workload, so a run cut short still shows what it measured.
  if (results.length < workloads.length) process.stderr.write(`${formatTable(results)}\n`);
}

console.log(formatTable(results));

// Both cores at work: the same burst on PostgreSQL, one callsync process, then two behind the
// round-robin proxy (callsync-contender.ts), interleaved.
if (args.fleetCalls > 0 && args.only !== 'baseline') {
  const title = `${args.fleetCalls} calls ended together, PostgreSQL`;
  const spec: WorkloadSpec = {
    calls: planBenchCalls(args.fleetCalls, args.seed),
    crmFaultPercent: 0,
    seed: args.seed,
  };
  const fleet: WorkloadResult = { title, first: [], second: [] };
  const onPostgres = (processes: number) => (sandboxes: BenchSandboxes) =>
    startCallsyncContender(sandboxes, {
      ...args,
      store: { kind: 'postgres', processes, url: args.postgresUrl },
    });
  for (let round = 1; round <= args.rounds; round++) {
    process.stderr.write(`${title}, round ${round}/${args.rounds}: one callsync process …\n`);
    fleet.second.push(await runOnce(spec, onPostgres(1)));
    process.stderr.write(`${title}, round ${round}/${args.rounds}: two callsync processes …\n`);
    fleet.first.push(await runOnce(spec, onPostgres(2)));
  }
  console.log('');
  console.log(
    formatTable([fleet], { first: 'two processes', second: 'one process', ratio: 'ratio two / one' }),
  );
}
printed = true;

if (args.maxCpuRatio !== null) {
  const over = results.filter((result) => (cpuRatio(result) ?? Infinity) > (args.maxCpuRatio ?? Infinity));
  for (const result of over) {
    console.error(`${result.title}: CPU per delivered call ratio above ${args.maxCpuRatio}`);
  }
  if (over.length > 0) process.exitCode = 1;
}
