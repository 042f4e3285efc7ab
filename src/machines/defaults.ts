/**
 * The defaults of what configuration can change about a call, one home for each number: config
 * (`src/config.ts`), the call machine's limits (`DEFAULT_CALL_LIMITS`), the metrics' delivery
 * histogram and the SLO rules (`src/metrics/`) all import them from here, so the service, its
 * dashboard and its alerts cannot disagree. Pure constants; machines import nothing from config.
 *
 * - Delivery target, 30 s after the call ends (`CALLSYNC_UPLOAD_TARGET_SECONDS`): the promise
 *   the README makes. Reported (`call.delivered` `withinTarget`, the SLI's `le` bucket), not
 *   enforced: nothing is cut short to meet it.
 * - Maximum call length, 4 h (`CALLSYNC_MAX_CALL_DURATION_SECONDS`, the README's `14400`): it
 *   only ends calls whose end was lost (no `end` from the agent, no `room_finished`), so it errs
 *   long. Ending a real call early would cut its transcript; ending a lost one late only delays
 *   a call whose end is lost anyway.
 * - Egress deadline, 120 s after the call ends (`CALLSYNC_EGRESS_DEADLINE_SECONDS`): why is in
 *   `egress-wait-policy.ts`, with the other numbers of the egress wait.
 * - Per-attempt bounds of the CRM steps: one call-data POST 10 s; one recording upload 60 s
 *   plus the size allowance of `recording-policy.ts`. Not configurable; tests shrink them
 *   through `limits`.
 */
import type { CallLimits } from './call.types.ts';
import {
  EGRESS_DEADLINE_MS,
  EGRESS_POLL_INTERVAL_MS,
  EGRESS_START_TIMEOUT_MS,
} from './egress-wait-policy.ts';

const SECOND_MS = 1_000;

export const DELIVERY_TARGET_SECONDS_DEFAULT = 30;
export const MAX_CALL_DURATION_SECONDS_DEFAULT = 4 * 60 * 60;
export const EGRESS_DEADLINE_SECONDS_DEFAULT = EGRESS_DEADLINE_MS / SECOND_MS;

export const DEFAULT_CALL_LIMITS: Readonly<CallLimits> = Object.freeze({
  maxCallDurationMs: MAX_CALL_DURATION_SECONDS_DEFAULT * SECOND_MS,
  egressDeadlineMs: EGRESS_DEADLINE_MS,
  deliveryTargetMs: DELIVERY_TARGET_SECONDS_DEFAULT * SECOND_MS,
  egressPollIntervalMs: EGRESS_POLL_INTERVAL_MS,
  egressStartTimeoutMs: EGRESS_START_TIMEOUT_MS,
  uploadAttemptTimeoutMs: 60 * SECOND_MS,
  postAttemptTimeoutMs: 10 * SECOND_MS,
});
