/** The side-by-side bench's flags; every size is a flag so a quick run is possible. */
import { parseArgs } from 'node:util';

export const USAGE = `npm run bench:side-by-side -- [options]
  --calls <n,n,…>       burst sizes, calls ended together (default 300,1000)
  --fault-calls <n>     calls of the faulted workload; 0 skips it (default 300)
  --fault-percent <p>   share of CRM requests failing transiently there (default 30)
  --fleet-calls <n>     calls of the fleet workload: the burst on PostgreSQL with one callsync
                        process, then two behind a round-robin proxy; 0 skips it (default 1000)
  --postgres <url>      PostgreSQL for the fleet workload; each run gets a schema of its own
                        (default postgres://postgres@127.0.0.1:5432/test)
  --rounds <n>          interleaved rounds per workload; figures are medians (default 1)
  --seed <n>            call plan and fault script seed (default 1)
  --log-level <level>   callsync's LOG_LEVEL (default info, as npm start)
  --webhook-filter      LiveKit sends only the webhooks that can move a call (room_finished,
                        egress_updated, egress_ended), as its webhook.filter_params can be set;
                        by default every event, as LiveKit sends without a filter
  --max-cpu-ratio <x>   exit 1 when callsync's CPU per delivered call exceeds x × the baseline's
                        in any workload (default: never fail)
  --cpu-prof <dir>      run callsync with node --cpu-prof, its profiles written to <dir>
                        (read them with \`node --import tsx bench/side-by-side/profile-top.ts <file>\`)
  --heap-prof <dir>     sample every allocation of callsync's process, freed ones included, into
                        <dir>/heap-<pid>.heapprofile (profile-top.ts reads it too)
  --only <name>         run one contender only: callsync or baseline
  --callsync-entry <f>  run another build of callsync (its dist/main.js) instead of this one's,
                        to compare two commits against the same sandboxes and baseline
  --help`;

export interface BenchArgs {
  burstSizes: number[];
  faultCalls: number;
  faultPercent: number;
  fleetCalls: number;
  postgresUrl: string | undefined;
  rounds: number;
  seed: number;
  logLevel: string;
  webhookFilter: boolean;
  maxCpuRatio: number | null;
  cpuProfDir: string | null;
  heapProfDir: string | null;
  only: 'callsync' | 'baseline' | null;
  callsyncEntry: string | null;
}

function count(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${flag}: not a whole number: ${text}`);
  return value;
}

/** Parses `argv`; null when `--help` was asked for. Throws with the flag's name on a bad value. */
export function parseBenchArgs(argv: readonly string[]): BenchArgs | null {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      calls: { type: 'string', default: '300,1000' },
      'fault-calls': { type: 'string', default: '300' },
      'fault-percent': { type: 'string', default: '30' },
      'fleet-calls': { type: 'string', default: '1000' },
      postgres: { type: 'string' },
      rounds: { type: 'string', default: '1' },
      seed: { type: 'string', default: '1' },
      'log-level': { type: 'string', default: 'info' },
      'webhook-filter': { type: 'boolean', default: false },
      'max-cpu-ratio': { type: 'string' },
      'cpu-prof': { type: 'string' },
      'heap-prof': { type: 'string' },
      only: { type: 'string' },
      'callsync-entry': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return null;
  const faultPercent = Number(values['fault-percent']);
  if (!(faultPercent >= 0 && faultPercent <= 100)) {
    throw new Error(`--fault-percent: not between 0 and 100: ${values['fault-percent']}`);
  }
  const maxCpuRatio = values['max-cpu-ratio'] === undefined ? null : Number(values['max-cpu-ratio']);
  if (maxCpuRatio !== null && !(maxCpuRatio > 0)) {
    throw new Error(`--max-cpu-ratio: not a positive number: ${values['max-cpu-ratio']}`);
  }
  const only = values.only ?? null;
  if (only !== null && only !== 'callsync' && only !== 'baseline') {
    throw new Error(`--only: callsync or baseline, not ${only}`);
  }
  return {
    burstSizes: values.calls
      .split(',')
      .filter((part) => part.trim() !== '')
      .map((part) => count('--calls', part.trim())),
    faultCalls: count('--fault-calls', values['fault-calls']),
    faultPercent,
    fleetCalls: count('--fleet-calls', values['fleet-calls']),
    postgresUrl: values.postgres,
    rounds: Math.max(1, count('--rounds', values.rounds)),
    seed: count('--seed', values.seed),
    logLevel: values['log-level'],
    webhookFilter: values['webhook-filter'],
    maxCpuRatio,
    cpuProfDir: values['cpu-prof'] ?? null,
    heapProfDir: values['heap-prof'] ?? null,
    only,
    callsyncEntry: values['callsync-entry'] ?? null,
  };
}
