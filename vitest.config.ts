import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Two projects. `unit` (`npm run test:unit`, the fast loop): tests that need no network server,
 * child process, PostgreSQL, Prometheus or storage server — the machines and their policies,
 * the payload, config parsing, pure modules, metrics on a private registry, SQLite in a
 * temporary directory. `integration` (`npm run test:integration`): every other test file, so a
 * new file runs in one project or the other and `npm test` (both) runs everything.
 */
const UNIT_TESTS = [
  'test/machines/**/*.test.ts',
  'test/logging/logger.test.ts',
  'test/logging/secret-censor.test.ts',
  'test/payload/**/*.test.ts',
  'test/supervisor/**/*.test.ts',
  'test/config.test.ts',
  'test/agent/backoff-and-answer.test.ts',
  'test/agent/call-job.test.ts',
  'test/agent/session-events.test.ts',
  'test/audio/ogg-opus.test.ts',
  'test/demo/demo-parts.test.ts',
  'test/metrics/artifacts.test.ts',
  'test/metrics/contract-metrics.test.ts',
  'test/metrics/metrics.recorder.test.ts',
  'test/sandbox/livekit-egress-filepath.test.ts',
  'test/services/call-data-gate.test.ts',
  'test/services/crm.errors.test.ts',
  'test/services/lease-guard.test.ts',
  'test/services/storage/local-storage.test.ts',
];

export default defineConfig({
  test: {
    // Integration tests start real HTTP servers on port 0; they are independent, but the
    // machines have 2 cores, so keep the worker count modest.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: UNIT_TESTS,
          // One module graph per worker, not per file: the unit files load the same modules
          // (xstate, the machines, the call model and its paths) and leave no global state
          // behind, so a worker loads them once. A unit test must keep it that way: no `vi.mock`,
          // fake timers restored, no environment variables changed.
          isolate: false,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...UNIT_TESTS],
        },
      },
    ],
  },
});
