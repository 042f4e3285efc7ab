/** The side-by-side table: one block of rows per workload, callsync, the baseline, and their ratio. */
import type { RunResult } from './run-once.ts';
import { percentile } from './stats.ts';

const MS_PER_SECOND = 1_000;

/** A workload's runs, one per round for each contender. */
export interface WorkloadResult {
  title: string;
  callsync: RunResult[];
  baseline: RunResult[];
}

interface Figure {
  name: string;
  /** One or more numbers per contender, shown joined by " / ". */
  values(run: RunResult): (number | null)[];
  digits: number;
  /** Shown instead of values (a count out of a total): no ratio. */
  text?(run: RunResult): string;
  /** Context rather than a comparison: no ratio. */
  noRatio?: boolean;
}

const seconds = (ms: number | null) => (ms === null ? null : ms / MS_PER_SECOND);
const perDelivered = (value: number, run: RunResult) => (run.delivered === 0 ? null : value / run.delivered);

export const FIGURES: readonly Figure[] = [
  {
    name: 'delivered (with recording) / calls',
    values: () => [],
    digits: 0,
    text: (run) => `${run.delivered} (${run.withRecording}) / ${run.calls}`,
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
  {
    name: '  of which end → StopEgress p50 / p99 (s)',
    values: (run) => [seconds(percentile(run.endToStopMs, 50)), seconds(percentile(run.endToStopMs, 99))],
    digits: 2,
  },
  { name: 'CPU per delivered call (ms)', values: (run) => [perDelivered(run.cpuMs, run)], digits: 1 },
  { name: '  of which burst → CRM (ms)', values: (run) => [perDelivered(run.burstCpuMs, run)], digits: 1 },
  { name: 'peak RSS (MiB)', values: (run) => [run.peakRssMiB], digits: 0 },
  {
    // Node's histogram records each 10 ms sampling interval whole: an idle loop shows about 10.
    name: 'event-loop delay p50 / p99 / max (ms)',
    values: (run) => [run.loopDelay.p50Ms, run.loopDelay.p99Ms, run.loopDelay.maxMs],
    digits: 1,
  },
  {
    name: 'CRM requests per delivered call',
    values: (run) => [perDelivered(run.crmRequests, run)],
    digits: 2,
  },
  {
    // What each contender is asked to handle besides the CRM: callsync takes LiveKit's
    // webhooks (the baseline registers none) and the agent's API requests.
    name: 'LiveKit API requests / webhooks per call',
    values: (run) => [perDelivered(run.liveKitRequests, run), perDelivered(run.webhooksDelivered, run)],
    digits: 1,
  },
  {
    name: 'bench process (emulator + CRM) CPU (s)',
    values: (run) => [seconds(run.sandboxesCpuMs)],
    digits: 1,
    noRatio: true,
  },
];

function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Each of the figure's values, the median over the rounds (rounds where it is missing left out). */
function medians(figure: Figure, runs: readonly RunResult[]): (number | null)[] {
  const perRound = runs.map((run) => figure.values(run));
  const width = Math.max(0, ...perRound.map((values) => values.length));
  return Array.from({ length: width }, (_, index) =>
    median(perRound.map((values) => values[index]).filter((value) => value !== null && value !== undefined)),
  );
}

/** A count out of a total per round, rounds joined by ", ". */
function texts(figure: Figure, runs: readonly RunResult[]): string {
  return runs.map((run) => figure.text?.(run) ?? '').join(', ');
}

function show(values: readonly (number | null)[], digits: number): string {
  return values.map((value) => (value === null ? '–' : value.toFixed(digits))).join(' / ');
}

function ratios(figure: Figure, result: WorkloadResult): string {
  if (figure.text || figure.noRatio) return '';
  const ours = medians(figure, result.callsync);
  const theirs = medians(figure, result.baseline);
  return ours
    .map((value, index) => {
      const other = theirs[index];
      return value === null || other === null || other === undefined || other === 0
        ? '–'
        : `${(value / other).toFixed(2)}×`;
    })
    .join(' / ');
}

/** The table as a Markdown pipe table (readable as text too); with several rounds, medians. */
export function formatTable(results: readonly WorkloadResult[]): string {
  const rows: string[][] = [
    ['workload', 'figure', 'callsync', 'straight-line baseline', 'ratio callsync / baseline'],
  ];
  for (const result of results) {
    FIGURES.forEach((figure, index) => {
      const cell = (runs: readonly RunResult[]) =>
        figure.text ? texts(figure, runs) : show(medians(figure, runs), figure.digits);
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

const CPU_FIGURE: Figure = { name: 'cpu', values: (run) => [perDelivered(run.cpuMs, run)], digits: 1 };

/** callsync's median CPU per delivered call over the baseline's; null when either delivered nothing. */
export function cpuRatio(result: WorkloadResult): number | null {
  const [ours] = medians(CPU_FIGURE, result.callsync);
  const [theirs] = medians(CPU_FIGURE, result.baseline);
  return ours === null || ours === undefined || theirs === null || theirs === undefined || theirs === 0
    ? null
    : ours / theirs;
}
