/**
 * The delivery SLO and the Prometheus rules that watch it: recording rules for the SLI over
 * every window the alerts read, multi-window multi-burn-rate alerts (Google SRE workbook,
 * "Alerting on SLOs"), and the operational alerts the SLO cannot see. This module is the one
 * source of truth; `prometheus/rules/callsync.rules.yml` is generated from it
 * (`observability.generate.ts`) and a test keeps the two equal.
 *
 * SLI: the share of calls that reached a final state whose call data the CRM acknowledged
 * within the target (30 s) of call end. Good events: the `le="30"` bucket of
 * `callsync_delivery_duration_seconds` (delivered or partial). Valid events:
 * `callsync_calls_finished_total`, all outcomes, so a failed call is a bad event (it counts in
 * the denominator and never in the numerator). The recorder guarantees that every delivered or
 * partial finish is also observed in the histogram.
 *
 * SLO: 99 % over 30 days, so the error budget is 1 % of calls.
 *
 * Alert policy (workbook table 5-8): page at 14.4× burn over 1 h and 5 m (2 % of the monthly
 * budget in an hour), page at 6× over 6 h and 30 m (5 % in 6 h), ticket at 1× over 3 d and 6 h
 * (10 % in 3 days). The long window says the burn is significant, the short one that it is
 * still happening, so an alert resolves minutes after the problem does. A voice bot makes few
 * calls, and with 3 calls in an hour one late call is a 33 % error ratio, so every SLO alert
 * also needs `minCallsInLongWindow` finished calls in its long window before it may fire.
 *
 * What the SLI cannot see: calls that have not finished. A call stuck awaiting its egress
 * never reaches a final state, so it never burns budget; `CallsyncCallsStuckAwaitingEgress`
 * watches it directly. A failed call has burned its budget already, but still needs an
 * operator: `CallsyncCallsFailedWaiting`. And with callsync down there is no SLI at all:
 * `CallsyncDown`.
 *
 * Compatibility: Prometheus 3 normalises classic-histogram `le` values to floats (`le="30.0"`),
 * 2.x keeps what the client exposed (`le="30"`), so the rules match both.
 *
 * Numbers the service also uses (the target, the egress deadline) come from
 * `machines/defaults.ts`, and state label values from the call machine's tags
 * (`machines/call.states.ts`), so the rules watch what the service does.
 */
import type { CallStateName } from '../machines/call.events.ts';
import { callStateOf } from '../machines/call.states.ts';
import { DELIVERY_TARGET_SECONDS_DEFAULT, EGRESS_DEADLINE_SECONDS_DEFAULT } from '../machines/defaults.ts';

export interface RecordingRule {
  record: string;
  expr: string;
  labels?: Record<string, string>;
}

