/**
 * The tests StrykerJS runs against each mutant of `src/machines/` (`npm run test:mutation`):
 * the machine and policy tests, which need no servers, so each mutant takes seconds.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The call machine's generated model-path suites (thousands of paths, 10 s a run) are left
    // out: each mutant would run them all. The reference-model properties, the emitted-events
    // tests and the policy tables check the same rules; the upload machine's paths are quick.
    include: [
      'test/machines/retry-policy.test.ts',
      'test/machines/recording-policy.test.ts',
      'test/machines/egress-wait-policy.test.ts',
      'test/machines/defaults.test.ts',
      'test/machines/timer.actor.test.ts',
      'test/machines/call.machine.test.ts',
      'test/machines/call.machine.emitted.test.ts',
      'test/machines/call.actors.test.ts',
      'test/machines/call.states.test.ts',
      // callStateOf's table, written from the design card (it lives with the supervisor's tests).
      'test/supervisor/call-state.test.ts',
      'test/machines/upload.machine.model.test.ts',
      'test/machines/upload.machine.crash.model.test.ts',
      'test/machines/reference-model.property.test.ts',
    ],
    maxWorkers: 2,
    testTimeout: 30_000,
  },
});
