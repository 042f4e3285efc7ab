/**
 * callsync's Prometheus metrics, on an injected registry (never prom-client's global one, so
 * tests and embedders each get their own).
 *
 * Two sets live here. The contract's metrics (README, "Monitoring") are what
 * dashboards and alerts outside this repo read: their names, types and labels do not change.
 * The operator metrics beside them answer "where do calls wait?": time in each state, how the
 * egress wait ended (webhook, poll or deadline), recording sizes, store write time, restores at
 * start-up, LiveKit webhooks, and the calls stuck or failed right now.
 *
 * Bucket policy: the question operators ask is "did the call reach the CRM within the 30 s
 * target?", so the delivery histogram has a bucket at exactly the target (30 by default, or
 * whatever `targetSeconds` says) and enough resolution below it to see where time goes, and
 * above it to see how late late is. The SLI is then the `le="30"` bucket over the count, exact
 * and without interpolation. prom-client's default buckets stop at 10 s, useless here.
 *
 * Cardinality policy: no label carries an id (call, room, egress, lead); per-call detail is in
 * the logs and at `GET /v1/calls/{callId}`. Every label has a small closed set of values (see
 * `metrics.recorder.ts`, which folds anything unexpected into `other`).
 *
 * Cost policy: recording an event is O(1). Gauges that describe all live calls (per state, the
 * oldest per state, failed and waiting) are read at scrape time from injected callbacks.
 *
 * Process metrics are prom-client's defaults without a prefix (`process_cpu_seconds_total`,
 * `nodejs_eventloop_lag_p99_seconds`, …): they are the names every Prometheus user and every
 * stock Node.js dashboard expects, and the `job` label already says which service they are from.
 */
import { DELIVERY_TARGET_SECONDS_DEFAULT, MAX_CALL_DURATION_SECONDS_DEFAULT } from '../machines/defaults.ts';
import { MISSING_RECORDING_REASONS } from '../machines/recording-policy.ts';
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';

/** Call end → CRM ack, seconds. Dense around 30; the slow lane (retries for hours) above it. */
export const DELIVERY_BUCKETS_SECONDS = [
  1, 2, 5, 10, 15, 20, 25, 30, 45, 60, 120, 300, 900, 3600, 21600, 86400,
];
/** Call end → egress final, seconds. The egress deadline is 120 s by default. */
export const EGRESS_WAIT_BUCKETS_SECONDS = [0.5, 1, 2, 5, 10, 15, 20, 25, 30, 45, 60, 120, 300];
/** One CRM request, seconds (call-data times out at 10 s, uploads at 20 s plus size allowance). */
export const CRM_REQUEST_BUCKETS_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60];
/** Time spent in one card state, seconds: from sub-second steps to the longest call (4 h by default). */
export const STATE_DURATION_BUCKETS_SECONDS = [
  ...[0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 25, 30, 45, 60, 120, 300, 900, 3600, 7200],
  MAX_CALL_DURATION_SECONDS_DEFAULT,
];
/** One store write, seconds: SQLite in WAL mode is sub-millisecond, PostgreSQL a few ms. */
export const STORE_WRITE_BUCKETS_SECONDS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];
/** Recording size, bytes: 64 KiB to 1 GiB by factors of 4 (Opus at 32 kbit/s is ~240 KiB a minute). */
export const RECORDING_BUCKETS_BYTES = [
  64 * 1024,
  256 * 1024,
  1024 * 1024,
  4 * 1024 * 1024,
  16 * 1024 * 1024,
  64 * 1024 * 1024,
  256 * 1024 * 1024,
  1024 * 1024 * 1024,
];

export const DELIVERY_OUTCOMES = ['delivered', 'partial'] as const;
export const FINISHED_OUTCOMES = ['delivered', 'partial', 'failed'] as const;
export const CRM_ENDPOINTS = ['upload', 'call_data'] as const;
/** How the wait for the egress ended: LiveKit's webhook, a `ListEgress` poll, the deadline, or no egress. */
export const EGRESS_SOURCES = ['webhook', 'poll', 'deadline', 'none'] as const;
export const EGRESS_SETTLEMENT_STATUSES = [
  'complete',
  'failed',
  'aborted',
  'limit_reached',
  'timed_out',
  'not_started',
] as const;
/** `commit`: one group commit (events, snapshots and journal entries of every call in a tick). */
export const STORE_OPERATIONS = ['create_call', 'commit'] as const;
export const CALL_DIRECTIONS = ['inbound', 'outbound'] as const;
/** `restored`: resumed at start-up; `skipped`: left in the store (e.g. an unknown machine version). */
export const RESTORE_RESULTS = ['restored', 'skipped'] as const;
/** `accepted`: acted on; `ignored`: verified but not about a live call; `unauthorized`: bad signature; `invalid`: unreadable. */
export const WEBHOOK_RESULTS = ['accepted', 'ignored', 'unauthorized', 'invalid'] as const;