export interface AlertRule {
  alert: string;
  expr: string;
  /** Prometheus duration; omitted when the alert must fire on its first evaluation. */
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export type Rule = RecordingRule | AlertRule;

export interface RuleGroup {
  name: string;
  rules: Rule[];
}

export interface DeliverySloOptions {
  /** Delivery target after call end, seconds; must be a bucket of the delivery histogram. */
  targetSeconds: number;
  /** Share of valid calls that must be good over `periodDays`, e.g. 0.99. */
  objective: number;
  /** The SLO period, days. */
  periodDays: number;
  /** An SLO alert needs at least this many finished calls in its long window. */
  minCallsInLongWindow: number;
  /** The `job` label Prometheus scrapes callsync under (for `CallsyncDown`). */
  job: string;
  /** The card state of "call ended, waiting for the egress's final status" (a `state` label value). */
  awaitingEgressState: CallStateName;
  /**
   * A call waiting for its egress longer than this is stuck, seconds. The egress deadline
   * (120 s by default) settles every wait before then; a call still waiting a minute after it
   * means the deadline timer did not fire.
   */
  stuckAwaitingEgressSeconds: number;
}

/** A call still awaiting its egress this long after the deadline should have settled it is stuck. */
const STUCK_AFTER_DEADLINE_SECONDS = 60;

export const DELIVERY_SLO_DEFAULTS: Readonly<DeliverySloOptions> = Object.freeze({
  targetSeconds: DELIVERY_TARGET_SECONDS_DEFAULT,
  objective: 0.99,
  periodDays: 30,
  minCallsInLongWindow: 20,
  job: 'callsync',
  // The card tag of the machine's node that waits for the egress (and holds its deadline).
  awaitingEgressState: callStateOf({ active: { live: 'awaitingEgress' } }),
  stuckAwaitingEgressSeconds: EGRESS_DEADLINE_SECONDS_DEFAULT + STUCK_AFTER_DEADLINE_SECONDS,
});

/** The windows the recording rules compute the SLI over (all the alerts' windows). */
export const SLI_WINDOWS = ['5m', '30m', '1h', '6h', '3d'] as const;
export type SliWindow = (typeof SLI_WINDOWS)[number];

export interface BurnRateAlert {
  alert: string;
  severity: 'page' | 'ticket';
  burnRate: number;
  longWindow: SliWindow;
  shortWindow: SliWindow;
  /** Share of the period's error budget this alert's long window consumes at `burnRate`. */
  budgetConsumed: string;
}

/** Google SRE workbook, "Alerting on SLOs", table 5-8. */
export const BURN_RATE_ALERTS: readonly BurnRateAlert[] = [
  {
    alert: 'CallsyncDeliveryBudgetFastBurn',
    severity: 'page',
    burnRate: 14.4,
    longWindow: '1h',
    shortWindow: '5m',
    budgetConsumed: '2 %',
  },
  {
    alert: 'CallsyncDeliveryBudgetSlowBurn',
    severity: 'page',
    burnRate: 6,
    longWindow: '6h',
    shortWindow: '30m',
    budgetConsumed: '5 %',
  },
  {
    alert: 'CallsyncDeliveryBudgetBurn',
    severity: 'ticket',
    burnRate: 1,
    longWindow: '3d',
    shortWindow: '6h',
    budgetConsumed: '10 %',
  },
];

/** Names of the recording rules, for the dashboard and the tests. */
export const sliRecord = {
  calls: (window: SliWindow) => `callsync:delivery_calls:rate${window}`,
  good: (window: SliWindow) => `callsync:delivery_good:rate${window}`,
  errorRatio: (window: SliWindow | '30d') => `callsync:delivery_error:ratio_rate${window}`,
  budgetRemaining: 'callsync:delivery_error_budget:remaining_ratio30d',
} as const;

const SECONDS_PER: Record<string, number> = { m: 60, h: 3600, d: 86400 };

/** Seconds in a Prometheus duration like `5m`, `6h`, `3d`. */
export function windowSeconds(window: string): number {
  const match = /^(\d+)([mhd])$/.exec(window);
  const unit = match?.[2] === undefined ? undefined : SECONDS_PER[match[2]];
  if (match?.[1] === undefined || unit === undefined) throw new RangeError(`unsupported window ${window}`);
  return Number(match[1]) * unit;
}

/** A number as PromQL should read it: `0.144`, not `0.14400000000000002`. */
export function promNumber(value: number): string {
  return String(Number(value.toPrecision(6)));
}

/**
 * A matcher for the histogram bucket at `seconds`, in both the 2.x (`30`) and 3.x (`30.0`)
 * spelling of `le`.
 */
export function leMatcher(seconds: number): string {
  const exposed = String(seconds);
  const escaped = exposed.replace(/\./g, '\\\\.');
  return Number.isInteger(seconds) ? `le=~"${escaped}(\\\\.0)?"` : `le=~"${escaped}"`;
}

export function errorBudget(options: Pick<DeliverySloOptions, 'objective'>): number {
  return Number((1 - options.objective).toPrecision(6));
}

export function buildRuleGroups(overrides: Partial<DeliverySloOptions> = {}): RuleGroup[] {
  const o: DeliverySloOptions = { ...DELIVERY_SLO_DEFAULTS, ...overrides };
  if (!(o.objective > 0 && o.objective < 1))
    throw new RangeError(`objective must be in (0, 1), got ${o.objective}`);
  const budget = errorBudget(o);
  const period = `${o.periodDays}d`;
  const sloLabels = { slo: 'callsync-delivery', objective: promNumber(o.objective) };
  const target = promNumber(o.targetSeconds);
  const objectivePercent = promNumber(o.objective * 100);

  const sli: RecordingRule[] = SLI_WINDOWS.flatMap((window) => [
    {
      record: sliRecord.calls(window),
      expr: `sum by (job) (rate(callsync_calls_finished_total[${window}]))`,
    },
    {
      record: sliRecord.good(window),
      expr: `sum by (job) (rate(callsync_delivery_duration_seconds_bucket{${leMatcher(o.targetSeconds)}}[${window}]))`,
    },
    {
      record: sliRecord.errorRatio(window),
      expr: `1 - ${sliRecord.good(window)} / ${sliRecord.calls(window)}`,
      labels: sloLabels,
    },
  ]);

  // Over the whole period, averaging the 5 m rates weighs every 5 minutes equally, as a
  // ratio of counts would, at a fraction of the cost of a raw 30 d rate.
  const period30d: RecordingRule[] = [
    {
      record: sliRecord.errorRatio('30d'),
      expr: [
        `1 - sum_over_time(${sliRecord.good('5m')}[${period}])`,
        `  / sum_over_time(${sliRecord.calls('5m')}[${period}])`,
      ].join('\n'),
      labels: sloLabels,
    },
    {
      record: sliRecord.budgetRemaining,
      expr: `1 - ${sliRecord.errorRatio('30d')} / ${promNumber(budget)}`,
      labels: sloLabels,
    },
  ];

  const burnAlerts: AlertRule[] = BURN_RATE_ALERTS.map((spec) => {
    const threshold = promNumber(spec.burnRate * budget);
    return {
      alert: spec.alert,
      expr: [
        `(`,
        `  ${sliRecord.errorRatio(spec.longWindow)} > ${threshold}`,
        `  and`,
        `  ${sliRecord.errorRatio(spec.shortWindow)} > ${threshold}`,
        `)`,
        `# Too few calls to judge: with a handful, one late call is a huge ratio.`,
        `and on (job)`,
        `${sliRecord.calls(spec.longWindow)} * ${windowSeconds(spec.longWindow)} >= ${o.minCallsInLongWindow}`,
      ].join('\n'),
      labels: { severity: spec.severity, ...sloLabels, window: spec.longWindow },
      annotations: {
        summary: `The delivery error budget is burning at ${promNumber(spec.burnRate)}× the sustainable rate or faster (${objectivePercent} % of calls in the CRM within ${target} s)`,
        description:
          `{{ $value | humanizePercentage }} of the calls of {{ $labels.job }} that finished in the last ${spec.longWindow} ` +
          `(and ${spec.shortWindow}) were failed or reached the CRM more than ${target} s after hang-up; ` +
          `at this rate ${spec.budgetConsumed} of the ${period} error budget goes in ${spec.longWindow}. ` +
          `See the dashboard's "Where calls wait" row.`,
      },
    };
  });

  const awaitingEgress = `state="${o.awaitingEgressState}"`;
  const operational: AlertRule[] = [
    {
      alert: 'CallsyncCallsStuckAwaitingEgress',
      expr: [
        `# A call has waited for its egress longer than the deadline allows…`,
        `max by (job) (callsync_oldest_call_age_seconds{${awaitingEgress}}) > ${o.stuckAwaitingEgressSeconds}`,
        `or`,
        `# …or calls wait and no egress wait has ended (webhook, poll or deadline) for 5 minutes.`,
        `(`,
        `  sum by (job) (callsync_calls_active{${awaitingEgress}}) > 0`,
        `  unless`,
        `  sum by (job) (increase(callsync_egress_completions_total[5m])) > 0`,
        `)`,
      ].join('\n'),
      for: '2m',
      labels: { severity: 'page' },
      annotations: {
        summary: 'Calls are stuck waiting for their LiveKit egress',
        description:
          `{{ $labels.job }}: calls in ${o.awaitingEgressState} are not leaving it: one has waited more than ` +
          `${o.stuckAwaitingEgressSeconds} s, or none has left for 5 minutes while some wait. The egress deadline should ` +
          `settle every wait; until these calls move they do not reach the CRM, and the SLO cannot see them.`,
      },
    },
    {
      alert: 'CallsyncCallsFailedWaiting',
      expr: `max by (job) (callsync_calls_failed_waiting) > 0`,
      for: '5m',
      labels: { severity: 'ticket' },
      annotations: {
        summary: 'Failed calls are waiting for an operator',
        description:
          '{{ $value }} call(s) of {{ $labels.job }} ended failed (the CRM refused them or retries ran out). ' +
          'Find them with GET /v1/calls?state=failed, fix the cause, then POST /v1/calls/{callId}/retry.',
      },
    },
    {
      // A recording never holds back the call data, so a storage misconfiguration (wrong
      // bucket, key or volume) shows nowhere in the SLO: every call is still delivered, partial.
      alert: 'CallsyncRecordingsUnreadable',
      expr: `sum by (job) (increase(callsync_recordings_missing_total{reason=~"${RECORDING_STORAGE_REASONS.join('|')}"}[15m])) > 0`,
      for: '5m',
      labels: { severity: 'ticket' },
      annotations: {
        summary: 'Calls reach the CRM without their recording: the recording storage cannot be read',
        description:
          '{{ $labels.job }}: {{ $value | humanize }} call(s) in 15 minutes went to the CRM without a recording because ' +
          'callsync could not read it (missing, outside the recordings directory, refused by or unreachable in the store). ' +
          "Check CALLSYNC_EGRESS_STORAGE and its settings, /readyz, and the calls' recording_missing journal entries.",
      },
    },
    {
      // The API answers 503 STORE_UNAVAILABLE meanwhile: agents and LiveKit retry, nothing accepted
      // is lost, but new calls and events wait. A minute rides out a failover or a restart.
      alert: 'CallsyncStoreUnavailable',
      expr: `max by (job, instance) (callsync_store_available) == 0`,
      for: '1m',
      labels: { severity: 'page' },
      annotations: {
        summary: 'callsync cannot write to its call store',
        description:
          '{{ $labels.instance }} (job {{ $labels.job }}) has not been able to write to CALLSYNC_STORE for over a minute: ' +
          'the API answers 503 STORE_UNAVAILABLE and /readyz 503. Its own writes are kept and retried; ' +
          'check the database (reachable, answering, disk space, locks) and callsync_store_write_errors_total.',
      },
    },
    {
      alert: 'CallsyncDown',
      expr: [`up{job="${o.job}"} == 0`, `or`, `absent(up{job="${o.job}"})`].join('\n'),
      for: '2m',
      labels: { severity: 'page' },
      annotations: {
        summary: 'Prometheus cannot scrape callsync',
        description:
          'callsync{{ with $labels.instance }} at {{ . }}{{ end }} (job {{ $labels.job }}) is down or missing from Prometheus. ' +
          'While it is, calls are not delivered and the delivery SLO alerts have no data to fire on.',
      },
    },
  ];

  return [
    { name: 'callsync-delivery-sli', rules: [...sli, ...period30d] },
    { name: 'callsync-delivery-slo-alerts', rules: burnAlerts },
    { name: 'callsync-operations-alerts', rules: operational },
  ];
}

/** `callsync_recordings_missing_total` reasons that say the storage, not the egress or the CRM, failed. */
const RECORDING_STORAGE_REASONS = [
  'file_missing',
  'file_outside_root',
  'storage_refused',
  'storage_unavailable',
];

export function isAlertRule(rule: Rule): rule is AlertRule {
  return 'alert' in rule;
}
