/**
 * The committed observability artifacts: the rules YAML and the dashboard JSON are exactly what
 * their TypeScript sources render (one source of truth), the dashboard has the panels the issue
 * asks for on a `${datasource}` variable, the provisioning files point at it, and the SLO rules
 * follow the policy in `slo.ts` for any target and objective.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DASHBOARD_UID, type Dashboard, type Panel } from '../../src/metrics/dashboard.ts';
import {
  DASHBOARD_PATH,
  REPO_ROOT,
  RULES_PATH,
  renderDashboard,
  renderRules,
} from '../../src/metrics/observability.generate.ts';
import {
  BURN_RATE_ALERTS,
  buildRuleGroups,
  isAlertRule,
  sliRecord,
  SLI_WINDOWS,
} from '../../src/metrics/slo.ts';

const REGENERATE = 'run `node --import tsx src/metrics/observability.generate.ts`';

async function committed(path: string): Promise<string> {
  return readFile(join(REPO_ROOT, path), 'utf8');
}

async function dashboard(): Promise<Dashboard> {
  return JSON.parse(await committed(DASHBOARD_PATH)) as Dashboard;
}

function leafPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((panel) => [
    ...(panel.type === 'row' ? [] : [panel]),
    ...leafPanels(panel.panels ?? []),
  ]);
}

describe('one source of truth', () => {
  it(`${RULES_PATH} is what slo.ts renders`, async () => {
    expect(await committed(RULES_PATH), REGENERATE).toBe(await renderRules());
  });

  it(`${DASHBOARD_PATH} is what dashboard.ts renders`, async () => {
    expect(await committed(DASHBOARD_PATH), REGENERATE).toBe(await renderDashboard());
  });
});

describe('dashboard', () => {
  it('has a fixed uid and a datasource variable of type prometheus', async () => {
    const board = await dashboard();
    expect(board.uid).toBe(DASHBOARD_UID);
    expect(board.templating.list).toContainEqual(
      expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }),
    );
  });

  it('queries only through ${datasource}, never a hard-coded datasource uid', async () => {
    const board = await dashboard();
    for (const panel of leafPanels(board.panels)) {
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      for (const target of panel.targets ?? []) {
        expect(target.datasource, `${panel.title} ${target.refId}`).toEqual({
          type: 'prometheus',
          uid: '${datasource}',
        });
      }
    }
    const uids = [...(await committed(DASHBOARD_PATH)).matchAll(/"uid":\s*"([^"]*)"/g)].map(
      (match) => match[1],
    );
    expect(new Set(uids)).toEqual(new Set([DASHBOARD_UID, '${datasource}', '-- Grafana --']));
  });

  /** The panel list, each as what the panel must query. */
  const REQUIRED: [string, (panel: Panel, exprs: string) => boolean][] = [
    [
      'share of calls delivered within 30 s',
      (_, e) => e.includes('callsync_delivery_duration_seconds_bucket') && e.includes('le=~"30'),
    ],
    ['error budget left', (_, e) => e.includes(sliRecord.budgetRemaining)],
    [
      'delivery latency percentiles',
      (p, e) =>
        p.type === 'timeseries' &&
        /histogram_quantile\(0\.99, sum by \(le\) \(rate\(callsync_delivery_duration_seconds_bucket/.test(e),
    ],
    [
      'delivery latency heatmap',
      (p, e) =>
        p.type === 'heatmap' &&
        e.includes('callsync_delivery_duration_seconds_bucket') &&
        (p.targets ?? []).every((t) => t.format === 'heatmap'),
    ],
    ['calls by state now', (_, e) => /sum by \(state\) \(callsync_calls_active/.test(e)],
    [
      'finished calls by outcome',
      (_, e) => /sum by \(outcome\) \(rate\(callsync_calls_finished_total/.test(e),
    ],
    ['egress wait', (_, e) => e.includes('callsync_egress_wait_seconds_bucket')],
    [
      'webhook vs polling as the egress completion source',
      (_, e) => /sum by \(source\) \(rate\(callsync_egress_completions_total/.test(e),
    ],
    [
      'CRM request rate by endpoint and code',
      (_, e) =>
        /sum by \(endpoint, code\) \(rate\(callsync_crm_request_duration_seconds_count\{[^}]*\}/.test(e),
    ],
    [
      'CRM latency by endpoint',
      (_, e) =>
        /histogram_quantile\([^,]+, sum by \(le, endpoint\) \(rate\(callsync_crm_request_duration_seconds_bucket/.test(
          e,
        ),
    ],
    ['CRM errors by endpoint and code', (_, e) => e.includes('code!~"2.."')],
    ['retries', (_, e) => e.includes('callsync_crm_retries_total')],
    ['failed calls waiting for a retry', (_, e) => e.includes('callsync_calls_failed_waiting')],
    ['time in each state', (_, e) => e.includes('callsync_call_state_duration_seconds_bucket')],
    ['store write time', (_, e) => e.includes('callsync_store_write_duration_seconds_bucket')],
    ['recording bytes', (_, e) => e.includes('callsync_recording_bytes')],
    ['calls restored at start-up', (_, e) => e.includes('callsync_calls_restored_total')],
    ['event-loop lag', (_, e) => e.includes('nodejs_eventloop_lag')],
  ];

  it.each(REQUIRED)('has a panel for %s', async (_name, matches) => {
    const panels = leafPanels((await dashboard()).panels);
    const found = panels.some((panel) => matches(panel, (panel.targets ?? []).map((t) => t.expr).join('\n')));
    expect(found).toBe(true);
  });

  it('lays panels out on the 24-column grid without overlaps', async () => {
    const panels = (await dashboard()).panels;
    const ids = panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const [i, a] of panels.entries()) {
      expect(a.gridPos.x + a.gridPos.w, a.title).toBeLessThanOrEqual(24);
      for (const b of panels.slice(i + 1)) {
        const overlap =
          a.gridPos.x < b.gridPos.x + b.gridPos.w &&
          b.gridPos.x < a.gridPos.x + a.gridPos.w &&
          a.gridPos.y < b.gridPos.y + b.gridPos.h &&
          b.gridPos.y < a.gridPos.y + a.gridPos.h;
        expect(overlap, `${a.title} overlaps ${b.title}`).toBe(false);
      }
    }
  });
});

describe('Grafana provisioning', () => {
  it('provisions a Prometheus datasource', async () => {
    const text = await committed('grafana/provisioning/datasources/callsync.yaml');
    expect(text).toMatch(/^apiVersion: 1$/m);
    expect(text).toMatch(/^ {4}type: prometheus$/m);
    expect(text).toMatch(/^ {4}url: http/m);
  });

  it('provisions the dashboards directory from files, with the JSON in git winning', async () => {
    const text = await committed('grafana/provisioning/dashboards/callsync.yaml');
    expect(text).toMatch(/^apiVersion: 1$/m);
    expect(text).toMatch(/^ {4}type: file$/m);
    expect(text).toMatch(/^ {4}allowUiUpdates: false$/m);
    expect(text).toMatch(/^ {6}path: \//m);
  });
});

describe('SLO rules', () => {
  const groups = buildRuleGroups();
  const rules = groups.flatMap((group) => group.rules);

  it('records the error ratio over every window the alerts read, and over 30 days', () => {
    const records = rules.flatMap((rule) => ('record' in rule ? [rule.record] : []));
    for (const window of SLI_WINDOWS) expect(records).toContain(sliRecord.errorRatio(window));
    expect(records).toContain(sliRecord.errorRatio('30d'));
    expect(records).toContain(sliRecord.budgetRemaining);
  });

  it('counts failed calls in the denominator and only the 30 s bucket as good', () => {
    const calls = rules.find((rule) => 'record' in rule && rule.record === sliRecord.calls('1h'));
    const good = rules.find((rule) => 'record' in rule && rule.record === sliRecord.good('1h'));
    expect(calls?.expr).toBe('sum by (job) (rate(callsync_calls_finished_total[1h]))');
    expect(good?.expr).toBe(
      'sum by (job) (rate(callsync_delivery_duration_seconds_bucket{le=~"30(\\\\.0)?"}[1h]))',
    );
  });

  it.each(BURN_RATE_ALERTS)(
    '$alert ($severity) fires at $burnRate× over $longWindow and $shortWindow, with the traffic guard',
    (spec) => {
      const alert = rules.filter(isAlertRule).find((rule) => rule.alert === spec.alert);
      const threshold = String(Number((spec.burnRate * 0.01).toPrecision(6)));
      expect(alert?.labels.severity).toBe(spec.severity);
      expect(alert?.expr).toContain(`${sliRecord.errorRatio(spec.longWindow)} > ${threshold}`);
      expect(alert?.expr).toContain(`${sliRecord.errorRatio(spec.shortWindow)} > ${threshold}`);
      expect(alert?.expr).toMatch(
        new RegExp(`and on \\(job\\)\\s+${sliRecord.calls(spec.longWindow)} \\* \\d+ >= 20`),
      );
    },
  );

  it('follows another target and objective', () => {
    const other = buildRuleGroups({ targetSeconds: 12.5, objective: 0.995 }).flatMap((group) => group.rules);
    const good = other.find((rule) => 'record' in rule && rule.record === sliRecord.good('5m'));
    expect(good?.expr).toContain('le=~"12\\\\.5"');
    const fast = other.filter(isAlertRule).find((rule) => rule.alert === 'CallsyncDeliveryBudgetFastBurn');
    expect(fast?.expr).toContain('> 0.072');
  });

  it('alerts on what the SLI cannot see: stuck, failed and waiting, down', () => {
    const names = rules.filter(isAlertRule).map((rule) => rule.alert);
    expect(names).toEqual(
      expect.arrayContaining([
        'CallsyncCallsStuckAwaitingEgress',
        'CallsyncCallsFailedWaiting',
        'CallsyncDown',
      ]),
    );
  });
});
