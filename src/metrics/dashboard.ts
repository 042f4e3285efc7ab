/**
 * The callsync Grafana dashboard, built as plain data. This module is the one source of truth;
 * `grafana/dashboards/callsync.json` is generated from it (`observability.generate.ts`) and a
 * test keeps the two equal, and another test checks every query against the metrics that
 * `createMetrics()` registers and the rules in `slo.ts`.
 *
 * Layout policy: the top row answers the daily question, "are calls reaching the CRM within
 * 30 s, and how much error budget is left?"; the rows below answer "if not, where do they
 * wait?", in the order a call goes: states, egress, CRM, then intake and the process itself.
 *
 * Portability: the datasource is the `${datasource}` template variable (type datasource, any
 * Prometheus), never a hard-coded uid, and the `job` variable selects one callsync or a fleet.
 * The uid is fixed so links and provisioning updates keep pointing at the same dashboard.
 */
import {
  BURN_RATE_ALERTS,
  DELIVERY_SLO_DEFAULTS,
  errorBudget,
  leMatcher,
  promNumber,
  sliRecord,
} from './slo.ts';

export const DASHBOARD_UID = 'callsync-delivery';
export const DASHBOARD_TITLE = 'callsync: calls to CRM';

/** Grafana's width of a dashboard row, in grid units. */
const GRID_WIDTH = 24;

type Unit =
  | 'percentunit'
  | 's'
  | 'short'
  | 'reqps'
  | 'bytes'
  | 'Bps'
  | 'none'
  /** Counts per minute. */
  | 'cpm';

export interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  range?: boolean;
  format?: 'time_series' | 'heatmap' | 'table';
  datasource: DataSourceRef;
}

interface DataSourceRef {
  type: 'prometheus';
  uid: '${datasource}';
}

interface GridPos {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  gridPos: GridPos;
  datasource?: DataSourceRef;
  targets?: Target[];
  fieldConfig?: unknown;
  options?: unknown;
  collapsed?: boolean;
  panels?: Panel[];
}

export interface Dashboard {
  uid: string;
  title: string;
  description: string;
  tags: string[];
  timezone: string;
  editable: boolean;
  graphTooltip: number;
  schemaVersion: number;
  version: number;
  refresh: string;
  time: { from: string; to: string };
  templating: { list: unknown[] };
  annotations: { list: unknown[] };
  links: unknown[];
  panels: Panel[];
}

const datasource: DataSourceRef = { type: 'prometheus', uid: '${datasource}' };
const job = 'job=~"$job"';

interface Query {
  expr: string;
  legend?: string;
  instant?: boolean;
  format?: Target['format'];
}

interface PanelSpec {
  type: 'stat' | 'gauge' | 'timeseries' | 'heatmap' | 'bargauge';
  title: string;
  description: string;
  queries: Query[];
  unit: Unit;
  /** Grid units wide. */
  w: number;
  /** Grid units high; 8 by default. */
  h?: number;
  thresholds?: { color: string; value: number | null }[];
  min?: number;
  max?: number;
  decimals?: number;
  /** Draw the thresholds as lines on a time series (e.g. the 30 s target). */
  thresholdLines?: boolean;
  stack?: boolean;
}

interface RowSpec {
  title: string;
  panels: PanelSpec[];
}

const green = (value: number | null = null) => ({ color: 'green', value });
const red = (value: number | null = null) => ({ color: 'red', value });
const orange = (value: number) => ({ color: 'orange', value });

function quantiles(metric: string, by: string[], legendPrefix = ''): Query[] {
  const labels = ['le', ...by].join(', ');
  const legendLabels = by.map((label) => `{{${label}}}`).join(' ');
  return [0.5, 0.95, 0.99].map((q) => ({
    expr: `histogram_quantile(${q}, sum by (${labels}) (rate(${metric}_bucket{${job}}[$__rate_interval])))`,
    legend: `${legendPrefix}${legendLabels === '' ? '' : `${legendLabels} `}p${Math.round(q * 100)}`.trim(),
  }));
}

