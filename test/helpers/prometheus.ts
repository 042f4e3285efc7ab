/**
 * A real Prometheus (the Debian `prometheus` package's server and promtool) for tests: start one
 * in its own temp dir on a free port, scraping any `/metrics` URL and evaluating any rule files,
 * query it through its HTTP API, stop it.
 *
 * Waiting policy: nothing sleeps for a guessed time. Readiness is Prometheus's own `/-/ready`,
 * and data is awaited by polling the query API in a bounded loop (`pollUntil`), which ends as
 * soon as the answer is there, or fails with what it last saw once the deadline passes.
 *
 * Binaries: `PROMETHEUS_BIN` / `PROMTOOL_BIN`, else `prometheus` / `promtool` on PATH (`.ci/run`
 * installs the Debian package when they are missing). A missing binary fails the test with a
 * line saying what to install; it is not skipped, because these tests are the proof that the
 * dashboard and the alerts work.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './free-port.ts';
import { vectorSelectors } from './prometheus-promql.ts';

export const PROMETHEUS_BIN = process.env.PROMETHEUS_BIN ?? 'prometheus';
export const PROMTOOL_BIN = process.env.PROMTOOL_BIN ?? 'promtool';
const INSTALL_HINT =
  'install the Debian "prometheus" package (apt-get install -y prometheus), or set PROMETHEUS_BIN/PROMTOOL_BIN';

/** How long Prometheus may take to answer `/-/ready`, ms (WAL replay of an empty dir is instant). */
export const PROMETHEUS_READY_TIMEOUT_MS = 20_000;
/** Interval between polls of Prometheus's API, ms: a fraction of the 1 s scrape interval. */
export const POLL_INTERVAL_MS = 200;

export interface RunResult {
  code: number | null;
  output: string;
}

/** Runs a command to completion; the output is stdout and stderr interleaved. */
export async function run(command: string, args: readonly string[], cwd?: string): Promise<RunResult> {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const [code] = await new Promise<[number | null]>((resolvePromise, reject) => {
    child.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'ENOENT' ? new Error(`${command} not found: ${INSTALL_HINT}`) : error),
    );
    child.once('close', (exitCode: number | null) => resolvePromise([exitCode]));
  });
  return { code, output };
}

export function promtool(args: readonly string[], cwd?: string): Promise<RunResult> {
  return run(PROMTOOL_BIN, args, cwd);
}

/**
 * Polls `probe` until it returns a value (not `undefined`), or throws after `timeoutMs`, or at
 * once when `giveUp` returns a reason (e.g. the process being polled has exited).
 */
