/**
 * In a fleet, the instance that logged an event may not be the one driving the call: before it
 * answers a transcript batch or a lead it waits for the owner's decision (applied, or refused
 * as `409 CALL_DATA_SENT` once the call data is built), so a `202` still means "in the call
 * data the CRM receives".
 *
 * Wait policy: a decision is read from the store when a `handled` note arrives, and every
 * `OUTCOME_POLL_MS` in any case (a note can be lost); after `leaseMs + OWNER_ANSWER_GRACE_MS` (a
 * take-over of a dead owner fits in it) the sender gets `503 CALL_OWNER_UNAVAILABLE` and sends
 * again, which is safe: a repeated item or lead changes nothing.
 */
import { API_ERROR_STATUS, ApiError, type ApiErrorCode } from '../errors.ts';
import type { TimeSource } from '../machines/timer.actor.ts';
import type { CallStore, EventOutcome } from '../store/call-store.ts';

export const OUTCOME_POLL_MS = 250;
export const OWNER_ANSWER_GRACE_MS = 5_000;

export interface OutcomeWaiterDeps {
  store: Pick<CallStore, 'getEventOutcome'>;
  time: TimeSource;
  leaseMs: number;
}

/** What a sender answers when the call finished before its owner decided on the event. */
export type UndecidedAnswer = () => ApiError;

export class OutcomeWaiter {
  readonly #deps: OutcomeWaiterDeps;
  readonly #waiting = new Map<string, Set<() => void>>();

  constructor(deps: OutcomeWaiterDeps) {
    this.#deps = deps;
  }

  /** The owner decided on some of the call's events: wake its waiters to read them. */
  wake(callId: string): void {
    const waiters = this.#waiting.get(callId);
    if (!waiters) return;
    this.#waiting.delete(callId);
    for (const wake of waiters) wake();
  }

  /** Resolves once the event at `seq` was applied; rejects with the refusal the owner recorded. */
  async wait(callId: string, seq: number, undecided: UndecidedAnswer): Promise<void> {
    const { store, time, leaseMs } = this.#deps;
    const deadline = time.now() + leaseMs + OWNER_ANSWER_GRACE_MS;
    for (;;) {
      const outcome = await store.getEventOutcome(callId, seq);
      const answer = decide(callId, seq, outcome, undecided);
      if (answer === 'applied') return;
      if (answer !== 'pending') throw answer;
      if (time.now() >= deadline) {
        throw new ApiError(
          'CALL_OWNER_UNAVAILABLE',
          `call ${callId}: the event is logged, but the instance driving the call has not taken it yet; send it again`,
        );
      }
      await this.#next(callId);
    }
  }

  #next(callId: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const { time } = this.#deps;
      const waiters = this.#waiting.get(callId) ?? new Set<() => void>();
      this.#waiting.set(callId, waiters);
      const wake = () => {
        time.clearTimeout(timer);
        waiters.delete(wake);
        resolve();
      };
      const timer = time.setTimeout(wake, OUTCOME_POLL_MS);
      waiters.add(wake);
    });
  }
}

function decide(
  callId: string,
  seq: number,
  outcome: EventOutcome | undefined,
  undecided: UndecidedAnswer,
): 'applied' | 'pending' | ApiError {
  if (!outcome) return new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
  if (outcome.handledSeq >= seq) {
    if (!outcome.refusal) return 'applied';
    const code =
      outcome.refusal.code in API_ERROR_STATUS
        ? (outcome.refusal.code as ApiErrorCode)
        : 'CALL_ALREADY_ENDED';
    return new ApiError(code, outcome.refusal.message);
  }
  // The call finished before its owner came to this event: it never will.
  if (outcome.status !== 'active') return undecided();
  return 'pending';
}
