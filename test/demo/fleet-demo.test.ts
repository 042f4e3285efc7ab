/**
 * `npm run demo -- --fleet 3` as a person runs it (`node --import tsx src/demo/main.ts`, its own
 * process): a small batch through three supervisor processes on PostgreSQL, one of them
 * SIGKILLed when half the calls have started. Checked from what it prints and how it exits:
 * exit 0, every call in the CRM, the killed instance's calls all taken over within the lease
 * plus a few seconds, no Idempotency-Key accepted twice, and its schema dropped afterwards. And
 * without PostgreSQL, one line saying so and how to point DEMO_POSTGRES_URL elsewhere.
 *
 * Synchronisation: the demo process's exit.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { FLEET_LEASE_SECONDS } from '../../src/demo/fleet-settings.ts';
import { freePort } from '../helpers/free-port.ts';
import { POSTGRES_URL } from '../helpers/postgres-schemas.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CALLS = 12;
/** The run takes about 15 s here; the budget covers two busy cores starting four tsx processes. */
const RUN_TIMEOUT_MS = 90_000;
/** The README: the lease plus about a second; two busy cores get a few more. */
const TAKEOVER_BOUND_SECONDS = FLEET_LEASE_SECONDS + 5;

interface DemoRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runDemoProcess(args: string[], env: Record<string, string | undefined>): Promise<DemoRun> {
  const { LOG_LEVEL: _ignored, ...inherited } = process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/demo/main.ts', ...args], {
    cwd: REPO_ROOT,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

/** The first capture group of `pattern` in `text`, or a failure naming what was looked for. */
function captured(text: string, pattern: RegExp): string[] {
  const match = pattern.exec(text);
  if (match === null) throw new Error(`the demo's output has no ${String(pattern)}:\n${text}`);
  return match.slice(1);
}

describe('npm run demo -- --fleet 3', () => {
  it(
    'delivers every call through a SIGKILL in the middle, the fleet taking its calls over',
    async () => {
      const run = await runDemoProcess(['--fleet', '3', '--calls', String(CALLS)], {
        DEMO_POSTGRES_URL: POSTGRES_URL,
      });
      const { stdout } = run;
      expect(run.code, `${stdout}\n${run.stderr}`).toBe(0);
      expect(stdout).toContain(`OK: all ${CALLS} calls reached the CRM.`);
      expect(stdout).toMatch(new RegExp(`reached the CRM\\s+${CALLS}/${CALLS}`));

      // The kill, as the progress line and the fleet section say it.
      const [victim, pid, inProgress] = captured(
        stdout,
        /^killed (demo-[1-3]) \(pid (\d+)\) with (\d+) calls in progress$/m,
      );
      expect(Number(inProgress), 'the killed instance was driving calls').toBeGreaterThan(0);
      expect(stdout).toMatch(
        new RegExp(`killed \\(SIGKILL\\)\\s+${victim}\\s+pid ${pid}, with ${inProgress} calls in progress`),
      );
      const [takenOver, of] = captured(stdout, /its calls taken over\s+(\d+)\/(\d+)/);
      expect(Number(takenOver)).toBe(Number(inProgress));
      expect(Number(of)).toBe(Number(inProgress));
      const [delaySeconds] = captured(stdout, /take-over delay\s+([\d.]+) s/);
      expect(Number(delaySeconds)).toBeLessThanOrEqual(TAKEOVER_BOUND_SECONDS);
      expect(stdout).toMatch(new RegExp(`restarted\\s+${victim}\\s+pid \\d+, same id and port`));

      // One accepted CRM effect per Idempotency-Key, every call's call data among them.
      expect(stdout).toMatch(
        new RegExp(
          `keys accepted twice\\s+0\\s+one accepted effect per Idempotency-Key: \\d+ uploads, ${CALLS} call-data documents`,
        ),
      );
      const [owned] = captured(stdout, /calls by owner at end\s+(\d+)/);
      expect(Number(owned)).toBe(CALLS);
      expect(stdout).toContain(`OK: ${victim} was killed with ${inProgress} calls in progress`);

      // The run's schema is gone.
      const [schema] = captured(stdout, /schema (callsync_demo_[0-9a-f]+)/);
      const db = new pg.Client({ connectionString: POSTGRES_URL });
      await db.connect();
      try {
        const { rowCount } = await db.query(
          'SELECT 1 FROM information_schema.schemata WHERE schema_name = $1',
          [schema],
        );
        expect(rowCount, `schema ${schema} left behind`).toBe(0);
      } finally {
        await db.end();
      }
    },
    RUN_TIMEOUT_MS,
  );

  it('says in one line that PostgreSQL cannot be reached, and how to point it elsewhere', async () => {
    const port = await freePort();
    const url = `postgres://postgres@127.0.0.1:${port}/test`;
    const run = await runDemoProcess(['--fleet', '2', '--calls', '1'], { DEMO_POSTGRES_URL: url });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr.trimEnd().split('\n')).toEqual([
      `callsync demo failed: --fleet needs PostgreSQL and it cannot be reached at ${url} (ECONNREFUSED); start it there, or set DEMO_POSTGRES_URL=postgres://user@host:port/database to use another`,
    ]);
  });
});
