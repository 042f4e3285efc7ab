/**
 * How a call starts its egress and waits for it after the call ends, as pure functions (no
 * clock, no I/O). The rule behind every number: a recording is worth a short wait, but it never
 * holds back the transcript and the lead (`recording-policy.ts`), and a late recording still
 * beats none.
 *
 * - StartEgress: 3 attempts (`EGRESS_START_MAX_ATTEMPTS`), 0.1 s and 0.25 s apart (the retry
 *   policy's fast lane with its ±20 % jitter, keyed by `<callId>:egress`), each abandoned after
 *   10 s (`EGRESS_START_TIMEOUT_MS`, the LiveKit SDK's own request timeout,
 *   `LIVEKIT_REQUEST_TIMEOUT_SECONDS` in `services/egress.client.ts`). The call is live meanwhile:
 *   every second spent starting is a second of conversation not recorded, so after a few blips
 *   the call goes on without a recording instead. Once the call has ended nothing is retried.
 * - Settlement: the wait ends at the first final status (COMPLETE, FAILED, ABORTED,
 *   LIMIT_REACHED), from an `egress_*` webhook or a `ListEgress` poll, whichever comes first. An
 *   egress that reported its final status during the call (it died, or hit its limit) is not
 *   waited for; without an egress id there is nothing to wait for (`not_started`).
 * - Polls: `ListEgress` 1 s (`EGRESS_POLL_INTERVAL_MS`) after each answer or failure, at a fixed
 *   interval. The first comes 1 s after StopEgress is answered: a stopped egress is ENDING for
 *   a while and its `egress_ended` webhook usually arrives first, so a poll at once would only
 *   read ENDING (one LiveKit request per call for nothing, 1,000 of them in a burst of hang-ups).
 *   A stop refused as already ended, or one that failed, is followed by a poll at once. Webhooks
 *   are best-effort (LiveKit sends each once, and a lost one is never resent), so polling is
 *   what guarantees progress; once a second adds at most a second to a wait whose p95 is about
 *   10 s, and the deadline bounds it to about 120 requests per call.
 * - Deadline: 120 s after callsync observed the end (`EGRESS_DEADLINE_MS`, the default of
 *   `CALLSYNC_EGRESS_DEADLINE_SECONDS`): about twelve times the egress's p95, generous on
 *   purpose. A wait that reaches it settles `timed_out` and the call data goes without a
 *   recording (`partial`); that call misses the 30 s target, which the SLO counts.
 */
import type { EgressOutcome, EgressSettlement } from './call.types.ts';
import { isFinalEgressStatus } from './call.types.ts';
import { hasUsableFile } from './recording-policy.ts';
import { jitterSample, retryDelayMs } from './retry-policy.ts';

const SECOND_MS = 1_000;

export const EGRESS_START_MAX_ATTEMPTS = 3;
export const EGRESS_START_TIMEOUT_MS = 10 * SECOND_MS;
export const EGRESS_POLL_INTERVAL_MS = 1 * SECOND_MS;
export const EGRESS_DEADLINE_MS = 120 * SECOND_MS;

/** When a StartEgress attempt begun at `startedAt` is abandoned (absolute, epoch ms). */
export function egressStartDeadlineAt(startedAt: number, timeoutMs: number): number {
  return startedAt + timeoutMs;
}

export interface EgressStartFailure {
  callId: string;
  /** The attempt that just failed, 1-based. */
  attempt: number;
  retryable: boolean;
  retryAfterMs?: number | undefined;
  /** When it failed (epoch ms). */
  at: number;
  /** The call has ended: an egress started now would record nothing. */
  callEnded: boolean;
}

/** When to try StartEgress again (absolute, epoch ms); `null`: go on without a recording. */
export function nextEgressStartAt(failure: EgressStartFailure): number | null {
  if (failure.callEnded || !failure.retryable || failure.attempt >= EGRESS_START_MAX_ATTEMPTS) return null;
  return (
    failure.at +
    retryDelayMs({
      attempt: failure.attempt,
      retryAfterMs: failure.retryAfterMs,
      random: jitterSample(`${failure.callId}:egress`, failure.attempt),
    })
  );
}

/** When the wait for the egress is over at the latest (absolute, epoch ms). */
export function egressDeadlineAt(endObservedAt: number, deadlineMs: number): number {
  return endObservedAt + deadlineMs;
}

/** When to poll `ListEgress` again after an answer (or a failure) at `answeredAt`. */
export function nextEgressPollAt(answeredAt: number, intervalMs: number): number {
  return answeredAt + intervalMs;
}

/** The wait settled by a report (webhook or poll): its final status, and its file when usable. */
export function settlementOf(outcome: EgressOutcome, via: 'webhook' | 'poll', at: number): EgressSettlement {
  const status = isFinalEgressStatus(outcome.status) ? outcome.status : 'timed_out';
  const file = hasUsableFile(status, outcome.file) ? (outcome.file ?? null) : null;
  return { status, file, via, at };
}

/** The wait settled by the deadline: no final status, so no file. */
export function timedOutSettlement(at: number): EgressSettlement {
  return { status: 'timed_out', file: null, via: 'deadline', at };
}

/**
 * The call ended with no egress to wait for: it reported its final status during the call
 * (`reported`), or none was started.
 */
export function settlementWithoutWaiting(reported: EgressOutcome | null, at: number): EgressSettlement {
  return reported !== null
    ? settlementOf(reported, 'webhook', at)
    : { status: 'not_started', file: null, via: 'none', at };
}
