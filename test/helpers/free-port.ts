/** The sandboxes' free-port finder, for the tests (one home: `src/sandbox/free-port.ts`). */
export { freePort } from '../../src/sandbox/free-port.ts';
