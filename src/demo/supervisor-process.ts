/**
 * One supervisor of the fleet demo as its own operating-system process, started as `npm run dev`
 * starts it (`node --import tsx src/main.ts`, from the sources). Its environment is only what it
 * is given (plus PATH, HOME and TMPDIR so node and tsx resolve). Its stdout and stderr go to its
 * log file (appended, so a restart under the same id continues it), and only their last
 * `OUTPUT_TAIL_CHARS` stay in memory, to show when something fails: a long `--keep-running`
 * demo does not grow. Stdout's JSON (pino) lines are parsed and handed to `onLine` as they come
 * (the fleet waits on them: `call taken over`).
 * Readiness is a bounded poll of `GET /readyz` that awaits each answer and gives up early when
 * the process exits.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Between two polls of `/readyz`, inside the bounded readiness loop only. */
const READY_POLL_PAUSE_MS = 50;
/** One `/readyz` answer may take this long (a process that is starting answers slowly). */
const READY_REQUEST_TIMEOUT_MS = 2_000;
/** How much of its latest output a process keeps in memory (the log file has all of it). */
export const OUTPUT_TAIL_CHARS = 64 * 1024;

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A parsed pino line: `time` (epoch ms), `level` (number) and `msg` are pino's own fields. */
export type LogLine = Record<string, unknown>;

export interface SupervisorProcess {
  readonly instanceId: string;
  readonly pid: number;
  /** `http://127.0.0.1:<CALLSYNC_PORT>`. */
  readonly url: string;
  /** Settles once the process has exited and its output is read and written (never rejects). */
  readonly exited: Promise<ProcessExit>;
  /** Null while it runs. */
  exitStatus(): ProcessExit | null;
  /** The latest of what it wrote (`OUTPUT_TAIL_CHARS`), stdout and stderr as they came. */
  output(): string;
  /** Polls `/readyz` until 200; rejects naming the process if it exits or the time runs out. */
  waitReady(timeoutMs: number): Promise<void>;
  /** Sends a signal (nothing once exited). */
  signal(signal: NodeJS.Signals): void;
}

export interface SupervisorProcessOptions {
  instanceId: string;
  port: number;
  /** callsync's environment (LIVEKIT_*, CRM_*, CALLSYNC_*, LOG_LEVEL). */
  env: Record<string, string>;
  /** Every JSON line of stdout, parsed, as it comes. */
  onLine?: ((line: LogLine, process: SupervisorProcess) => void) | undefined;
  /** Where its stdout and stderr are appended. */
  logFile: string;
}

/** What a child process needs of this one's environment to find node and its modules, and no more. */
export function childBaseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR'] as const) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

export function startSupervisorProcess(options: SupervisorProcessOptions): SupervisorProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO_ROOT,
    env: { ...childBaseEnv(), ...options.env, CALLSYNC_PORT: String(options.port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`could not start supervisor ${options.instanceId}`);
  const url = `http://127.0.0.1:${options.port}`;
  const log = createWriteStream(options.logFile, { flags: 'a' });
  log.on('error', (error) => process.stderr.write(`${options.logFile}: ${error.message}\n`));
  log.write(`--- ${options.instanceId} started (pid ${child.pid}) at ${new Date().toISOString()}\n`);
  let tail = '';
  const keep = (chunk: string) => {
    log.write(chunk);
    tail = (tail + chunk).slice(-OUTPUT_TAIL_CHARS);
  };
  let partial = '';
  let exit: ProcessExit | null = null;

  const self: SupervisorProcess = {
    instanceId: options.instanceId,
    pid: child.pid,
    url,
    exited: new Promise<ProcessExit>((resolve) => {
      // 'close' (not 'exit'): every byte of stdout and stderr has been read by then.
      child.once('close', (code, signal) => {
        exit = { code, signal };
        log.end(`--- ${options.instanceId} (pid ${child.pid}) exited ${code ?? signal}\n`, () =>
          resolve(exit!),
        );
      });
    }),
    exitStatus: () => exit,
    output: () => tail,
    async waitReady(timeoutMs) {
      const deadlineMs = Date.now() + timeoutMs;
      const describe = () =>
        `supervisor ${options.instanceId} (pid ${child.pid})${exit ? ` exited ${exit.code ?? exit.signal}` : ''}; its output: ${self.output().slice(-2_000)}`;
      while (Date.now() < deadlineMs) {
        if (exit) throw new Error(`${describe()}`);
        try {
          const answer = await request(`${url}/readyz`, {
            reset: true,
            headersTimeout: READY_REQUEST_TIMEOUT_MS,
            bodyTimeout: READY_REQUEST_TIMEOUT_MS,
          });
          await answer.body.dump();
          if (answer.statusCode === 200) return;
        } catch {
          // not listening yet
        }
        await delay(READY_POLL_PAUSE_MS);
      }
      throw new Error(`not ready within ${timeoutMs} ms: ${describe()}`);
    },
    signal(signal) {
      if (!exit) child.kill(signal);
    },
  };

  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    keep(chunk);
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const text of lines) {
      if (!text.startsWith('{')) continue;
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        continue;
      }
      options.onLine?.(line, self);
    }
  });
  child.stderr.setEncoding('utf8').on('data', keep);
  return self;
}
