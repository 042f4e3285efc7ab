/**
 * Which calls the supervisor finished (`call:finished`: delivered, partial or failed), recorded
 * from the moment of watching, so a test can await a call's end state on the supervisor's own
 * event (with a deadline) instead of reading its state a moment too early.
 */
import type { Supervisor } from '../../src/supervisor.ts';

export type FinishedOutcome = 'delivered' | 'partial' | 'failed';

/** Only a failing test waits this long. */
export const FINISHED_WAIT_MS = 20_000;

export interface FinishedCalls {
  /** Resolves with the call's outcome once it finished (past or future); rejects at the deadline. */
  outcome(callId: string, timeoutMs?: number): Promise<FinishedOutcome>;
  /** Stops recording. */
  stop(): void;
}

export function watchFinished(supervisor: Pick<Supervisor, 'events'>): FinishedCalls {
  const outcomes = new Map<string, FinishedOutcome>();
  const waiters = new Set<() => void>();
  const onFinished = (event: { callId: string; outcome: FinishedOutcome }) => {
    outcomes.set(event.callId, event.outcome);
    for (const wake of [...waiters]) wake();
  };
  supervisor.events.on('call:finished', onFinished);
  return {
    outcome(callId, timeoutMs = FINISHED_WAIT_MS) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const outcome = outcomes.get(callId);
          if (outcome === undefined) return;
          done();
          resolve(outcome);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`call ${callId} did not finish within ${timeoutMs} ms`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    stop() {
      supervisor.events.off('call:finished', onFinished);
    },
  };
}
