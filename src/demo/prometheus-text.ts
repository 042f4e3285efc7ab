/**
 * Reads one sample out of a Prometheus text exposition (what `GET /metrics` answers), so the
 * summary can set callsync's own counters beside what the CRM sandbox saw. Deliberately
 * small: exact metric name, exact label set, first match.
 */

/** The sample `name{labels}`; 0 when the series is absent (a counter never incremented). */
export function sampleValue(exposition: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels)
    .map(([key, value]) => `${key}="${value}"`)
    .sort();
  for (const line of exposition.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = (match[2] ?? '')
      .split(/,(?=[a-zA-Z_][a-zA-Z0-9_]*=")/)
      .filter((pair) => pair !== '')
      .sort();
    if (have.length === wanted.length && have.every((pair, index) => pair === wanted[index])) {
      return Number(match[3]);
    }
  }
  return 0;
}
