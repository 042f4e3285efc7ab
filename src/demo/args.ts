/**
 * `npm run demo` flags: `--calls N` (or `DEMO_CALLS`), `--storage local|s3`, `--fleet N`,
 * `--keep-running`, `--help`. Parsed with
 * node:util's parseArgs, strictly: an unknown flag or a bad number is an error with one line
 * saying which, not a silently different demo.
 */
import { parseArgs } from 'node:util';
import {
  FLEET_LEASE_SECONDS,
  FLEET_SIZE_MAX,
  FLEET_SIZE_MIN,
  POSTGRES_URL_DEFAULT,
} from './fleet-settings.ts';
import { DEMO_CALLS_DEFAULT } from './run-demo.ts';

/** A batch big enough to be interesting, small enough for one machine and a minute or two. */
export const DEMO_CALLS_MAX = 1_000;

/** Where the demo's egress writes recordings and callsync reads them (`--storage`). */
export type DemoStorageKind = 'local' | 's3';
export const DEMO_STORAGE_KINDS: readonly DemoStorageKind[] = ['local', 's3'];

export interface DemoArgs {
  calls: number;
  keepRunning: boolean;
  help: boolean;
  /** `--storage`; absent: `local` (the shared volume), as the demo always ran. */
  storage?: DemoStorageKind;
  /** `--fleet N`: N supervisor processes on PostgreSQL behind a proxy; absent: callsync in-process. */
  fleet?: number;
}

export class DemoArgsError extends Error {
  override readonly name = 'DemoArgsError';
  readonly code = 'DEMO_ARGS_INVALID';
}

export const DEMO_USAGE = `usage: npm run demo -- [--calls N] [--storage local|s3] [--fleet N] [--keep-running]

  --calls N        how many simulated calls to push (default ${DEMO_CALLS_DEFAULT}, or DEMO_CALLS; 1–${DEMO_CALLS_MAX})
  --storage KIND   where recordings live: local (default) = a volume shared by the egress and
                   callsync; s3 = a local S3-compatible server (s3rver), the egress in LiveKit
                   Cloud mode uploading with the settings callsync sends, callsync reading back
  --fleet N        run callsync as a fleet: N supervisor processes (${FLEET_SIZE_MIN}–${FLEET_SIZE_MAX}, demo-1…) on one
                   PostgreSQL schema (made for the run, dropped after) behind a round-robin
                   proxy, lease ${FLEET_LEASE_SECONDS} s; when half the calls have started the instance driving
                   the most calls is SIGKILLed, the others take its calls over, and it is
                   restarted under the same id and port once they have (back in the round
                   robin); the summary adds the take-overs, their delay, the owners at the
                   end and the CRM's duplicates; exit 1 also if a key was accepted twice
  --keep-running   leave the LiveKit emulator, the CRM sandbox and callsync up after the
                   summary, until Ctrl-C, to curl the printed URLs or scrape /metrics
  DEMO_POSTGRES_URL  PostgreSQL for --fleet (default ${POSTGRES_URL_DEFAULT})
  LOG_LEVEL        callsync's log level (default warn). Its log goes to callsync.log in the
                   run's temp dir, kept (and named at the end) when the run fails or with
                   --keep-running; on stderr only its errors, or every line when LOG_LEVEL is
                   set. With --fleet the supervisors' log lines at that level on stderr, none
                   when unset, all of them shown on a failure
`;

function storageKind(raw: string): DemoStorageKind {
  const kind = DEMO_STORAGE_KINDS.find((candidate) => candidate === raw.trim());
  if (kind === undefined) {
    throw new DemoArgsError(`--storage must be one of ${DEMO_STORAGE_KINDS.join(', ')}, got "${raw}"`);
  }
  return kind;
}

function fleetSize(raw: string): number {
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || value < FLEET_SIZE_MIN || value > FLEET_SIZE_MAX) {
    throw new DemoArgsError(
      `--fleet must be a whole number of supervisors from ${FLEET_SIZE_MIN} to ${FLEET_SIZE_MAX}, got "${raw}"`,
    );
  }
  return value;
}

function callCount(raw: string, source: string): number {
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < 1 || value > DEMO_CALLS_MAX) {
    throw new DemoArgsError(`${source} must be a whole number from 1 to ${DEMO_CALLS_MAX}, got "${raw}"`);
  }
  return value;
}

export function parseDemoArgs(argv: readonly string[], env: NodeJS.ProcessEnv): DemoArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        calls: { type: 'string' },
        storage: { type: 'string' },
        fleet: { type: 'string' },
        'keep-running': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new DemoArgsError(error instanceof Error ? error.message : String(error));
  }
  const fromEnv = env.DEMO_CALLS?.trim() ? callCount(env.DEMO_CALLS, 'DEMO_CALLS') : undefined;
  return {
    calls: values.calls === undefined ? (fromEnv ?? DEMO_CALLS_DEFAULT) : callCount(values.calls, '--calls'),
    keepRunning: values['keep-running'],
    help: values.help,
    ...(values.storage === undefined ? {} : { storage: storageKind(values.storage) }),
    ...(values.fleet === undefined ? {} : { fleet: fleetSize(values.fleet) }),
  };
}
