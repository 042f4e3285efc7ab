/**
 * The one typed API the supervisor's event wiring calls to record what happened to calls. It
 * keeps the event → metric mapping a small function: each method is one fact about a call,
 * named for the fact, not for the metric it lands in.
 *
 * Policy:
 * - Recording never throws and never blocks delivery: a value that is not a finite number is
 *   dropped (a metric is not worth a failed call), a negative duration (the agent's `endedAt`
 *   comes from another clock) counts as 0.
 * - Labels stay a small closed set: a value outside the known set becomes `other`, so a caller
 *   passing a free-form string cannot blow up cardinality.
 * - Consistency the SLO rules rely on: a finished call increments `callsync_calls_finished_total`
 *   and, unless it failed, observes `callsync_delivery_duration_seconds` in the same call, so
 *   "finished" is the SLI's denominator and "the le=30 bucket" its numerator (`slo.ts`). A failed call
 *   counts as a bad event; if an operator re-drives it and it is delivered later, it counts a
 *   second time, as a late delivery (both were misses of the 30 s target).
 */
import { CALL_STATE_NAMES } from '../machines/call.states.ts';
import { MISSING_RECORDING_REASONS, type MissingRecordingReason } from '../machines/recording-policy.ts';
import {
  CALL_DIRECTIONS,
  CRM_ENDPOINTS,
  EGRESS_SETTLEMENT_STATUSES,
  EGRESS_SOURCES,
  RESTORE_RESULTS,
  STORE_OPERATIONS,
  WEBHOOK_RESULTS,
  type CallDirection,
  type CrmEndpoint,
  type DeliveryOutcome,
  type EgressSettlementStatus,
  type EgressSource,
  type Metrics,
  type StoreOperation,
  type WebhookResult,
} from './metrics.ts';

/** LiveKit webhook events (`livekit_webhook.proto`); anything else is counted as `other`. */
export const LIVEKIT_WEBHOOK_EVENTS = [
  'room_started',
  'room_finished',
  'participant_joined',
  'participant_left',
  'participant_connection_aborted',
  'track_published',
  'track_unpublished',
  'egress_started',
  'egress_updated',
  'egress_ended',
  'ingress_started',
  'ingress_ended',
] as const;

/** Label values for CRM `code`: short identifiers only. */
const LABEL_VALUE_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
export const OTHER_LABEL_VALUE = 'other';

export type CallFinished =
  | { outcome: DeliveryOutcome; /** Call end → CRM ack of the call data. */ deliverySeconds: number }
  | { outcome: 'failed' };

/**
 * Members are function-valued properties, not methods, so each can be handed on by itself
 * (`onRequest: recorder.crmRequest`); none of them uses `this`.
 */
export interface MetricsRecorder {
  /** `POST /v1/calls` created a call (not a repeat for the same room). */
  callStarted: (event: { direction: CallDirection }) => void;
  /** At start-up: unfinished calls found in the store, resumed or left alone. */
  callsRestored: (event: { restored: number; skipped: number }) => void;
  /** A call left card state `state` after `durationSeconds` in it (`CALL_STATE_NAMES`; anything else is `other`). */
  stateExited: (event: { state: string; durationSeconds: number }) => void;
  /**
   * The wait for the egress ended. `waitSeconds` is call end → final status; `null` when there
   * was nothing to wait for (no egress was ever started).
   */
  egressSettled: (event: {
    source: EgressSource;
    status: EgressSettlementStatus;
    waitSeconds: number | null;
  }) => void;
  /** The CRM acknowledged the recording upload. */
  recordingUploaded: (event: { sizeBytes: number }) => void;
  /** The call data goes without a recording (recording policy), for this reason. */
  recordingMissing: (event: { reason: MissingRecordingReason }) => void;
  /**
   * One CRM request was attempted. The shape of the CRM client's `onRequest` hook, so
   * `onRequest: recorder.crmRequest` wires it. `code` is the HTTP status or the error code.
   */
  crmRequest: (event: { endpoint: CrmEndpoint; code: string; durationSeconds: number }) => void;
  /** A failed CRM request will be tried again. */
  crmRetry: (event: { endpoint: CrmEndpoint }) => void;
  /** A call reached a final state. */
  callFinished: (event: CallFinished) => void;
  /** An operator re-drove a failed call. */
  callRedriven: () => void;
  /** One write to the call store finished (`ok: false` when it threw). */
  storeWrite: (event: { operation: StoreOperation; durationSeconds: number; ok: boolean }) => void;
  /** The call store stopped (`false`) or resumed (`true`) taking writes. */
  storeAvailability: (event: { available: boolean }) => void;
  /** A LiveKit webhook arrived; `event` is LiveKit's event name (`unknown` when unreadable). */
  webhookReceived: (event: { event: string; result: WebhookResult }) => void;
  /** In a fleet: this instance took over a call whose owner's lease lapsed. */
  callTakenOver: () => void;
  /** In a fleet: a call was dropped here, another instance owns it now. */
  callFenced: () => void;
  /** In a fleet: this instance's lease was renewed, in `seconds` round trip. */
  leaseRenewed: (event: { seconds: number }) => void;
}

