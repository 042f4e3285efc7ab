/**
 * The side-by-side tables: one block of rows per workload, two columns of runs and their ratio.
 * The main table is callsync against the baseline; the fleet's is two callsync processes against one.
 */
import type { RunResult } from './run-once.ts';
import { percentile } from './stats.ts';

const MS_PER_SECOND = 1_000;

/** A workload's runs, one per round for each column: `first` over `second` is the ratio. */
export interface WorkloadResult {
  title: string;
  first: RunResult[];
  second: RunResult[];
}

/** The columns' headings. */
export interface TableColumns {
  first: string;
  second: string;
  ratio: string;
}

export const SIDE_BY_SIDE_COLUMNS: TableColumns = {
  first: 'callsync',
  second: 'straight-line baseline',
  ratio: 'ratio callsync / baseline',
};

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
    name: '  of which end answered p50 / p99 (s)',
    values: (run) => [seconds(percentile(run.endAnsweredMs, 50)), seconds(percentile(run.endAnsweredMs, 99))],
    digits: 2,
  },
  {
    name: '  of which end → StopEgress p50 / p99 (s)',
    values: (run) => [seconds(percentile(run.endToStopMs, 50)), seconds(percentile(run.endToStopMs, 99))],
    digits: 2,
  },
  {
    name: 'burst → last call data (s) / calls delivered per s',
    values: (run) => [
      seconds(run.burstToLastMs),
      run.burstToLastMs === null || run.burstToLastMs <= 0
        ? null
        : run.delivered / (run.burstToLastMs / MS_PER_SECOND),
    ],
    digits: 1,
  },
  { name: 'CPU per delivered call (ms)', values: (run) => [perDelivered(run.cpuMs, run)], digits: 1 },
  { name: '  of which burst → CRM (ms)', values: (run) => [perDelivered(run.burstCpuMs, run)], digits: 1 },
  // Of a fleet, the processes' peaks summed.
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
    name: 'bench process (emulator + CRM) CPU (s) / loop delay max (ms)',
    values: (run) => [seconds(run.sandboxesCpuMs), run.sandboxesLoopDelayMaxMs],
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
  const ours = medians(figure, result.first);
  const theirs = medians(figure, result.second);
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
export function formatTable(
  results: readonly WorkloadResult[],
  columns: TableColumns = SIDE_BY_SIDE_COLUMNS,
): string {
  const rows: string[][] = [['workload', 'figure', columns.first, columns.second, columns.ratio]];
  for (const result of results) {
    FIGURES.forEach((figure, index) => {
      const cell = (runs: readonly RunResult[]) =>
        figure.text ? texts(figure, runs) : show(medians(figure, runs), figure.digits);
      rows.push([
        index === 0 ? result.title : '',
        figure.name,
        cell(result.first),
        cell(result.second),
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

/** The first column's median CPU per delivered call over the second's; null when either delivered nothing. */
export function cpuRatio(result: WorkloadResult): number | null {
  const [ours] = medians(CPU_FIGURE, result.first);
  const [theirs] = medians(CPU_FIGURE, result.second);
  return ours === null || ours === undefined || theirs === null || theirs === undefined || theirs === 0
    ? null
    : ours / theirs;
}
