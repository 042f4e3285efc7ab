/**
 * `npm run demo` flags: `--calls N` (or `DEMO_CALLS`), `--keep-running`, `--help`. Parsed with
 * node:util's parseArgs, strictly: an unknown flag or a bad number is an error with one line
 * saying which, not a silently different demo.
 */
import { parseArgs } from 'node:util';
import { DEMO_CALLS_DEFAULT } from './run-demo.ts';

/** A batch big enough to be interesting, small enough for one machine and a minute or two. */
export const DEMO_CALLS_MAX = 1_000;

export interface DemoArgs {
  calls: number;
  keepRunning: boolean;
  help: boolean;
}

export class DemoArgsError extends Error {
  override readonly name = 'DemoArgsError';
  readonly code = 'DEMO_ARGS_INVALID';
}

export const DEMO_USAGE = `usage: npm run demo -- [--calls N] [--keep-running]

  --calls N        how many simulated calls to push (default ${DEMO_CALLS_DEFAULT}, or DEMO_CALLS; 1–${DEMO_CALLS_MAX})
  --keep-running   leave the LiveKit emulator, the CRM sandbox and callsync up after the
                   summary, until Ctrl-C, to curl the printed URLs or scrape /metrics
  LOG_LEVEL        callsync's log level on stderr (default warn)
`;

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
  };
}
