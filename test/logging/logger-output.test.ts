/**
 * Log output as an operator's collector reads it: every line callsync logged is on stdout, whole
 * and in order, even when the process exits right after logging them (pino flushes its
 * asynchronous destination at exit), or while libuv's thread pool is busy and a write is still
 * under way (`flushLogs` first, as `src/main.ts` exits), and a line longer than a write chunk is
 * not split.
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
  it.each([
    { exitCode: 0, busyPool: false, when: 'right after logging them, with 0' },
    { exitCode: 3, busyPool: false, when: 'right after logging them, with 3' },
    { exitCode: 0, busyPool: true, when: 'after flushLogs, its thread pool busy' },
  ])(
    'writes every line, whole and in order, when the process exits $when',
    async ({ exitCode, busyPool }) => {
      const lines = 20_000;
      const { code, stdout } = await runFixture({
        LINES: String(lines),
        EXIT_CODE: String(exitCode),
        BUSY_POOL: busyPool ? '1' : '0',
      });
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
