/**
 * Reading a prom-client registry in tests: metric type and label names as registered, and the
 * value of one series by name and labels, from `getMetricsAsJSON()`.
 */
import type { Registry } from 'prom-client';

export interface RegisteredMetric {
  name: string;
  type: string;
  labelNames: string[];
}

export async function registeredMetrics(registry: Registry): Promise<Map<string, RegisteredMetric>> {
  const metrics = new Map<string, RegisteredMetric>();
  for (const json of await registry.getMetricsAsJSON()) {
    const metric: unknown = registry.getSingleMetric(json.name);
    // prom-client keeps the configured label names on the metric; its typings do not expose them.
    const labelNames = (metric as { labelNames?: unknown } | undefined)?.labelNames;
    metrics.set(json.name, {
      name: json.name,
      type: String(json.type),
      labelNames: Array.isArray(labelNames) ? labelNames.map(String).sort() : [],
    });
  }
  return metrics;
}

/** The value of the series `name{labels}` (exact label set), or undefined when absent. */
export async function seriesValue(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  for (const metric of await registry.getMetricsAsJSON()) {
    for (const value of metric.values) {
      const metricName = (value as { metricName?: string }).metricName ?? metric.name;
      if (metricName !== name) continue;
      const got = JSON.stringify(
        Object.entries(value.labels)
          .map(([key, labelValue]) => [key, String(labelValue)])
          .sort(),
      );
      if (got === wanted) return value.value;
    }
  }
  return undefined;
}

/** Every label set exposed for `name`. */
export async function seriesLabels(registry: Registry, name: string): Promise<Record<string, string>[]> {
  const sets: Record<string, string>[] = [];
  for (const metric of await registry.getMetricsAsJSON()) {
    for (const value of metric.values) {
      const metricName = (value as { metricName?: string }).metricName ?? metric.name;
      if (metricName !== name) continue;
      sets.push(Object.fromEntries(Object.entries(value.labels).map(([key, v]) => [key, String(v)])));
    }
  }
  return sets;
}
