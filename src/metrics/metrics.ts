/**
 * callsync's Prometheus metrics, on an injected registry (never prom-client's global one, so
 * tests and embedders each get their own).
 *
 * Bucket policy: the question operators ask is "did the call reach the CRM within the 30 s
 * target?", so the delivery histogram has a bucket at exactly the target (30 by default) and
 * enough resolution below it to see where time goes, and above it to see how late late is.
 * prom-client's default buckets stop at 10 s, useless here.
 */
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';

export const DELIVERY_BUCKETS_SECONDS = [1, 2, 5, 10, 15, 20, 25, 30, 45, 60, 120, 300, 900, 3600, 21600, 86400];
export const EGRESS_WAIT_BUCKETS_SECONDS = [0.5, 1, 2, 5, 10, 15, 20, 25, 30, 45, 60, 120, 300];
export const CRM_REQUEST_BUCKETS_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60];

export type DeliveryOutcome = 'delivered' | 'partial';
export type FinishedOutcome = DeliveryOutcome | 'failed';
export type CrmEndpoint = 'upload' | 'call_data';

export interface MetricsOptions {
  registry: Registry;
  /** Bucket boundary that must exist in the delivery histogram (CALLSYNC_UPLOAD_TARGET_SECONDS). */
  targetSeconds?: number;
  /** Current number of live call actors per state, read at scrape time. */
  activeCallsByState?: () => ReadonlyMap<string, number>;
  /** Process metrics (CPU, memory, event-loop lag); on by default. */
  processMetrics?: boolean;
}

export function createMetrics(options: MetricsOptions) {
  const registers = [options.registry];
  const target = options.targetSeconds ?? 30;
  const deliveryBuckets = [...new Set([...DELIVERY_BUCKETS_SECONDS, target])].sort((a, b) => a - b);
  const activeCallsByState = options.activeCallsByState;

  if (options.processMetrics ?? true) collectDefaultMetrics({ register: options.registry, prefix: 'callsync_' });

  return {
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
        if (!activeCallsByState) return;
        this.reset();
        for (const [state, count] of activeCallsByState()) this.set({ state }, count);
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
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
