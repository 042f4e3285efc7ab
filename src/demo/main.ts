/**
 * `npm run demo`: the whole pipeline on one machine, with no outside services. Parses the
 * flags, starts the services, runs the demo, prints the summary and exits 0 only if every call
 * reached the CRM (1 otherwise, 2 for bad flags). `--storage s3` adds an S3-compatible server
 * (s3rver) for the recordings. `--fleet N` runs callsync as N supervisor processes on
 * PostgreSQL behind a proxy and kills one in the middle (fleet.ts, fleet-demo.ts); it also exits
 * 1 if an Idempotency-Key was accepted twice or the kill's calls were not taken over. With
 * `--keep-running` the services stay up after the summary until Ctrl-C. Ctrl-C (or SIGTERM) at
 * any point closes everything; a second one leaves at once. callsync's logs go to a file in the
 * run's temp dir (level `warn`, `LOG_LEVEL` overrides), so the warnings for the faults the demo
 * injects on purpose do not print before the summary: only lines at `error` and above are echoed
 * to stderr, or every line when `LOG_LEVEL` is set. The temp dir, and with it the log, is kept
 * when the run fails or with `--keep-running`, and its last line says where. A fleet's
 * supervisors' lines go to stderr only at `LOG_LEVEL`, and all of them after a failure. The
 * progress lines and the summary go to stdout.
 */
import { ConfigError } from '../config.ts';
import { DEMO_USAGE, DemoArgsError, parseDemoArgs, type DemoArgs } from './args.ts';
import { DemoPostgresUnavailableError, startDemoFleet, type DemoFleet } from './fleet.ts';
import { runFleetDemo } from './fleet-demo.ts';
import { formatFleetSection } from './fleet-summary.ts';
import { runDemo } from './run-demo.ts';
import { startDemoServices, type DemoServices } from './services.ts';
import { formatSummary } from './summary.ts';

/** The conventional exit status of a process stopped by SIGINT. */
const EXIT_INTERRUPTED = 130;

const say = (line: string) => process.stdout.write(`${line}\n`);

let args: DemoArgs;
try {
  args = parseDemoArgs(process.argv.slice(2), process.env);
} catch (error) {
  if (!(error instanceof DemoArgsError)) throw error;
  process.stderr.write(`callsync demo: ${error.message}\n\n${DEMO_USAGE}`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write(DEMO_USAGE);
  process.exit(0);
}

let services: DemoServices | DemoFleet | undefined;
/** callsync's log file, in-process: named at the end when it is kept. */
let logFile: string | undefined;
let fleet: DemoFleet | undefined;
/** A fleet being started: Ctrl-C aborts it, and the exit waits until it has closed what it started. */
let fleetStarting: Promise<DemoFleet> | undefined;
/** Set once the summary is printed: what a Ctrl-C during `--keep-running` exits with. */
let resultCode: number | undefined;
let stopping = false;
const interrupted = new AbortController();

async function shutDown(code: number): Promise<never> {
  // A failed run keeps its files, callsync's log among them, to look into.
  const removeFiles = !args.keepRunning && (code === 0 || code === EXIT_INTERRUPTED);
  if (services === undefined) await fleetStarting?.catch(() => undefined);
  await services?.close({ removeFiles });
  if (!removeFiles && services) {
    say(`kept ${services.dir} (store, recordings, CRM files); delete it when done`);
    if (logFile !== undefined) say(`callsync's log: ${logFile}`);
    if (fleet !== undefined) say(`the supervisors' logs: ${fleet.logFiles().join(', ')}`);
  }
  process.exit(code);
}

function onSignal(signal: NodeJS.Signals): void {
  if (stopping) process.exit(EXIT_INTERRUPTED);
  stopping = true;
  say(
    `\n${signal}: closing ${args.fleet === undefined ? 'callsync' : "callsync's supervisors, the proxy"}, the LiveKit emulator${args.storage === 's3' ? ', the S3 server' : ''} and the CRM sandbox…`,
  );
  interrupted.abort();
  void shutDown(resultCode ?? EXIT_INTERRUPTED);
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

async function runInProcess(): Promise<number> {
  const logLevel = process.env.LOG_LEVEL?.trim() ? process.env.LOG_LEVEL : undefined;
  const started = await startDemoServices({
    logLevel,
    logFile: { echo: logLevel === undefined ? 'problems' : 'all' },
    storage: args.storage,
  });
  services = started;
  logFile = started.logFile;
  say(
    `callsync ${started.urls.app} · LiveKit emulator ${started.urls.liveKit} · CRM sandbox ${started.urls.crm}` +
      (started.urls.s3 ? ` · S3 (s3rver) ${started.urls.s3}` : ''),
  );
  const summary = await runDemo({
    services: started,
    calls: args.calls,
    onProgress: say,
    signal: interrupted.signal,
  });
  process.stdout.write(formatSummary(summary, { keepRunning: args.keepRunning, dir: started.dir }));
  if (args.keepRunning && logFile !== undefined) say(`  callsync's log: ${logFile}`);
  return summary.ok ? 0 : 1;
}

async function runFleet(size: number): Promise<number> {
  fleetStarting = startDemoFleet({
    size,
    storage: args.storage,
    logLevel: process.env.LOG_LEVEL,
    postgresUrl: process.env.DEMO_POSTGRES_URL,
    signal: interrupted.signal,
  });
  const started = await fleetStarting;
  services = fleet = started;
  say(
    `callsync fleet ${started.instances.map((instance) => `${instance.id} :${instance.port}`).join(', ')} on ${started.postgres} schema ${started.schema}` +
      ` · proxy ${started.urls.app} · LiveKit emulator ${started.urls.liveKit} · CRM sandbox ${started.urls.crm}` +
      (started.urls.s3 ? ` · S3 (s3rver) ${started.urls.s3}` : ''),
  );
  const result = await runFleetDemo({
    fleet: started,
    calls: args.calls,
    onProgress: say,
    signal: interrupted.signal,
  });
  process.stdout.write(
    formatSummary(result.summary, { keepRunning: args.keepRunning, dir: started.dir }) +
      formatFleetSection(result.fleet),
  );
  if (!result.ok) process.stderr.write(`\nthe supervisors' output:\n${started.logs()}`);
  if (args.keepRunning) say(`  the supervisors' logs: ${started.logFiles().join(', ')}`);
  return result.ok ? 0 : 1;
}

try {
  resultCode = args.fleet === undefined ? await runInProcess() : await runFleet(args.fleet);
  // With --keep-running the listening servers keep the process alive until a signal.
  if (!args.keepRunning) await shutDown(resultCode);
} catch (error) {
  if (!stopping) {
    const message =
      error instanceof ConfigError || error instanceof DemoPostgresUnavailableError
        ? error.message
        : error instanceof Error
          ? error.stack
          : error;
    process.stderr.write(`callsync demo failed: ${String(message)}\n`);
    if (fleet) process.stderr.write(`\nthe supervisors' output:\n${fleet.logs()}`);
    await shutDown(1);
  }
}
