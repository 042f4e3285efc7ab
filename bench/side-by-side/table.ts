/** The side-by-side table: one block of rows per workload, callsync, the baseline, and their ratio. */
import type { RunResult } from './run-once.ts';
import { percentile } from './stats.ts';

const MS_PER_SECOND = 1_000;

export interface WorkloadResult {
  title: string;
  callsync: RunResult;
  baseline: RunResult;
}

interface Figure {
  name: string;
  /** One or more numbers per contender, shown joined by " / ". */
  values(run: RunResult): (number | null)[];
  digits: number;
  /** Shown instead of values (a count out of a total): no ratio. */
  text?(run: RunResult): string;
}

const seconds = (ms: number | null) => (ms === null ? null : ms / MS_PER_SECOND);
const perDelivered = (value: number, run: RunResult) => (run.delivered === 0 ? null : value / run.delivered);

export const FIGURES: readonly Figure[] = [
  {
    name: 'delivered / calls',
    values: () => [],
    digits: 0,
    text: (run) => `${run.delivered} / ${run.calls}`,
  },
  {
    name: 'added latency p50 / p99 (s)',
    values: (run) => [
      seconds(percentile(run.addedLatencyMs, 50)),
      seconds(percentile(run.addedLatencyMs, 99)),
    ],
    digits: 2,
  },
  { name: 'end → CRM p99 (s)', values: (run) => [seconds(percentile(run.endToCrmMs, 99))], digits: 2 },
  { name: 'CPU per delivered call (ms)', values: (run) => [perDelivered(run.cpuMs, run)], digits: 1 },
  { name: '  of which burst → CRM (ms)', values: (run) => [perDelivered(run.burstCpuMs, run)], digits: 1 },
  { name: 'peak RSS (MiB)', values: (run) => [run.peakRssMiB], digits: 0 },
  {
    name: 'event-loop delay p50 / p99 / max (ms)',
    values: (run) => [run.loopDelay.p50Ms, run.loopDelay.p99Ms, run.loopDelay.maxMs],
    digits: 1,
  },
  {
    name: 'CRM requests per delivered call',
    values: (run) => [perDelivered(run.crmRequests, run)],
    digits: 2,
  },
];

function show(values: readonly (number | null)[], digits: number): string {
  return values.map((value) => (value === null ? '–' : value.toFixed(digits))).join(' / ');
}

function ratios(figure: Figure, result: WorkloadResult): string {
  if (figure.text) return '';
  const ours = figure.values(result.callsync);
  const theirs = figure.values(result.baseline);
  return ours
    .map((value, index) => {
      const other = theirs[index];
      return value === null || other === null || other === undefined || other === 0
        ? '–'
        : `${(value / other).toFixed(2)}×`;
    })
    .join(' / ');
}

/** The table as a Markdown pipe table (readable as text too). */
export function formatTable(results: readonly WorkloadResult[]): string {
  const rows: string[][] = [
    ['workload', 'figure', 'callsync', 'straight-line baseline', 'ratio callsync / baseline'],
  ];
  for (const result of results) {
    FIGURES.forEach((figure, index) => {
      const cell = (run: RunResult) =>
        figure.text ? figure.text(run) : show(figure.values(run), figure.digits);
      rows.push([
        index === 0 ? result.title : '',
        figure.name,
        cell(result.callsync),
        cell(result.baseline),
        ratios(figure, result),
      ]);
    });
  }
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const line = (row: readonly string[]) =>
    `| ${row.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  return [line(rows[0]!), line(widths.map((width) => '-'.repeat(width))), ...rows.slice(1).map(line)].join(
    '\n',
  );
}

/** callsync's CPU per delivered call over the baseline's; null when either delivered nothing. */
export function cpuRatio(result: WorkloadResult): number | null {
  const ours = perDelivered(result.callsync.cpuMs, result.callsync);
  const theirs = perDelivered(result.baseline.cpuMs, result.baseline);
  return ours === null || theirs === null || theirs === 0 ? null : ours / theirs;
}
