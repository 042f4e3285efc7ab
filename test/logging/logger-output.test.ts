/**
 * Log output as an operator's collector reads it: every line callsync logged is on stdout, whole
 * and in order, even when the process exits right after logging them (pino flushes its
 * asynchronous destination at exit), and a line longer than a write chunk is not split.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const FIXTURE = fileURLToPath(new URL('./fixtures/log-then-exit.ts', import.meta.url));

async function runFixture(env: Record<string, string>): Promise<{ code: number | null; stdout: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout };
}

describe('log output', () => {
  it.each([0, 3])(
    'writes every line, whole and in order, when the process exits with %i right after',
    async (exitCode) => {
      const lines = 20_000;
      const { code, stdout } = await runFixture({ LINES: String(lines), EXIT_CODE: String(exitCode) });
      expect(code).toBe(exitCode);
      const written = stdout.split('\n');
      expect(written.pop()).toBe('');
      const parsed = written.map((line) => JSON.parse(line) as { n: number; msg: string; long?: string });
      expect(parsed.map((line) => line.n)).toEqual(Array.from({ length: lines }, (_, index) => index + 1));
      expect(parsed[lines - 1]!.msg).toBe(`line ${lines} → logged`);
      expect(parsed.filter((line) => line.long?.length === 5_000)).toHaveLength(lines / 100);
    },
  );
});
