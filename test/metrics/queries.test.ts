/**
 * The static half of "a renamed metric fails this test": every PromQL expression of the
 * committed dashboard and of the rules parses (promtool), and every metric it reads is one that
 * `createMetrics()` registers, a recording rule defines, or Prometheus's own `up`. The live half
 * is `prometheus-live.test.ts`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rulesToYaml } from '../../src/metrics/observability.generate.ts';
import { promtool } from '../helpers/prometheus.ts';
import { metricNames, substituteGrafanaVariables, vectorSelectors } from '../helpers/prometheus-promql.ts';
import { allExpressions, knownMetricNames, unknownMetrics, type NamedExpr } from './expressions.ts';

describe('PromQL lexer', () => {
  it('finds metric names, not functions, keywords, label lists or matchers', () => {
    const expr =
      'histogram_quantile(0.95, sum by (le, state) (rate(a_bucket{job=~"x", le=~"30(\\\\.0)?"}[5m]))) ' +
      '/ on (job) group_left(instance) b:rule:rate5m > bool 0.1 and c unless absent(up{job="d"}) # e_comment';
    expect(metricNames(expr)).toEqual(['a_bucket', 'b:rule:rate5m', 'c', 'up']);
    expect(vectorSelectors(expr).map((selector) => selector.selector)).toEqual([
      'a_bucket{job=~"x", le=~"30(\\\\.0)?"}',
      'b:rule:rate5m',
      'c',
      'up{job="d"}',
    ]);
  });

  it('substitutes Grafana variables, and refuses one it does not know', () => {
    expect(substituteGrafanaVariables('rate(x{job=~"$job"}[$__rate_interval]) + y[${__range}]')).toBe(
      'rate(x{job=~".*"}[1m]) + y[1h]',
    );
    expect(() => substituteGrafanaVariables('x{instance="$instance"}')).toThrow(/instance/);
  });
});

describe('dashboard and rule expressions', () => {
  let exprs: NamedExpr[];
  let known: Set<string>;
  let dir: string;

  beforeAll(async () => {
    exprs = await allExpressions();
    known = await knownMetricNames();
    dir = await mkdtemp(join(tmpdir(), 'callsync-promql-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('covers the dashboard and every rule', () => {
    const kinds = new Set(exprs.map((expr) => expr.kind));
    expect(kinds).toEqual(new Set(['panel', 'variable', 'record', 'alert']));
    expect(exprs.filter((expr) => expr.kind === 'panel').length).toBeGreaterThan(20);
  });

  it('read only metrics that createMetrics() registers, recording rules, or up', () => {
    expect(unknownMetrics(exprs, known)).toEqual([]);
  });

  it('would catch a renamed metric', () => {
    const renamed = exprs.map((named) => ({
      ...named,
      expr: named.expr.replaceAll('callsync_calls_finished_total', 'callsync_calls_completed_total'),
    }));
    expect(unknownMetrics(renamed, known).length).toBeGreaterThan(0);
  });

  it('all parse (promtool check rules on each wrapped as a recording rule)', async () => {
    const file = join(dir, 'exprs.rules.yml');
    const rules = exprs.map((named, index) => ({ record: `check:expr_${index}`, expr: named.expr }));
    await writeFile(file, rulesToYaml([{ name: 'every-dashboard-and-rule-expression', rules }]));
    const { code, output } = await promtool(['check', 'rules', file]);
    // promtool names the failing rule by its index; map it back to the panel or rule.
    const explained = output.replace(/check:expr_(\d+)/g, (whole, index: string) => {
      const named = exprs[Number(index)];
      return named === undefined ? whole : `${whole} (${named.source}: ${named.expr})`;
    });
    expect(code, explained).toBe(0);
    expect(output).toContain(`SUCCESS: ${exprs.length} rules found`);
  });
});
