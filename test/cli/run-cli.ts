/**
 * Runs the real `callsync` command in a child process: the built `bin/callsync.js` (what `npx
 * callsync` runs; `npm run build` first, as the CI does), or the sources through tsx.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = `${ROOT}bin/callsync.js`;
const SOURCE = `${ROOT}src/cli/main.ts`;
const BUILT = `${ROOT}dist/cli/main.js`;

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string>;
  /** Run bin/callsync.js (the build) rather than the sources. */
  built?: boolean;
}

export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliRun> {
  if (options.built && !existsSync(BUILT)) {
    throw new Error(`${BUILT} is missing: run \`npm run build\` before this test`);
  }
  const argv = options.built ? [BIN, ...args] : ['--import', 'tsx', SOURCE, ...args];
  // Only what the CLI needs: no CALLSYNC_* of the developer's shell leaks in.
  const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env };
  return new Promise((resolve) => {
    execFile(process.execPath, argv, { cwd: ROOT, env, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
