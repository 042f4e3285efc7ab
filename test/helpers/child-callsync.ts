/**
 * callsync as its own operating-system process, started as `npm run dev` starts it
 * (`node --import tsx src/main.ts`: `npm start`'s `dist/main.js`, from the sources, so a test
 * never runs a stale build), for the tests whose subject is the process itself:
 * SIGKILL and restart, SIGTERM draining, exit codes, and what it writes to stdout/stderr.
 *
 * The child gets only the environment it is given (plus PATH/HOME/TMPDIR so node and tsx
 * resolve), so a test that leaves a variable out really leaves it out. Its output is kept in
 * memory and can be awaited line by line (`waitForLog`), so tests synchronise on what the
 * process says rather than on time. Readiness is learnt by polling `GET /readyz` in a bounded
 * loop that awaits each real answer, and gives up early when the process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { request } from 'undici';
import { childBaseEnv } from '../../src/demo/supervisor-process.ts';
import { callsyncApi, type ApiAnswer } from './callsync-api.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Between two polls of `/readyz` or `poll()`: short, and only inside those bounded loops. */
const POLL_PAUSE_MS = 50;
/** tsx compiles on the fly; on two busy cores a start-up takes a few seconds. */
export const CHILD_READY_TIMEOUT_MS = 20_000;
/**
 * How long any one awaited condition may take before a test fails with a message: generous,
 * because these tests share two cores with the rest of the suite. Only a failure waits this long.
 */
export const CHILD_WAIT_MS = 20_000;

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export type { ApiAnswer };

export interface ChildCallsyncOptions {
  /** The whole callsync environment (LIVEKIT_*, CRM_*, CALLSYNC_*, LOG_LEVEL). */
  env: Record<string, string>;
  /** Sent as `Authorization: Bearer …` by `api()`. */
  ingestToken?: string | undefined;
  /**
   * RLIMIT_NOFILE (soft and hard) the process starts with, as a container or systemd unit sets
   * it: started through `prlimit`, which sets it and then runs node in its place (same pid).
   */
  openFilesLimit?: number | undefined;
  /** Node options before the entry (`--import` a test hook, say). */
  nodeArgs?: readonly string[] | undefined;
}

export interface ChildCallsync {
  readonly pid: number;
  /** `http://127.0.0.1:<CALLSYNC_PORT>`. */
  readonly url: string;
  /** Settles once the process has exited (never rejects). */
  readonly exited: Promise<ChildExit>;
  /** Everything written to stdout so far. */
  stdout(): string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** stdout's JSON (pino) lines, parsed; other lines are skipped. */
  logLines(): Record<string, unknown>[];
  /** Resolves with the first log line (past or future) for which `match` holds. */
  waitForLog(
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** Polls `/readyz` until it answers 200; rejects if the process exits or the time runs out. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** Sends a signal (no-op once exited). */
  signal(signal: NodeJS.Signals): void;
  /** SIGKILL, then waits for the exit. */
  kill(): Promise<ChildExit>;
  api(method: 'GET' | 'POST', path: string, body?: unknown): Promise<ApiAnswer>;
  /**
   * `GET path` until `match` holds for an answer, in a bounded loop that awaits every answer
   * (a call's state as the supervisor itself reports it, e.g. "its first attempt has failed").
   */
  poll(path: string, match: (answer: ApiAnswer) => boolean, timeoutMs?: number): Promise<ApiAnswer>;
}

function parseLines(text: string): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial last line; it is parsed once complete
    }
  }
  return lines;
}

export function spawnCallsync(options: ChildCallsyncOptions): ChildCallsync {
  const node = [process.execPath, ...(options.nodeArgs ?? []), '--import', 'tsx', 'src/main.ts'];
  const [command, ...args] =
    options.openFilesLimit === undefined
      ? node
      : ['prlimit', `--nofile=${options.openFilesLimit}:${options.openFilesLimit}`, '--', ...node];
  const child: ChildProcess = spawn(command!, args, {
    cwd: REPO_ROOT,
    env: { ...childBaseEnv(), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = `http://127.0.0.1:${options.env.CALLSYNC_PORT ?? '8080'}`;
  let out = '';
  let err = '';
  let exit: ChildExit | undefined;
  const onOutput = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    for (const wake of [...onOutput]) wake();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  // 'close' (not 'exit'): every byte of stdout/stderr has been read by then.
  const exited = new Promise<ChildExit>((resolve) => {
    child.once('close', (code, signal) => {
      exit = { code, signal };
      for (const wake of [...onOutput]) wake();
      resolve(exit);
    });
  });
  const describe = () =>
    `callsync pid ${child.pid} (${exit ? `exited ${exit.code ?? exit.signal}` : 'running'}); stderr: ${err.slice(-2000)}`;

  const self: ChildCallsync = {
    pid: child.pid!,
    url,
    exited,
    stdout: () => out,
    stderr: () => err,
    logLines: () => parseLines(out),
    waitForLog(match, timeoutMs = CHILD_WAIT_MS) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = parseLines(out).find(match);
          if (found) {
            done();
            resolve(found);
          } else if (exit) {
            done();
            reject(new Error(`the awaited log line never came before the exit: ${describe()}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`the awaited log line did not come within ${timeoutMs} ms: ${describe()}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          onOutput.delete(check);
        };
        onOutput.add(check);
        check();
      });
    },
    async waitReady(timeoutMs = CHILD_READY_TIMEOUT_MS) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (exit) throw new Error(`callsync exited before it was ready: ${describe()}`);
        try {
          const answer = await request(`${url}/readyz`, {
            reset: true,
            headersTimeout: 2_000,
            bodyTimeout: 2_000,
          });
          await answer.body.dump();
          if (answer.statusCode === 200) return;
        } catch {
          // not listening yet
        }
        await delay(POLL_PAUSE_MS);
      }
      throw new Error(`callsync was not ready within ${timeoutMs} ms: ${describe()}`);
    },
    signal(signal) {
      if (!exit) child.kill(signal);
    },
    async kill() {
      self.signal('SIGKILL');
      return exited;
    },
    // A fresh connection each time: a kept-alive socket may belong to a killed process.
    api: (method, path, body) =>
      callsyncApi(url, method, path, body, { token: options.ingestToken, reset: true }),
    async poll(path, match, timeoutMs = CHILD_WAIT_MS) {
      const deadline = Date.now() + timeoutMs;
      let last: ApiAnswer | undefined;
      while (Date.now() < deadline) {
        if (exit) break;
        last = await self.api('GET', path);
        if (match(last)) return last;
        await delay(POLL_PAUSE_MS);
      }
      throw new Error(`GET ${path} never matched; last answer ${JSON.stringify(last)}; ${describe()}`);
    },
  };
  return self;
}
