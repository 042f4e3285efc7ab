/**
 * A contender's process: spawned with only the environment it is given (plus PATH, HOME and
 * TMPDIR, as src/demo/supervisor-process.ts does), its output drained and its tail kept for
 * error messages, readiness a bounded poll of an HTTP path.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { childBaseEnv } from '../../src/demo/supervisor-process.ts';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OUTPUT_TAIL_CHARS = 4_000;
const READY_POLL_PAUSE_MS = 50;
const STOP_GRACE_MS = 10_000;

export interface ChildProcess {
  readonly pid: number;
  /** The last few thousand characters it wrote. */
  outputTail(): string;
  /** Polls `url` until it answers 200; rejects when the process exits or the time runs out. */
  waitReady(url: string, timeoutMs: number): Promise<void>;
  /** SIGTERM, then SIGKILL after a grace period; resolves once it exited. */
  stop(): Promise<void>;
}

export function startChildProcess(args: readonly string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: { ...childBaseEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { pid } = child;
  if (pid === undefined) throw new Error(`could not start node ${args.join(' ')}`);
  let tail = '';
  let exited = false;
  let stopping = false;
  const closed = once(child, 'close').then(([code, signal]) => {
    exited = true;
    if (!stopping) {
      process.stderr.write(
        `bench: node ${args.join(' ')} exited unexpectedly (${String(code ?? signal)}); its output: ${tail}\n`,
      );
    }
  });
  const keep = (chunk: string) => (tail = (tail + chunk).slice(-OUTPUT_TAIL_CHARS));
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  return {
    pid,
    outputTail: () => tail,
    async waitReady(url, timeoutMs) {
      const deadlineMs = Date.now() + timeoutMs;
      while (Date.now() < deadlineMs) {
        if (exited) throw new Error(`node ${args.join(' ')} exited; its output: ${tail}`);
        const status = await fetch(url).then(
          async (answer) => {
            await answer.arrayBuffer();
            return answer.status;
          },
          () => 0,
        );
        if (status === 200) return;
        await delay(READY_POLL_PAUSE_MS);
      }
      throw new Error(`node ${args.join(' ')} not ready within ${timeoutMs} ms; its output: ${tail}`);
    },
    async stop() {
      if (exited) return;
      stopping = true;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await closed;
      clearTimeout(timer);
    },
  };
}

/** Starts a child and waits until `readyUrl` answers 200; a child that does not get there is stopped. */
export async function startReadyChildProcess(
  args: readonly string[],
  env: Record<string, string>,
  readyUrl: string,
  timeoutMs: number,
): Promise<ChildProcess> {
  const child = startChildProcess(args, env);
  try {
    await child.waitReady(readyUrl, timeoutMs);
  } catch (error) {
    await child.stop();
    throw error;
  }
  return child;
}