export type DeliveryOutcome = (typeof DELIVERY_OUTCOMES)[number];
export type FinishedOutcome = (typeof FINISHED_OUTCOMES)[number];
export type CrmEndpoint = (typeof CRM_ENDPOINTS)[number];
export type EgressSource = (typeof EGRESS_SOURCES)[number];
export type EgressSettlementStatus = (typeof EGRESS_SETTLEMENT_STATUSES)[number];
export type StoreOperation = (typeof STORE_OPERATIONS)[number];
export type CallDirection = (typeof CALL_DIRECTIONS)[number];
export type RestoreResult = (typeof RESTORE_RESULTS)[number];
export type WebhookResult = (typeof WEBHOOK_RESULTS)[number];

/** A per-state reading taken at scrape time: state value → number. */
export type StateReading = () => ReadonlyMap<string, number>;

export interface MetricsOptions {
  registry: Registry;
  /** Bucket boundary that must exist in the delivery histogram (`CALLSYNC_UPLOAD_TARGET_SECONDS`). */
  targetSeconds?: number | undefined;
  /** Live call actors per state, read at scrape time (`callsync_calls_active`). */
  activeCallsByState?: StateReading | undefined;
  /**
   * Per state, how long the live call that has been in it longest has been there, seconds, read
   * at scrape time (`callsync_oldest_call_age_seconds`). A stuck call shows here long before it
   * shows in any histogram (which only sees calls that left the state).
   */
  oldestCallAgeSecondsByState?: StateReading | undefined;
  /** Calls that ended `failed` and wait for an operator's `POST /v1/calls/{id}/retry`, read at scrape time. */
  failedCallsWaiting?: (() => number | Promise<number>) | undefined;
  /** Live calls this instance drives, read at scrape time (`callsync_fleet_calls_owned`). */
  callsOwned?: (() => number) | undefined;
  /** Process and Node.js metrics (CPU, memory, handles, GC, event-loop lag); on by default. */
  processMetrics?: boolean | undefined;
  /** Reported in `callsync_build_info{version}`. */
  version?: string | undefined;
}