export function createMetricsRecorder(metrics: Metrics): MetricsRecorder {
  return {
    callStarted({ direction }) {
      metrics.callsStarted.inc({ direction: oneOf(direction, CALL_DIRECTIONS) });
    },
    callsRestored({ restored, skipped }) {
      const [restoredLabel, skippedLabel] = RESTORE_RESULTS;
      if (isCount(restored)) metrics.callsRestored.inc({ result: restoredLabel }, restored);
      if (isCount(skipped)) metrics.callsRestored.inc({ result: skippedLabel }, skipped);
    },
    stateExited({ state, durationSeconds }) {
      const seconds = duration(durationSeconds);
      if (seconds !== undefined)
        metrics.stateDuration.observe({ state: oneOf(state, CALL_STATE_NAMES) }, seconds);
    },
    egressSettled({ source, status, waitSeconds }) {
      metrics.egressCompletions.inc({
        source: oneOf(source, EGRESS_SOURCES),
        status: oneOf(status, EGRESS_SETTLEMENT_STATUSES),
      });
      const seconds = waitSeconds === null ? undefined : duration(waitSeconds);
      if (seconds !== undefined) metrics.egressWait.observe(seconds);
    },
    recordingUploaded({ sizeBytes }) {
      if (isCount(sizeBytes)) metrics.recordingBytes.observe(sizeBytes);
    },
    recordingMissing({ reason }) {
      metrics.recordingsMissing.inc({ reason: oneOf(reason, MISSING_RECORDING_REASONS) });
    },
    crmRequest({ endpoint, code, durationSeconds }) {
      const seconds = duration(durationSeconds);
      if (seconds === undefined) return;
      metrics.crmRequestDuration.observe(
        { endpoint: oneOf(endpoint, CRM_ENDPOINTS), code: identifier(code) },
        seconds,
      );
    },
    crmRetry({ endpoint }) {
      metrics.crmRetries.inc({ endpoint: oneOf(endpoint, CRM_ENDPOINTS) });
    },
    callFinished(event) {
      if (event.outcome === 'failed') {
        metrics.callsFinished.inc({ outcome: 'failed' });
        return;
      }
      // A delivery whose time is unreadable still finished: it is counted, but not observed,
      // so the SLI (le=30 bucket over finished calls) counts it as a miss, never as a success.
      metrics.callsFinished.inc({ outcome: event.outcome });
      const seconds = duration(event.deliverySeconds);
      if (seconds !== undefined) metrics.deliveryDuration.observe({ outcome: event.outcome }, seconds);
    },
    callRedriven() {
      metrics.callRedrives.inc();
    },
    storeWrite({ operation, durationSeconds, ok }) {
      const label = { operation: oneOf(operation, STORE_OPERATIONS) };
      const seconds = duration(durationSeconds);
      if (seconds !== undefined) metrics.storeWriteDuration.observe(label, seconds);
      if (!ok) metrics.storeWriteErrors.inc(label);
    },
    storeAvailability({ available }) {
      metrics.storeAvailable.set(available ? 1 : 0);
    },
    callTakenOver() {
      metrics.takeovers.inc();
    },
    callFenced() {
      metrics.fencedCalls.inc();
    },
    leaseRenewed({ seconds }) {
      const observed = duration(seconds);
      if (observed !== undefined) metrics.leaseRenewDuration.observe(observed);
    },
    webhookReceived({ event, result }) {
      metrics.webhooks.inc({
        event: event === 'unknown' ? 'unknown' : oneOf(event, LIVEKIT_WEBHOOK_EVENTS),
        result: oneOf(result, WEBHOOK_RESULTS),
      });
    },
  };
}

/** Seconds, clamped at 0; `undefined` for anything that is not a finite number. */
function duration(seconds: number): number | undefined {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return undefined;
  return Math.max(0, seconds);
}

function isCount(value: number): boolean {
  return typeof value === 'number' && Number.isFinite(value) && value > 0;
}

function oneOf<const T extends string>(value: string, allowed: readonly T[]): T | typeof OTHER_LABEL_VALUE {
  return (allowed as readonly string[]).includes(value) ? (value as T) : OTHER_LABEL_VALUE;
}

function identifier(value: string): string {
  return typeof value === 'string' && LABEL_VALUE_PATTERN.test(value) ? value : OTHER_LABEL_VALUE;
}
