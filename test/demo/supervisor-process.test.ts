/**
 * One fleet-demo supervisor as its own process (`src/demo/supervisor-process.ts`): what it
 * writes goes to its log file, appended across restarts. Driven with an environment callsync refuses, so the process prints its configuration
 * errors and exits 1 at once (the contract: every bad variable named, one line each).
 *
 * Synchronisation: the process's exit (`exited` settles once its output is written).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startSupervisorProcess } from '../../src/demo/supervisor-process.ts';
import { freePort } from '../helpers/free-port.ts';

let dir: string | undefined;
afterEach(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('a fleet-demo supervisor process', () => {
  it('writes its output to its log file, a restart appending to it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'callsync-supervisor-process-'));
    const logFile = join(dir, 'demo-1.log');
    const port = await freePort();
    const run = () =>
      startSupervisorProcess({ instanceId: 'demo-1', port, env: { LOG_LEVEL: 'info' }, logFile });

    const first = run();
    expect(await first.exited).toEqual({ code: 1, signal: null });
    const second = run();
    expect(await second.exited).toEqual({ code: 1, signal: null });

    const text = await readFile(logFile, 'utf8');
    // Both runs, in order, each framed by its start and its exit.
    const frames = text.split('\n').filter((line) => line.startsWith('--- demo-1'));
    expect(frames).toEqual([
      expect.stringMatching(new RegExp(`^--- demo-1 started \\(pid ${first.pid}\\) at \\d{4}-`)),
      `--- demo-1 (pid ${first.pid}) exited 1`,
      expect.stringMatching(new RegExp(`^--- demo-1 started \\(pid ${second.pid}\\) at \\d{4}-`)),
      `--- demo-1 (pid ${second.pid}) exited 1`,
    ]);
    // What callsync said about its environment reached the file, once per run.
    expect(text.match(/LIVEKIT_URL/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
    expect(second.output()).toContain('LIVEKIT_URL');
  });
});
