/** How a command's result leaves the CLI: exit codes, `--json`, and one-line errors. */
import { CliApiError } from './client.ts';

export const EXIT_OK = 0;
/** An API error, a failed check, a call that could not be retried. */
export const EXIT_FAILURE = 1;
/** Bad arguments or options (commander's errors too). */
export const EXIT_USAGE = 2;

/** A misuse the command found itself (beyond what commander parses): exit 2. */
export class UsageError extends Error {}

export function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printError(text: string): void {
  process.stderr.write(`callsync: ${text}\n`);
}

/** The exit code for an error a command threw, after printing it on one line. */
export function reportError(error: unknown): number {
  if (error instanceof CliApiError) {
    printError(error.line);
    return EXIT_FAILURE;
  }
  if (error instanceof UsageError) {
    printError(error.message);
    return EXIT_USAGE;
  }
  printError(error instanceof Error ? error.message : String(error));
  return EXIT_FAILURE;
}
