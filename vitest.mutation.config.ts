/**
 * The tests StrykerJS runs against each mutant of `src/machines/` (`npm run test:mutation`):
 * the machine and policy tests, which need no servers, so each mutant takes seconds.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The generated model-path suites (thousands of paths) are left out: each mutant would run
    // them all. The reference-model properties and the policy tables check the same rules.
    include: [
      'test/machines/retry-policy.test.ts',
      'test/machines/recording-policy.test.ts',
      'test/machines/egress-wait-policy.test.ts',
      'test/machines/defaults.test.ts',
      'test/machines/timer.actor.test.ts',
      'test/machines/call.machine.test.ts',
      'test/machines/reference-model.property.test.ts',
    ],
    maxWorkers: 2,
    testTimeout: 30_000,
  },
});
