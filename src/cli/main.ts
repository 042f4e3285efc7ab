/**
 * `callsync`, the operator's command line (README, "Operators"): calls list / show / retry /
 * dismiss, status, and config check. Parsing and help are commander's; each command lives in
 * a module beside this one. Exit codes: 0 ok, 1 failure (an API error, a failed check), 2 a
 * usage error.
 */
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { dismissCommand, listCommand, retryCommand, showCommand } from './calls.ts';
import { ApiClient, apiSettingsFromEnv } from './client.ts';
import { configCheckCommand } from './config-check.ts';
import { EXIT_OK, EXIT_USAGE, reportError } from './output.ts';
import { statusCommand } from './status.ts';

function positiveInteger(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1)
    throw new InvalidArgumentError('must be a whole number above 0');
  return number;
}

export function buildProgram(run: (work: () => Promise<number>) => Promise<void>): Command {
  const client = () => new ApiClient(apiSettingsFromEnv());
  const program = new Command('callsync')
    .description(
      'Operate callsync: find, inspect, retry and dismiss calls, see delivery status, check the configuration.\n' +
        'Talks to CALLSYNC_URL (default http://127.0.0.1:8080) with CALLSYNC_ADMIN_TOKEN, else CALLSYNC_INGEST_TOKEN.',
    )
    .option('--json', 'print JSON for scripts instead of tables')
    .showHelpAfterError('(callsync --help for usage)')
    .exitOverride();
  const json = (command: Command) => Boolean(command.optsWithGlobals<{ json?: boolean }>().json);

  const calls = program.command('calls').description('list, show, retry and dismiss calls').exitOverride();
  calls
    .command('list')
    .description('list calls, newest first')
    .option('--state <state>', 'only calls in this state (failed, done, dismissed, awaitingEgress, …)')
    .option('--since <time>', 'only calls created since: ISO-8601, or a duration back (30m, 1h, 1d)')
    .addOption(new Option('--limit <n>', 'at most this many calls (default 100)').argParser(positiveInteger))
    .option('--all', 'every matching call, page after page')
    .action((options: { state?: string; since?: string; limit?: number; all?: boolean }, command: Command) =>
      run(() => listCommand(client(), options, json(command))),
    );
  calls
    .command('show')
    .description('one call and its timeline (the journal)')
    .argument('<callId>')
    .action((callId: string, _options: unknown, command: Command) =>
      run(() => showCommand(client(), callId, json(command))),
    );
  calls
    .command('retry')
    .description('re-drive failed calls: the ones named, or every failed call with --failed')
    .argument('[callIds...]')
    .option('--failed', 'every failed call (listed, counted and confirmed first)')
    .option('--since <time>', 'with --failed: only calls created since (ISO-8601, 30m, 1h, 1d)')
    .option('--yes', 'do not ask for confirmation (needed when not on a terminal)')
    .action(
      (callIds: string[], options: { failed?: boolean; since?: string; yes?: boolean }, command: Command) =>
        run(() => retryCommand(client(), callIds, options, json(command))),
    );
  calls
    .command('dismiss')
    .description('close a failed call that needs no delivery; it no longer waits')
    .argument('<callId>')
    .requiredOption('--reason <text>', 'why (kept in the call journal)')
    .action((callId: string, options: { reason: string }, command: Command) =>
      run(() => dismissCommand(client(), callId, options.reason, json(command))),
    );

  program
    .command('status')
    .description('delivery within target over the last hour and day, calls by state, failed calls waiting')
    .action((_options: unknown, command: Command) => run(() => statusCommand(client(), json(command))));

  const config = program.command('config').description('the configuration').exitOverride();
  config
    .command('check')
    .description('validate the environment and reach LiveKit, the CRM, the recording storage and the store')
    .action((_options: unknown, command: Command) => run(() => configCheckCommand(json(command))));
  return program;
}

/** Runs the CLI on `argv` (as `process.argv`); resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let exitCode = EXIT_OK;
  const program = buildProgram(async (work) => {
    try {
      exitCode = await work();
    } catch (error) {
      exitCode = reportError(error);
    }
  });
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    return reportError(error);
  }
  return exitCode;
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

// Run when started as a program from source (`node --import tsx src/cli/main.ts`); bin/callsync.js
// calls `main` itself.
if (isEntryPoint()) {
  process.exitCode = await main(process.argv);
}
