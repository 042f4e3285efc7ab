/**
 * `npm run demo`: the whole pipeline on one machine, with no outside services. Parses the
 * flags, starts the services, runs the demo, prints the summary and exits 0 only if every call
 * reached the CRM (1 otherwise, 2 for bad flags). `--storage s3` adds an S3-compatible server
 * (s3rver) for the recordings. With `--keep-running` the services stay up after the summary
 * until Ctrl-C. Ctrl-C (or SIGTERM) at any point closes everything; a second one leaves at
 * once. callsync's logs go to stderr (level `warn`, `LOG_LEVEL` overrides), the
 * progress lines and the summary to stdout.
 */
import { ConfigError } from '../config.ts';
import { DEMO_USAGE, DemoArgsError, parseDemoArgs, type DemoArgs } from './args.ts';
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

let services: DemoServices | undefined;
/** Set once the summary is printed: what a Ctrl-C during `--keep-running` exits with. */
let resultCode: number | undefined;
let stopping = false;
const interrupted = new AbortController();

async function shutDown(code: number): Promise<never> {
  const removeFiles = !args.keepRunning;
  await services?.close({ removeFiles });
  if (!removeFiles && services)
    say(`kept ${services.dir} (store, recordings, CRM files); delete it when done`);
  process.exit(code);
}

function onSignal(signal: NodeJS.Signals): void {
  if (stopping) process.exit(EXIT_INTERRUPTED);
  stopping = true;
  say(
    `\n${signal}: closing callsync, the LiveKit emulator${args.storage === 's3' ? ', the S3 server' : ''} and the CRM sandbox…`,
  );
  interrupted.abort();
  void shutDown(resultCode ?? EXIT_INTERRUPTED);
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

try {
  services = await startDemoServices({ logLevel: process.env.LOG_LEVEL, storage: args.storage });
  say(
    `callsync ${services.urls.app} · LiveKit emulator ${services.urls.liveKit} · CRM sandbox ${services.urls.crm}` +
      (services.urls.s3 ? ` · S3 (s3rver) ${services.urls.s3}` : ''),
  );
  const summary = await runDemo({
    services,
    calls: args.calls,
    onProgress: say,
    signal: interrupted.signal,
  });
  process.stdout.write(formatSummary(summary, { keepRunning: args.keepRunning, dir: services.dir }));
  resultCode = summary.ok ? 0 : 1;
  // With --keep-running the listening servers keep the process alive until a signal.
  if (!args.keepRunning) await shutDown(resultCode);
} catch (error) {
  if (!stopping) {
    const message =
      error instanceof ConfigError ? error.message : error instanceof Error ? error.stack : error;
    process.stderr.write(`callsync demo failed: ${String(message)}\n`);
    await shutDown(1);
  }
}
