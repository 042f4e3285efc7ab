/**
 * Every PromQL expression callsync ships, for the tests that check them: the committed
 * dashboard's queries (Grafana variables substituted) and variable queries, and every rule.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import type { Dashboard, Panel } from '../../src/metrics/dashboard.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { DASHBOARD_PATH, REPO_ROOT } from '../../src/metrics/observability.generate.ts';
import { buildRuleGroups, isAlertRule } from '../../src/metrics/slo.ts';
import {
  labelValuesAsPromql,
  metricNames,
  substituteGrafanaVariables,
} from '../helpers/prometheus-promql.ts';
import { registeredMetrics } from './metrics-fixtures.ts';

export interface NamedExpr {
  /** Where it comes from, for failure messages: `dashboard: <panel> A`, `rule: <name>`. */
  source: string;
  expr: string;
  /** Alert expressions return data only while firing; recording and panel queries always should. */
  kind: 'panel' | 'variable' | 'record' | 'alert';
}

function leafPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((panel) => [
    ...(panel.type === 'row' ? [] : [panel]),
    ...leafPanels(panel.panels ?? []),
  ]);
}

/** Every expression of the committed dashboard (Grafana variables substituted) and the rules. */
export async function allExpressions(): Promise<NamedExpr[]> {
  const board = JSON.parse(await readFile(join(REPO_ROOT, DASHBOARD_PATH), 'utf8')) as Dashboard;
  const exprs: NamedExpr[] = [];
  for (const panel of leafPanels(board.panels)) {
    for (const target of panel.targets ?? []) {
      exprs.push({
        source: `dashboard: ${panel.title} ${target.refId}`,
        expr: substituteGrafanaVariables(target.expr),
        kind: 'panel',
      });
    }
  }
  for (const variable of board.templating.list as { name: string; query?: unknown }[]) {
    const query = variable.query as { query?: string } | string | undefined;
    const text = typeof query === 'string' ? query : query?.query;
    if (text?.startsWith('label_values(')) {
      exprs.push({
        source: `dashboard variable: ${variable.name}`,
        expr: labelValuesAsPromql(text),
        kind: 'variable',
      });
    }
  }
  for (const rule of buildRuleGroups().flatMap((group) => group.rules)) {
    exprs.push(
      isAlertRule(rule)
        ? { source: `alert: ${rule.alert}`, expr: rule.expr, kind: 'alert' }
        : { source: `record: ${rule.record}`, expr: rule.expr, kind: 'record' },
    );
  }
  return exprs;
}

/** Metric names an expression may read: registered series names, recording rules, `up`. */
export async function knownMetricNames(): Promise<Set<string>> {
  const registry = new Registry();
  createMetrics({ registry });
  const names = new Set<string>(['up']);
  for (const metric of (await registeredMetrics(registry)).values()) {
    names.add(metric.name);
    if (metric.type === 'histogram') {
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`);
    }
  }
  for (const rule of buildRuleGroups().flatMap((group) => group.rules)) {
    if (!isAlertRule(rule)) names.add(rule.record);
  }
  return names;
}

/** `source: name` for every metric an expression reads that is not in `known`. */
export function unknownMetrics(exprs: readonly NamedExpr[], known: ReadonlySet<string>): string[] {
  return exprs.flatMap(({ source, expr }) =>
    metricNames(expr)
      .filter((name) => !known.has(name))
      .map((name) => `${source}: ${name}`),
  );
}
