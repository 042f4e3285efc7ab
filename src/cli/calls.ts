/** `callsync calls …`: list, show, retry (one, several, or every failed call) and dismiss. */
import { createInterface } from 'node:readline/promises';
import type { CallPage } from '../supervisor/call-api.ts';
import type { CallDetailView, CallView } from '../supervisor/call-view.ts';
import { CliApiError, type ApiClient } from './client.ts';
import { describeDetail, offset, shortTime, table } from './format.ts';
import { EXIT_FAILURE, EXIT_OK, UsageError, print, printError, printJson } from './output.ts';
import { parseSince } from './since.ts';

/** The API's own page bounds (`CALL_LIST_PAGE_DEFAULT`, `CALL_LIST_PAGE_MAX` in call-api.ts). */
const PAGE_DEFAULT = 100;
const PAGE_MAX = 1_000;

export interface ListOptions {
  state?: string | undefined;
  since?: string | undefined;
  limit?: number | undefined;
  all?: boolean | undefined;
}

/** Newest first, following `nextCursor` until `limit` calls (or every call with `all`). */
export async function fetchCalls(client: ApiClient, options: ListOptions): Promise<CallView[]> {
  const wanted = options.all ? Number.POSITIVE_INFINITY : (options.limit ?? PAGE_DEFAULT);
  const since = options.since === undefined ? undefined : parseSince(options.since);
  const calls: CallView[] = [];
  let cursor: string | undefined;
  while (calls.length < wanted) {
    const page = await client.get<CallPage>('/v1/calls', {
      state: options.state,
      since,
      limit: Math.min(PAGE_MAX, wanted - calls.length),
      cursor,
    });
    calls.push(...page.calls);
    if (page.nextCursor === null) break;
    cursor = page.nextCursor;
  }
  return calls;
}

function callsTable(calls: readonly CallView[]): string {
  return table(
    ['CALL', 'STATE', 'CREATED', 'ENDED', 'ATTEMPTS(REC/DATA)', 'LAST ERROR'],
    calls.map((call) => [
      call.callId,
      call.state,
      shortTime(call.createdAt),
      shortTime(call.endedAt),
      `${call.attempts.recording}/${call.attempts['call-data']}`,
      call.lastError ? `${call.lastError.code}: ${call.lastError.message}`.slice(0, 60) : '',
    ]),
  );
}

export async function listCommand(client: ApiClient, options: ListOptions, json: boolean): Promise<number> {
  const calls = await fetchCalls(client, options);
  if (json) printJson({ calls });
  else print(calls.length === 0 ? 'no calls' : `${callsTable(calls)}\n${calls.length} call(s)`);
  return EXIT_OK;
}

/** The call's header and its journal as a timeline, one entry a line. */
export function renderCall(call: CallDetailView): string {
  const lines = [
    `call     ${call.callId} (room ${call.roomName})`,
    `state    ${call.state} (${call.status})${call.outcome ? `, outcome ${call.outcome}` : ''}`,
    `started  ${shortTime(call.startedAt)}   ended ${shortTime(call.endedAt)}${call.endReason ? ` (${call.endReason})` : ''}`,
    `acked    recording ${shortTime(call.recordingAcknowledgedAt)}   call data ${shortTime(call.callDataAcknowledgedAt)}`,
    `attempts recording ${call.attempts.recording}, call-data ${call.attempts['call-data']}; retries ${call.retries}`,
  ];
  if (call.lastError) lines.push(`error    ${call.lastError.code}: ${call.lastError.message}`);
  if (call.owner) lines.push(`owner    ${call.owner.instanceId} (epoch ${call.owner.epoch})`);
  lines.push('', 'timeline');
  const first = call.journal[0] ? Date.parse(call.journal[0].at) : 0;
  lines.push(
    table(
      ['AT', 'AFTER', 'EVENT', 'STATE', 'DETAIL'],
      call.journal.map((entry) => [
        shortTime(entry.at),
        offset(Date.parse(entry.at) - first),
        entry.kind,
        entry.state,
        describeDetail(entry.detail),
      ]),
    ),
  );
  return lines.join('\n');
}

export async function showCommand(client: ApiClient, callId: string, json: boolean): Promise<number> {
  const call = await client.get<CallDetailView>(`/v1/calls/${encodeURIComponent(callId)}`);
  if (json) printJson(call);
  else print(renderCall(call));
  return EXIT_OK;
}

export interface RetryOptions {
  failed?: boolean | undefined;
  since?: string | undefined;
  yes?: boolean | undefined;
}

/** The terminal's answer to a yes/no question; anything but y/yes is no. */
async function confirm(question: string): Promise<boolean> {
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await prompt.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    prompt.close();
  }
}

interface RetryResult {
  callId: string;
  ok: boolean;
  error?: string;
  message?: string;
}

async function retryEach(client: ApiClient, callIds: readonly string[]): Promise<RetryResult[]> {
  const results: RetryResult[] = [];
  for (const callId of callIds) {
    try {
      await client.post(`/v1/calls/${encodeURIComponent(callId)}/retry`);
      results.push({ callId, ok: true });
    } catch (error) {
      if (!(error instanceof CliApiError)) throw error;
      results.push({ callId, ok: false, error: error.code, message: error.message });
    }
  }
  return results;
}

export async function retryCommand(
  client: ApiClient,
  ids: readonly string[],
  options: RetryOptions,
  json: boolean,
): Promise<number> {
  if (options.failed && ids.length > 0) throw new UsageError('give call ids or --failed, not both');
  if (!options.failed && ids.length === 0) throw new UsageError('give call ids to retry, or --failed');
  if (!options.failed && options.since !== undefined) throw new UsageError('--since goes with --failed');
  let callIds = ids;
  if (options.failed) {
    const failed = await fetchCalls(client, { state: 'failed', since: options.since, all: true });
    if (failed.length === 0) {
      if (json) printJson({ retried: [], refused: [] });
      else print('no failed calls to retry');
      return EXIT_OK;
    }
    if (!options.yes) {
      if (!process.stdin.isTTY) {
        throw new UsageError(
          `${failed.length} failed call(s) would be retried; not a terminal, so pass --yes`,
        );
      }
      process.stderr.write(`${callsTable(failed)}\n`);
      if (!(await confirm(`Retry these ${failed.length} failed call(s)?`))) {
        printError('nothing retried');
        return EXIT_FAILURE;
      }
    } else if (!json) {
      print(`${callsTable(failed)}\n${failed.length} failed call(s)`);
    }
    callIds = failed.map((call) => call.callId);
  }
  const results = await retryEach(client, callIds);
  const refused = results.filter((result) => !result.ok);
  if (json) {
    printJson({
      retried: results.filter((result) => result.ok).map((result) => result.callId),
      refused: refused.map(({ callId, error, message }) => ({ callId, error, message })),
    });
  } else {
    for (const result of results) {
      if (result.ok) print(`retried ${result.callId}`);
      else printError(`${result.callId}: ${result.error}: ${result.message}`);
    }
    if (callIds.length > 1) print(`${results.length - refused.length} of ${results.length} retried`);
  }
  return refused.length === 0 ? EXIT_OK : EXIT_FAILURE;
}

export async function dismissCommand(
  client: ApiClient,
  callId: string,
  reason: string,
  json: boolean,
): Promise<number> {
  if (reason.trim() === '') throw new UsageError('--reason must say why');
  await client.post(`/v1/calls/${encodeURIComponent(callId)}/dismiss`, { reason });
  if (json) printJson({ dismissed: callId, reason });
  else print(`dismissed ${callId}: ${reason}`);
  return EXIT_OK;
}