export function buildDashboard(): Dashboard {
  const slo = DELIVERY_SLO_DEFAULTS;
  const target = promNumber(slo.targetSeconds);
  const budget = errorBudget(slo);
  const objectivePercent = promNumber(slo.objective * 100);
  const withinTarget = `sum(increase(callsync_delivery_duration_seconds_bucket{${job}, ${leMatcher(slo.targetSeconds)}}[$__range]))`;
  const finishedInRange = `sum(increase(callsync_calls_finished_total{${job}}[$__range]))`;
  const targetLine = [green(), red(slo.targetSeconds)];

  const rows: RowSpec[] = [
    {
      title: `Delivery SLO: ${objectivePercent} % of calls in the CRM within ${target} s`,
      panels: [
        {
          type: 'stat',
          title: `Delivered within ${target} s (time range)`,
          description: `Share of the calls that finished in the selected time range whose call data the CRM acknowledged within ${target} s of hang-up. Failed calls count as misses.`,
          queries: [{ expr: `${withinTarget} / ${finishedInRange}`, instant: true }],
          unit: 'percentunit',
          decimals: 2,
          thresholds: [red(), orange(slo.objective - budget), green(slo.objective)],
          w: 5,
        },
        {
          type: 'stat',
          title: `Delivered within ${target} s (${slo.periodDays} d)`,
          description: `The SLI over the SLO period, from the recording rule ${sliRecord.errorRatio('30d')}.`,
          queries: [
            {
              expr: `1 - ${sliRecord.errorRatio('30d')}{${job}}`,
              legend: '{{job}}',
              instant: true,
            },
          ],
          unit: 'percentunit',
          decimals: 2,
          thresholds: [red(), green(slo.objective)],
          w: 5,
        },
        {
          type: 'gauge',
          title: `Error budget left (${slo.periodDays} d)`,
          description: `The share of the ${slo.periodDays}-day error budget (${promNumber(budget * 100)} % of calls late or failed) not yet used. Below 0 the SLO is missed.`,
          queries: [{ expr: `${sliRecord.budgetRemaining}{${job}}`, legend: '{{job}}', instant: true }],
          unit: 'percentunit',
          min: 0,
          max: 1,
          decimals: 1,
          thresholds: [red(), orange(0.25), green(0.5)],
          w: 4,
        },
        {
          type: 'timeseries',
          title: 'Error budget burn rate',
          description: `How fast the budget burns (1 = exactly on budget). Alerts: ${BURN_RATE_ALERTS.map((a) => `${a.burnRate}× over ${a.longWindow} (${a.severity})`).join(', ')}.`,
          queries: BURN_RATE_ALERTS.map((a) => ({
            expr: `${sliRecord.errorRatio(a.longWindow)}{${job}} / ${promNumber(budget)}`,
            legend: `{{job}} ${a.longWindow}`,
          })),
          unit: 'short',
          thresholds: [green(), orange(1), red(6)],
          thresholdLines: true,
          w: 10,
        },
      ],
    },
    {
      title: 'Delivery latency and outcomes',
      panels: [
        {
          type: 'timeseries',
          title: 'Delivery latency (call end → CRM ack)',
          description: `Percentiles of callsync_delivery_duration_seconds; the red line is the ${target} s target. Estimated within buckets; the SLI itself is exact.`,
          queries: quantiles('callsync_delivery_duration_seconds', []),
          unit: 's',
          thresholds: targetLine,
          thresholdLines: true,
          w: 8,
        },
        {
          type: 'heatmap',
          title: 'Delivery latency heatmap',
          description: 'Calls delivered per latency bucket.',
          queries: [
            {
              expr: `sum by (le) (increase(callsync_delivery_duration_seconds_bucket{${job}}[$__rate_interval]))`,
              legend: '{{le}}',
              format: 'heatmap',
            },
          ],
          unit: 's',
          w: 8,
        },
        {
          type: 'timeseries',
          title: 'Finished calls by outcome',
          description:
            'Calls reaching a final state per minute: delivered, partial (call data without a recording), failed (waits for an operator).',
          queries: [
            {
              expr: `sum by (outcome) (rate(callsync_calls_finished_total{${job}}[$__rate_interval])) * 60`,
              legend: '{{outcome}}',
            },
          ],
          unit: 'cpm',
          stack: true,
          w: 8,
        },
      ],
    },
    {
      title: 'Where calls wait',
      panels: [
        {
          type: 'bargauge',
          title: 'Calls by state now',
          description: 'Live call actors per state of the call machine.',
          queries: [
            {
              expr: `sum by (state) (callsync_calls_active{${job}})`,
              legend: '{{state}}',
              instant: true,
            },
          ],
          unit: 'short',
          w: 6,
        },
        {
          type: 'timeseries',
          title: 'Time in state (p95)',
          description: 'How long calls stay in each state, observed when they leave it.',
          queries: [
            {
              expr: `histogram_quantile(0.95, sum by (le, state) (rate(callsync_call_state_duration_seconds_bucket{${job}}[$__rate_interval])))`,
              legend: '{{state}}',
            },
          ],
          unit: 's',
          w: 6,
        },
        {
          type: 'timeseries',
          title: 'Oldest call per state',
          description:
            'How long the call that has been in each state longest has been there. A line that only climbs is a stuck call.',
          queries: [
            {
              expr: `max by (state) (callsync_oldest_call_age_seconds{${job}})`,
              legend: '{{state}}',
            },
          ],
          unit: 's',
          w: 6,
        },
        {
          type: 'stat',
          title: 'Failed calls waiting for a retry',
          description:
            'Calls that ended failed and wait for an operator: GET /v1/calls?state=failed, then POST /v1/calls/{callId}/retry.',
          queries: [{ expr: `max(callsync_calls_failed_waiting{${job}})`, instant: true }],
          unit: 'short',
          thresholds: [green(), red(1)],
          w: 6,
        },
      ],
    },
    {
      title: 'Egress (the recording)',
      panels: [
        {
          type: 'timeseries',
          title: 'Egress wait (call end → egress final)',
          description:
            'The biggest unknown in the 30 s budget: how long LiveKit takes to finish the recording.',
          queries: quantiles('callsync_egress_wait_seconds', []),
          unit: 's',
          thresholds: targetLine,
          thresholdLines: true,
          w: 8,
        },
        {
          type: 'timeseries',
          title: 'What ended the egress wait',
          description:
            'webhook: LiveKit told us; poll: ListEgress found it first (webhooks late or lost); deadline: we gave up waiting; none: no egress was started.',
          queries: [
            {
              expr: `sum by (source) (rate(callsync_egress_completions_total{${job}}[$__rate_interval])) * 60`,
              legend: '{{source}}',
            },
          ],
          unit: 'cpm',
          stack: true,
          w: 8,
        },
        {
          type: 'timeseries',
          title: 'Egress final status',
          description:
            'complete and limit_reached carry a recording (and a failed one that still uploaded a file); the others deliver the call data without one.',
          queries: [
            {
              expr: `sum by (status) (rate(callsync_egress_completions_total{${job}}[$__rate_interval])) * 60`,
              legend: '{{status}}',
            },
          ],
          unit: 'cpm',
          stack: true,
          w: 4,
        },
        {
          type: 'timeseries',
          title: 'Call data sent without a recording, by reason',
          description:
            'Each such call ends partial: the egress gave no file, the file could not be used (missing, not Ogg, outside the root, refused by or unreachable in the storage), or the CRM refused the upload.',
          queries: [
            {
              expr: `sum by (reason) (rate(callsync_recordings_missing_total{${job}}[$__rate_interval])) * 60`,
              legend: '{{reason}}',
            },
          ],
          unit: 'cpm',
          stack: true,
          w: 4,
        },
      ],
    },
    {
      title: 'CRM',
      panels: [
        {
          type: 'timeseries',
          title: 'CRM requests by endpoint and code',
          description:
            'Every CRM request, by endpoint and HTTP status (or error code when there was no answer).',
          queries: [
            {
              expr: `sum by (endpoint, code) (rate(callsync_crm_request_duration_seconds_count{${job}}[$__rate_interval]))`,
              legend: '{{endpoint}} {{code}}',
            },
          ],
          unit: 'reqps',
          w: 6,
        },
        {
          type: 'timeseries',
          title: 'CRM latency by endpoint',
          description: 'Percentiles of each CRM request, by endpoint.',
          queries: quantiles('callsync_crm_request_duration_seconds', ['endpoint']),
          unit: 's',
          w: 6,
        },
        {
          type: 'timeseries',
          title: 'CRM errors by endpoint and code',
          description:
            'Requests without a 2xx answer: 408, 429, 5xx and network errors are retried; other 4xx fail the call.',
          queries: [
            {
              expr: `sum by (endpoint, code) (rate(callsync_crm_request_duration_seconds_count{${job}, code!~"2.."}[$__rate_interval]))`,
              legend: '{{endpoint}} {{code}}',
            },
          ],
          unit: 'reqps',
          w: 6,
        },
        {
          type: 'timeseries',
          title: 'Retries',
          description: 'CRM requests retried, by endpoint, and failed calls re-driven by an operator.',
          queries: [
            {
              expr: `sum by (endpoint) (rate(callsync_crm_retries_total{${job}}[$__rate_interval])) * 60`,
              legend: '{{endpoint}}',
            },
            {
              expr: `sum(rate(callsync_call_redrives_total{${job}}[$__rate_interval])) * 60`,
              legend: 'operator re-drives',
            },
          ],
          unit: 'cpm',
          w: 6,
        },
      ],
    },
    {
      title: 'Intake, store and process',
      panels: [
        {
          type: 'timeseries',
          title: 'Calls started and LiveKit webhooks',
          description: 'Calls accepted by POST /v1/calls, and LiveKit webhooks by event and result.',
          queries: [
            {
              expr: `sum by (direction) (rate(callsync_calls_started_total{${job}}[$__rate_interval])) * 60`,
              legend: 'started {{direction}}',
            },
            {
              expr: `sum by (event, result) (rate(callsync_webhooks_total{${job}}[$__rate_interval])) * 60`,
              legend: 'webhook {{event}} {{result}}',
            },
          ],
          unit: 'cpm',
          w: 6,
        },
        {
          type: 'timeseries',
          title: 'Recording size and upload throughput',
          description:
            'Median and p95 recording size, and recording bytes acknowledged by the CRM per second.',
          queries: [
            {
              expr: `histogram_quantile(0.5, sum by (le) (rate(callsync_recording_bytes_bucket{${job}}[$__rate_interval])))`,
              legend: 'size p50',
            },
            {
              expr: `histogram_quantile(0.95, sum by (le) (rate(callsync_recording_bytes_bucket{${job}}[$__rate_interval])))`,
              legend: 'size p95',
            },
            {
              expr: `sum(rate(callsync_recording_bytes_sum{${job}}[$__rate_interval]))`,
              legend: 'bytes/s uploaded',
            },
          ],
          unit: 'bytes',
          w: 6,
        },
        {
          type: 'timeseries',
          title: 'Store commits (p99), errors and availability',
          description:
            'Every accepted event is committed (one group commit per tick) before the API answers; slow commits delay every answer. ' +
            'Availability 0: the API answers 503 STORE_UNAVAILABLE.',
          queries: [
            {
              expr: `histogram_quantile(0.99, sum by (le, operation) (rate(callsync_store_write_duration_seconds_bucket{${job}}[$__rate_interval])))`,
              legend: '{{operation}} p99',
            },
            {
              expr: `sum by (operation) (rate(callsync_store_write_errors_total{${job}}[$__rate_interval]))`,
              legend: '{{operation}} errors/s',
            },
            {
              expr: `min(callsync_store_available{${job}})`,
              legend: 'store available (1/0)',
            },
          ],
          unit: 's',
          w: 6,
        },
        {
          type: 'stat',
          title: 'Calls restored at start-up (time range)',
          description:
            'Unfinished calls found in the store when callsync started: restored, or skipped (unknown machine version).',
          queries: [
            {
              expr: `sum by (result) (increase(callsync_calls_restored_total{${job}}[$__range]))`,
              legend: '{{result}}',
              instant: true,
            },
          ],
          unit: 'short',
          decimals: 0,
          w: 6,
        },
        {
          type: 'timeseries',
          title: 'Event-loop lag',
          description: 'A blocked event loop delays every timer, webhook and upload at once.',
          queries: [
            {
              expr: `max by (instance) (nodejs_eventloop_lag_p99_seconds{${job}})`,
              legend: '{{instance}} p99',
            },
            {
              expr: `max by (instance) (nodejs_eventloop_lag_mean_seconds{${job}})`,
              legend: '{{instance}} mean',
            },
          ],
          unit: 's',
          w: 8,
        },
        {
          type: 'timeseries',
          title: 'CPU',
          description: 'CPU seconds per second used by each callsync process.',
          queries: [
            {
              expr: `sum by (instance) (rate(process_cpu_seconds_total{${job}}[$__rate_interval]))`,
              legend: '{{instance}}',
            },
          ],
          unit: 'short',
          w: 8,
        },
        {
          type: 'timeseries',
          title: 'Memory',
          description: 'Resident set and V8 heap used, per process.',
          queries: [
            {
              expr: `sum by (instance) (process_resident_memory_bytes{${job}})`,
              legend: '{{instance}} resident',
            },
            {
              expr: `sum by (instance) (nodejs_heap_size_used_bytes{${job}})`,
              legend: '{{instance}} heap used',
            },
          ],
          unit: 'bytes',
          w: 8,
        },
      ],
    },
  ];

  return {
    uid: DASHBOARD_UID,
    title: DASHBOARD_TITLE,
    description: `Are calls reaching the CRM within ${target} s of hang-up, and if not, where do they wait? Generated from src/metrics/dashboard.ts.`,
    tags: ['callsync', 'livekit', 'slo'],
    timezone: 'browser',
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: { from: 'now-6h', to: 'now' },
    templating: {
      list: [
        {
          name: 'datasource',
          label: 'Data source',
          type: 'datasource',
          query: 'prometheus',
          current: {},
          hide: 0,
          refresh: 1,
          regex: '',
          options: [],
        },
        {
          name: 'job',
          label: 'Job',
          type: 'query',
          datasource,
          definition: 'label_values(callsync_calls_finished_total, job)',
          query: { query: 'label_values(callsync_calls_finished_total, job)', refId: 'job' },
          current: { selected: true, text: ['All'], value: ['$__all'] },
          hide: 0,
          includeAll: true,
          allValue: '.*',
          multi: true,
          refresh: 2,
          regex: '',
          sort: 1,
          options: [],
        },
      ],
    },
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
      ],
    },
    links: [],
    panels: layout(rows),
  };
}