export function createMetrics(options: MetricsOptions) {
  const registers = [options.registry];
  const target = options.targetSeconds ?? DELIVERY_TARGET_SECONDS_DEFAULT;
  if (!Number.isFinite(target) || target <= 0) {
    throw new RangeError(`targetSeconds must be a positive number of seconds, got ${target}`);
  }
  const deliveryBuckets = [...new Set([...DELIVERY_BUCKETS_SECONDS, target])].sort((a, b) => a - b);
  const { activeCallsByState, oldestCallAgeSecondsByState, failedCallsWaiting, callsOwned } = options;

  if (options.processMetrics ?? true) collectDefaultMetrics({ register: options.registry });

  function readStates(gauge: Gauge<'state'>, reading: StateReading | undefined) {
    if (!reading) return;
    gauge.reset();
    for (const [state, value] of reading()) gauge.set({ state }, value);
  }

  const metrics = {
    // -- The contract's metrics --------------------------------------------------------------
    deliveryDuration: new Histogram({
      name: 'callsync_delivery_duration_seconds',
      help: 'Call end to the CRM acknowledging the call data, by outcome',
      labelNames: ['outcome'] as const,
      buckets: deliveryBuckets,
      registers,
    }),
    callsFinished: new Counter({
      name: 'callsync_calls_finished_total',
      help: 'Calls that reached a final state, by outcome',
      labelNames: ['outcome'] as const,
      registers,
    }),
    callsActive: new Gauge({
      name: 'callsync_calls_active',
      help: 'Live call actors, by state',
      labelNames: ['state'] as const,
      registers,
      collect() {
        readStates(this, activeCallsByState);
      },
    }),
    egressWait: new Histogram({
      name: 'callsync_egress_wait_seconds',
      help: 'Call end to the egress reaching a final status',
      buckets: EGRESS_WAIT_BUCKETS_SECONDS,
      registers,
    }),
    crmRequestDuration: new Histogram({
      name: 'callsync_crm_request_duration_seconds',
      help: 'Each CRM request, by endpoint and HTTP status or error code',
      labelNames: ['endpoint', 'code'] as const,
      buckets: CRM_REQUEST_BUCKETS_SECONDS,
      registers,
    }),
    crmRetries: new Counter({
      name: 'callsync_crm_retries_total',
      help: 'CRM requests that failed and will be retried, by endpoint',
      labelNames: ['endpoint'] as const,
      registers,
    }),

    // -- Operator metrics: where calls wait ---------------------------------------------------
    callsStarted: new Counter({
      name: 'callsync_calls_started_total',
      help: 'Calls accepted by POST /v1/calls (a repeat for the same room is not counted), by direction',
      labelNames: ['direction'] as const,
      registers,
    }),
    stateDuration: new Histogram({
      name: 'callsync_call_state_duration_seconds',
      help: 'Time a call spent in a state of the call machine, observed when it leaves the state',
      labelNames: ['state'] as const,
      buckets: STATE_DURATION_BUCKETS_SECONDS,
      registers,
    }),
    oldestCallAge: new Gauge({
      name: 'callsync_oldest_call_age_seconds',
      help: 'Per state, how long the live call that has been in it longest has been there',
      labelNames: ['state'] as const,
      registers,
      collect() {
        readStates(this, oldestCallAgeSecondsByState);
      },
    }),
    egressCompletions: new Counter({
      name: 'callsync_egress_completions_total',
      help: 'Waits for the egress that ended, by what ended them (webhook, poll, deadline, none) and final status',
      labelNames: ['source', 'status'] as const,
      registers,
    }),
    recordingsMissing: new Counter({
      name: 'callsync_recordings_missing_total',
      help: 'Calls whose call data went to the CRM without a recording, by reason (the call ends partial)',
      labelNames: ['reason'] as const,
      registers,
    }),
    recordingBytes: new Histogram({
      name: 'callsync_recording_bytes',
      help: 'Size of each recording uploaded to the CRM',
      buckets: RECORDING_BUCKETS_BYTES,
      registers,
    }),
    storeWriteDuration: new Histogram({
      name: 'callsync_store_write_duration_seconds',
      help: 'Each write to the call store, by operation',
      labelNames: ['operation'] as const,
      buckets: STORE_WRITE_BUCKETS_SECONDS,
      registers,
    }),
    storeWriteErrors: new Counter({
      name: 'callsync_store_write_errors_total',
      help: 'Writes to the call store that failed, by operation',
      labelNames: ['operation'] as const,
      registers,
    }),
    storeAvailable: new Gauge({
      name: 'callsync_store_available',
      help: '1 while the call store takes writes; 0 while it does not (the API answers 503 STORE_UNAVAILABLE)',
      registers,
    }),
    callsRestored: new Counter({
      name: 'callsync_calls_restored_total',
      help: 'Unfinished calls found in the store at start-up, by result (restored or skipped)',
      labelNames: ['result'] as const,
      registers,
    }),
    callsFailedWaiting: new Gauge({
      name: 'callsync_calls_failed_waiting',
      help: 'Calls that ended failed and wait for an operator to retry them',
      registers,
      async collect() {
        if (failedCallsWaiting) this.set(await failedCallsWaiting());
      },
    }),
    callRedrives: new Counter({
      name: 'callsync_call_redrives_total',
      help: 'Failed calls re-driven by an operator (POST /v1/calls/{callId}/retry)',
      registers,
    }),
    webhooks: new Counter({
      name: 'callsync_webhooks_total',
      help: 'LiveKit webhooks received, by event and result',
      labelNames: ['event', 'result'] as const,
      registers,
    }),
    // -- A fleet (several supervisors on one PostgreSQL) --------------------------------------
    callsOwned: new Gauge({
      name: 'callsync_fleet_calls_owned',
      help: 'Live calls this instance drives (in a fleet, each call is driven by one instance)',
      registers,
      collect() {
        if (callsOwned) this.set(callsOwned());
      },
    }),
    takeovers: new Counter({
      name: 'callsync_fleet_takeovers_total',
      help: 'Calls this instance took over because their owner stopped renewing its lease',
      registers,
    }),
    fencedCalls: new Counter({
      name: 'callsync_fleet_fenced_calls_total',
      help: 'Calls dropped here because another instance owns them now (writes refused, or the lease was lost)',
      registers,
    }),
    leaseRenewDuration: new Histogram({
      name: 'callsync_fleet_lease_renew_duration_seconds',
      help: "Round trip of one renewal of this instance's lease",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    deliveryTarget: new Gauge({
      name: 'callsync_delivery_target_seconds',
      help: 'The configured delivery target after call end (CALLSYNC_UPLOAD_TARGET_SECONDS)',
      registers,
    }),
    buildInfo: new Gauge({
      name: 'callsync_build_info',
      help: 'Always 1; the running callsync version and Node.js version as labels',
      labelNames: ['version', 'node_version'] as const,
      registers,
    }),
  };

  // Series that the SLO rules add and divide exist from the first scrape, at 0: a missing
  // series would make a sum empty (not 0) until the first failed call (Prometheus: "avoid
  // missing metrics").
  for (const outcome of DELIVERY_OUTCOMES) metrics.deliveryDuration.zero({ outcome });
  for (const outcome of FINISHED_OUTCOMES) metrics.callsFinished.inc({ outcome }, 0);
  for (const endpoint of CRM_ENDPOINTS) metrics.crmRetries.inc({ endpoint }, 0);
  for (const direction of CALL_DIRECTIONS) metrics.callsStarted.inc({ direction }, 0);
  for (const result of RESTORE_RESULTS) metrics.callsRestored.inc({ result }, 0);
  for (const operation of STORE_OPERATIONS) metrics.storeWriteErrors.inc({ operation }, 0);
  metrics.storeAvailable.set(1);
  for (const reason of MISSING_RECORDING_REASONS) metrics.recordingsMissing.inc({ reason }, 0);
  metrics.callRedrives.inc(0);
  metrics.takeovers.inc(0);
  metrics.fencedCalls.inc(0);
  metrics.deliveryTarget.set(target);
  metrics.buildInfo.set({ version: options.version ?? 'unknown', node_version: process.version }, 1);

  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
