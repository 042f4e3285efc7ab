/**
 * Every simple path to `done` along the main line of the call machine (one representative event
 * per structurally different outcome, no model state twice), driven through a real actor as is
 * and with a crash before every step (`runCallPath`). The other path families run in
 * call.machine.model.test.ts; this half is a file of its own so that the two run side by side.
 */
import { describe, it } from 'vitest';
import { callMainLinePaths, describePath, runCallPath } from './call.model.ts';

for (const crash of [false, true]) {
  describe(crash ? 'call machine with a crash before every step' : 'call machine', () => {
    describe('simple paths to done (main line)', () => {
      for (const events of callMainLinePaths()) {
        it(describePath(events), () => runCallPath(events, crash));
      }
    });
  });
}