/** Places rows top to bottom and each row's panels left to right, wrapping at the grid width. */
function layout(rows: RowSpec[]): Panel[] {
  const panels: Panel[] = [];
  let id = 1;
  let y = 0;
  for (const row of rows) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.title,
      collapsed: false,
      gridPos: { x: 0, y, w: GRID_WIDTH, h: 1 },
      panels: [],
    });
    y += 1;
    let x = 0;
    let rowHeight = 0;
    for (const spec of row.panels) {
      const h = spec.h ?? 8;
      if (x + spec.w > GRID_WIDTH) {
        x = 0;
        y += rowHeight;
        rowHeight = 0;
      }
      panels.push(panel(id++, spec, { x, y, w: spec.w, h }));
      x += spec.w;
      rowHeight = Math.max(rowHeight, h);
    }
    y += rowHeight;
  }
  return panels;
}

function panel(id: number, spec: PanelSpec, gridPos: GridPos): Panel {
  const refIds = 'ABCDEFGHIJ';
  const targets: Target[] = spec.queries.map((query, index) => ({
    refId: refIds[index] ?? `Q${index}`,
    datasource,
    expr: query.expr,
    ...(query.legend === undefined ? {} : { legendFormat: query.legend }),
    ...(query.instant ? { instant: true, range: false } : { range: true }),
    ...(query.format === undefined ? {} : { format: query.format }),
  }));
  const thresholds = {
    mode: 'absolute',
    steps: spec.thresholds ?? [green()],
  };
  const defaults: Record<string, unknown> = {
    unit: spec.unit,
    thresholds,
    ...(spec.min === undefined ? {} : { min: spec.min }),
    ...(spec.max === undefined ? {} : { max: spec.max }),
    ...(spec.decimals === undefined ? {} : { decimals: spec.decimals }),
  };
  let options: unknown;
  switch (spec.type) {
    case 'timeseries':
      defaults.color = { mode: 'palette-classic' };
      defaults.custom = {
        drawStyle: 'line',
        lineWidth: 1,
        fillOpacity: spec.stack ? 30 : 10,
        showPoints: 'never',
        spanNulls: false,
        stacking: { mode: spec.stack ? 'normal' : 'none', group: 'A' },
        thresholdsStyle: { mode: spec.thresholdLines ? 'line' : 'off' },
      };
      options = {
        legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
        tooltip: { mode: 'multi', sort: 'desc' },
      };
      break;
    case 'stat':
      defaults.color = { mode: 'thresholds' };
      options = {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        colorMode: 'background',
        graphMode: 'none',
        justifyMode: 'auto',
        orientation: 'auto',
        textMode: 'auto',
      };
      break;
    case 'gauge':
      defaults.color = { mode: 'thresholds' };
      options = {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        showThresholdLabels: false,
        showThresholdMarkers: true,
      };
      break;
    case 'bargauge':
      defaults.color = { mode: 'palette-classic' };
      options = {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        orientation: 'horizontal',
        displayMode: 'gradient',
        showUnfilled: true,
      };
      break;
    case 'heatmap':
      options = {
        calculate: false,
        cellGap: 1,
        color: { mode: 'scheme', scheme: 'Oranges', steps: 64, exponent: 0.5, fill: 'dark-orange' },
        yAxis: { axisPlacement: 'left', unit: spec.unit },
        rowsFrame: { layout: 'auto' },
        tooltip: { mode: 'single', yHistogram: true, showColorScale: true },
        legend: { show: true },
        cellValues: { unit: 'short' },
        filterValues: { le: 1e-9 },
      };
      break;
  }
  return {
    id,
    type: spec.type,
    title: spec.title,
    description: spec.description,
    gridPos,
    datasource,
    targets,
    fieldConfig: { defaults, overrides: [] },
    options,
  };
}
