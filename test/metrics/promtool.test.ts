/**
 * promtool, the Debian `prometheus` package's rule checker: the committed rules and example
 * configuration are valid, and the rules' unit tests (prometheus/tests/*.test.yml) pass and show
 * every alert both firing and not firing.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, RULES_PATH } from '../../src/metrics/observability.generate.ts';
import { buildRuleGroups, isAlertRule } from '../../src/metrics/slo.ts';
import { promtool } from '../helpers/prometheus.ts';

const TESTS_DIR = 'prometheus/tests';

async function ruleTestFiles(): Promise<string[]> {
  const names = (await readdir(join(REPO_ROOT, TESTS_DIR)))
    .filter((name) => name.endsWith('.test.yml'))
    .sort();
  return names.map((name) => join(TESTS_DIR, name));
}

describe('promtool', () => {
  it('check rules: the rules file is valid', async () => {
    const { code, output } = await promtool(['check', 'rules', RULES_PATH], REPO_ROOT);
    expect(output).toMatch(/SUCCESS: \d+ rules found/);
    expect(code, output).toBe(0);
  });

  it('check config: the example prometheus.yml is valid and loads the rules', async () => {
    const { code, output } = await promtool(['check', 'config', 'prometheus/prometheus.yml'], REPO_ROOT);
    expect(code, output).toBe(0);
    expect(output).toContain('callsync.rules.yml');
  });

  it('test rules: every unit test passes', async () => {
    const files = await ruleTestFiles();
    expect(files.length).toBeGreaterThan(0);
    const { code, output } = await promtool(['test', 'rules', ...files], REPO_ROOT);
    expect(output).not.toMatch(/FAILED/);
    expect(code, output).toBe(0);
  });

  it('every unit test file evaluates the recording rules before the alerts', async () => {
    const groups = buildRuleGroups().map((group) => group.name);
    for (const file of await ruleTestFiles()) {
      const text = await readFile(join(REPO_ROOT, file), 'utf8');
      const order = /^group_eval_order:\n((?: {2}- .+\n)+)/m.exec(text)?.[1];
      expect(order, `${file} has no group_eval_order (promtool then orders groups at random)`).toBeDefined();
      expect(
        order
          ?.trim()
          .split('\n')
          .map((line) => line.replace(/^\s*- /, '')),
      ).toEqual(groups);
    }
  });

  it('the unit tests show every alert firing and not firing', async () => {
    const texts = await Promise.all(
      (await ruleTestFiles()).map((file) => readFile(join(REPO_ROOT, file), 'utf8')),
    );
    const text = texts.join('\n');
    const firing = new Set(
      [...text.matchAll(/alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels:/g)].map((m) => m[1]),
    );
    const quiet = new Set([...text.matchAll(/alertname: (\w+)\n\s+exp_alerts: \[\]/g)].map((m) => m[1]));
    for (const rule of buildRuleGroups()
      .flatMap((group) => group.rules)
      .filter(isAlertRule)) {
      expect(firing, `${rule.alert} is never shown firing`).toContain(rule.alert);
      expect(quiet, `${rule.alert} is never shown not firing`).toContain(rule.alert);
    }
  });
});