export async function pollUntil<T>(
  probe: () => Promise<T | undefined>,
  options: { timeoutMs: number; description: string; intervalMs?: number; giveUp?: () => string | undefined },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    const reason = options.giveUp?.();
    if (reason !== undefined) throw new Error(`gave up waiting for ${options.description}: ${reason}`);
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.description}${detail}`);
    }
    await new Promise((resolvePromise) => setTimeout(resolvePromise, options.intervalMs ?? POLL_INTERVAL_MS));
  }
}

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export type QueryAnswer = { ok: true; result: PromSample[] } | { ok: false; error: string };

export interface PrometheusRule {
  name: string;
  type: 'recording' | 'alerting';
  query: string;
  health: 'ok' | 'err' | 'unknown';
  lastError?: string;
  state?: string;
}

export interface PrometheusOptions {
  /** Full URL of the `/metrics` endpoint to scrape. */
  scrapeUrl: string;
  /** The `job` label of the scraped target. */
  jobName?: string;
  /** Rule files to load, any paths (made absolute). */
  ruleFiles?: readonly string[];
  /** Scrape and rule evaluation interval, seconds. */
  intervalSeconds?: number;
}

export interface PrometheusServer {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** An instant query at the current time. A PromQL error is an answer, not a throw. */
  query(expr: string): Promise<QueryAnswer>;
  /** Every loaded rule with its evaluation health. */
  rules(): Promise<PrometheusRule[]>;
  /** `up` of the scraped target (undefined before the first scrape). */
  targetHealth(): Promise<string | undefined>;
  /** Prometheus's own log so far (for failure messages). */
  log(): string;
  /** Stops the server and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startPrometheus(options: PrometheusOptions): Promise<PrometheusServer> {
  const dir = await mkdtemp(join(tmpdir(), 'callsync-prometheus-'));
  const target = new URL(options.scrapeUrl);
  const interval = `${options.intervalSeconds ?? 1}s`;
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
    rule_files: (options.ruleFiles ?? []).map((file) => resolve(file)),
    scrape_configs: [
      {
        job_name: options.jobName ?? 'callsync',
        metrics_path: target.pathname,
        scheme: target.protocol.replace(':', ''),
        static_configs: [{ targets: [target.host] }],
      },
    ],
  };
  const configPath = join(dir, 'prometheus.yml');
  // JSON is YAML: no YAML writer needed.
  await writeFile(configPath, JSON.stringify(config, null, 2));

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let log = '';
  const child: ChildProcess = spawn(
    PROMETHEUS_BIN,
    [
      `--config.file=${configPath}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise<string>((resolvePromise) => {
    child.once('error', (error: NodeJS.ErrnoException) =>
      resolvePromise(
        error.code === 'ENOENT' ? `${PROMETHEUS_BIN} not found: ${INSTALL_HINT}` : error.message,
      ),
    );
    child.once('exit', (code, signal) => resolvePromise(`prometheus exited (${code ?? signal})`));
  });
  let exitReason: string | undefined;
  void exited.then((reason) => (exitReason = reason));

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    })());

  async function api<T>(
    path: string,
    init?: RequestInit,
  ): Promise<{ status: string; data?: T; error?: string }> {
    const response = await fetch(`${url}${path}`, init);
    return (await response.json()) as { status: string; data?: T; error?: string };
  }

  const server: PrometheusServer = {
    url,
    async query(expr) {
      const body = await api<{ resultType: string; result: PromSample[] }>('/api/v1/query', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ query: expr }).toString(),
      });
      if (body.status !== 'success' || body.data === undefined)
        return { ok: false, error: body.error ?? 'no data' };
      const { resultType, result } = body.data;
      if (resultType !== 'vector') return { ok: false, error: `expected a vector, got ${resultType}` };
      return { ok: true, result };
    },
    async rules() {
      const body = await api<{ groups: { rules: PrometheusRule[] }[] }>('/api/v1/rules');
      return (body.data?.groups ?? []).flatMap((group) => group.rules);
    },
    async targetHealth() {
      const body = await api<{ activeTargets: { health: string }[] }>('/api/v1/targets');
      const health = body.data?.activeTargets[0]?.health;
      return health === 'unknown' ? undefined : health;
    },
    log: () => log,
    stop,
  };

  try {
    await pollUntil(
      async () => {
        const response = await fetch(`${url}/-/ready`);
        return response.ok ? true : undefined;
      },
      {
        timeoutMs: PROMETHEUS_READY_TIMEOUT_MS,
        description: `Prometheus ready at ${url}`,
        giveUp: () => (exitReason === undefined ? undefined : `${exitReason}\n${log}`),
      },
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return server;
}

/** An expression to check against a live Prometheus (see `test/metrics/expressions.ts`). */
export interface CheckedExpression {
  source: string;
  expr: string;
  kind: 'panel' | 'variable' | 'record' | 'alert';
}

/**
 * Expressions without data (or with an error), as `source: reason` lines; empty when all
 * answer. An alert returns data only while firing, so for alerts every vector selector it reads
 * must return data instead; and every loaded rule must evaluate without error.
 */
export async function unanswered(
  prometheus: PrometheusServer,
  expressions: readonly CheckedExpression[],
): Promise<string[]> {
  const problems: string[] = [];
  for (const { source, expr, kind } of expressions) {
    const queries = kind === 'alert' ? vectorSelectors(expr).map((selector) => selector.selector) : [expr];
    for (const query of queries) {
      const answer = await prometheus.query(query);
      if (!answer.ok) problems.push(`${source}: ${query}: ${answer.error}`);
      else if (answer.result.length === 0) problems.push(`${source}: ${query}: no data`);
    }
  }
  const rules = await prometheus.rules();
  for (const rule of rules) {
    if (rule.health !== 'ok')
      problems.push(`rule ${rule.name}: ${rule.health} ${rule.lastError ?? ''}`.trim());
  }
  if (rules.length === 0) problems.push('no rules loaded');
  return problems;
}

/**
 * Polls until every expression answers (bounded by `timeoutMs`) and returns what still did not,
 * so a failing test reports the unanswered expressions rather than a bare timeout.
 */
export async function waitUntilAnswered(
  prometheus: PrometheusServer,
  expressions: readonly CheckedExpression[],
  timeoutMs: number,
): Promise<string[]> {
  let last: string[] = [];
  try {
    await pollUntil(
      async () => {
        last = await unanswered(prometheus, expressions);
        return last.length === 0 ? true : undefined;
      },
      { timeoutMs, description: 'every expression to have data' },
    );
  } catch {
    // `last` says what still had no data.
  }
  return last;
}
