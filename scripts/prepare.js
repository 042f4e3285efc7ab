/**
 * The `prepare` step (`npm ci`, `npm install` in a clone, an install from git): builds `dist/`
 * with `npm run build`, which needs the TypeScript compiler, a dev dependency. A production
 * install (`npm ci --omit=dev`, or `NODE_ENV=production`) has none: npm runs `prepare` there
 * too, so this keeps a `dist/` built beforehand (README, "Running it") and, when there is none,
 * stops with what to do instead of tsc's "not found". A tarball or registry install never runs
 * it (the tarball holds `dist/`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import process from 'node:process';
import { URL } from 'node:url';

const require = createRequire(import.meta.url);
const BUILT_ENTRY = new URL('../dist/main.js', import.meta.url);

function compilerInstalled() {
  try {
    require.resolve('typescript/package.json');
    return true;
  } catch {
    return false;
  }
}

if (compilerInstalled()) {
  // npm_execpath is the npm running this script; under a bare `node scripts/prepare.js`, npm on PATH.
  const npm = process.env.npm_execpath;
  const build = npm
    ? spawnSync(process.execPath, [npm, 'run', 'build'], { stdio: 'inherit' })
    : spawnSync('npm', ['run', 'build'], { stdio: 'inherit' });
  process.exit(build.status ?? 1);
} else if (existsSync(BUILT_ENTRY)) {
  process.stdout.write(
    'callsync: no TypeScript compiler in this install (dev dependencies omitted); using the dist/ already built\n',
  );
} else {
  process.stderr.write(
    'callsync: dist/ is not built and this install has no TypeScript compiler (dev dependencies omitted).\n' +
      'callsync: build it with the dev dependencies first: npm ci && npm run build && npm prune --omit=dev\n',
  );
  process.exit(1);
}
