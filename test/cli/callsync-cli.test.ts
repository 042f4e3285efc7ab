/**
 * The `callsync` command line against a real supervisor (the harness: LiveKit emulator, CRM
 * sandbox, SQLite store): list, show, retry one, bulk retry after a CRM outage, dismiss,
 * status, and config check. Calls are driven to `failed` by a CRM refusal of their call data
 * (a 422 fails the step at once, where an outage's 5xx would fail it after its retries).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INGEST_TOKEN, startCallsyncHarness, type CallsyncHarness } from '../helpers/callsync-harness.ts';
import { watchFinished, type FinishedCalls } from '../helpers/finished-calls.ts';
import { runCli, type CliOptions } from './run-cli.ts';

let h: CallsyncHarness;
let finished: FinishedCalls;
let cliEnv: Record<string, string>;

beforeAll(async () => {
  h = await startCallsyncHarness();
  finished = watchFinished(h.app.supervisor);
  cliEnv = { CALLSYNC_URL: h.url, CALLSYNC_INGEST_TOKEN: INGEST_TOKEN };
});
afterAll(async () => {
  finished.stop();
  await h.close();
});

const cli = (args: readonly string[], options: CliOptions = {}) =>
  runCli(args, { ...options, env: { ...cliEnv, ...options.env } });

/** A call with no recording (egress aborted) that ends now; `refused` makes the CRM refuse its call data. */
async function finishCall(room: string, refused: boolean): Promise<string> {
  h.startLiveKitCall(room);
  h.emulator.setRoomBehaviour(room, { egressOutcome: 'aborted' });
  if (refused) h.crm.injectFaults('call-data', [{ status: 422, body: { error: 'campaign closed' } }]);
  const callId = await h.createCall(room);
  await h.egressOf(room);
  await h.api('POST', `/v1/calls/${callId}/end`, { reason: 'agent said goodbye' });
  expect(await finished.outcome(callId)).toBe(refused ? 'failed' : 'partial');
  return callId;
}

describe('callsync calls', () => {
  let delivered: string;
  let failed: string;

  beforeAll(async () => {
    delivered = await finishCall('room-cli-delivered', false);
    failed = await finishCall('room-cli-failed', true);
  });

  it('lists calls as a table with the built binary, and as JSON; a bad state is the API error on one line', async () => {
    const table = await cli(['calls', 'list'], { built: true });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^CALL\s+STATE\s+CREATED\s+ENDED\s+ATTEMPTS\(REC\/DATA\)\s+LAST ERROR/);
    // No upload (the egress aborted) and one call-data POST each: a refused POST is an attempt too.
    expect(table.stdout).toMatch(new RegExp(`${delivered}\\s+done .* 0/1\\s*$`, 'm'));
    expect(table.stdout).toMatch(new RegExp(`${failed}\\s+failed .* 0/1 .*CRM_REJECTED`));

    const json = await cli(['--json', 'calls', 'list', '--state', 'failed', '--since', '1h']);
    expect(json.code, json.stderr).toBe(0);
    const { calls } = JSON.parse(json.stdout) as { calls: { callId: string }[] };
    expect(calls.map((call) => call.callId)).toEqual([failed]);

    const wrong = await cli(['calls', 'list', '--state', 'faild']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^callsync: INVALID_QUERY: /)]);

    const usage = await cli(['calls', 'list', '--limit', 'many']);
    expect(usage.code).toBe(2);
  });

  it('pages through nextCursor: --limit 1 shows one call, --all every call', async () => {
    const one = await cli(['--json', 'calls', 'list', '--limit', '1']);
    expect((JSON.parse(one.stdout) as { calls: unknown[] }).calls).toHaveLength(1);
    const all = await cli(['--json', 'calls', 'list', '--all']);
    expect((JSON.parse(all.stdout) as { calls: unknown[] }).calls.length).toBeGreaterThanOrEqual(2);
  });

  it('shows a call with its timeline; an unknown call is CALL_NOT_FOUND, exit 1', async () => {
    const shown = await cli(['calls', 'show', failed]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(`call     ${failed}`);
    expect(shown.stdout).toMatch(/error\s+CRM_REJECTED/);
    expect(shown.stdout).toMatch(/timeline\nAT\s+AFTER\s+EVENT\s+STATE\s+DETAIL/);
    expect(shown.stdout).toContain('attempt_failed');

    const unknown = await cli(['calls', 'show', 'CALL-nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^callsync: CALL_NOT_FOUND: no call CALL-nope\n$/);
  });

  it('retries one failed call, which is then delivered; retrying it again is refused (exit 1)', async () => {
    const callId = await finishCall('room-cli-retry-one', true);
    const retried = await cli(['calls', 'retry', callId]);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout).toBe(`retried ${callId}\n`);
    await h.crm.waitForCallData(callId);

    const again = await cli(['calls', 'retry', callId]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('CALL_NOT_RETRYABLE');
  });

  it('dismisses a failed call with a reason; it then counts as dismissed, no longer failed waiting', async () => {
    const callId = await finishCall('room-cli-dismiss', true);
    const usage = await cli(['calls', 'dismiss', callId]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("required option '--reason <text>'");

    const dismissed = await cli(['calls', 'dismiss', callId, '--reason', 'test call, no customer']);
    expect(dismissed.code, dismissed.stderr).toBe(0);
    const shown = await cli(['--json', 'calls', 'show', callId]);
    const detail = JSON.parse(shown.stdout) as {
      state: string;
      journal: { kind: string; detail?: unknown }[];
    };
    expect(detail.state).toBe('dismissed');
    expect(detail.journal.at(-1)).toMatchObject({
      kind: 'dismissed',
      detail: { reason: 'test call, no customer' },
    });

    const twice = await cli(['calls', 'dismiss', callId, '--reason', 'again']);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('CALL_NOT_DISMISSABLE');
  });

  it('bulk-retries every failed call after a CRM outage: refused off a terminal without --yes, then all delivered', async () => {
    const outage = [
      await finishCall('room-cli-outage-1', true),
      await finishCall('room-cli-outage-2', true),
      await finishCall('room-cli-outage-3', true),
    ];
    const waiting = [failed, ...outage];

    const refused = await cli(['calls', 'retry', '--failed']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(
      `${waiting.length} failed call(s) would be retried; not a terminal, so pass --yes`,
    );

    const bulk = await cli(['calls', 'retry', '--failed', '--since', '1h', '--yes']);
    expect(bulk.code, bulk.stderr).toBe(0);
    expect(bulk.stdout).toContain(`${waiting.length} failed call(s)`);
    expect(bulk.stdout).toContain(`${waiting.length} of ${waiting.length} retried`);
    for (const callId of waiting) await h.crm.waitForCallData(callId);

    const none = await cli(['--json', 'calls', 'retry', '--failed', '--yes']);
    expect(JSON.parse(none.stdout)).toEqual({ retried: [], refused: [] });
  });

  it('status: the share within target over the last hour and day, calls by state, failed waiting', async () => {
    const json = await cli(['--json', 'status']);
    expect(json.code, json.stderr).toBe(0);
    const status = JSON.parse(json.stdout) as {
      targetSeconds: number;
      delivery: { lastHour: { finished: number; withinTarget: number; share: number | null } };
      callsByState: Record<string, number>;
      failedWaiting: number;
    };
    expect(status.targetSeconds).toBe(30);
    expect(status.failedWaiting).toBe(0);
    expect(status.callsByState).toMatchObject({ dismissed: 1 });
    expect(status.delivery.lastHour.finished).toBeGreaterThanOrEqual(6);
    expect(status.delivery.lastHour.share).toBe(
      status.delivery.lastHour.withinTarget / status.delivery.lastHour.finished,
    );

    const table = await cli(['status'], { built: true });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(
      /^Delivered within 30 s of call end\nWINDOW\s+SHARE\s+CALLS\s+P50 \/ P95 \/ P99\nlast hour\s+[\d.]+ %\s+\d+ of \d+\s+[\d.]+ \/ [\d.]+ \/ [\d.]+ s/,
    );
    expect(table.stdout).toMatch(/dismissed\s+1/);
    expect(table.stdout).toContain('Failed calls waiting for an operator: 0');
  });

  it('a wrong token is UNAUTHORIZED on one line, exit 1', async () => {
    const run = await cli(['status'], { env: { CALLSYNC_INGEST_TOKEN: 'wrong' } });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('callsync: UNAUTHORIZED: missing or wrong bearer token\n');
  });
});

describe('callsync config check', () => {
  it('passes with the environment the running supervisor uses: each dependency ✓', async () => {
    const run = await cli(['config', 'check'], { env: h.env });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    for (const name of ['environment', 'livekit', 'crm', 'storage', 'store']) {
      expect(run.stdout).toMatch(new RegExp(`^✓ ${name} `, 'm'));
    }
    expect(run.stdout).toContain('(on a copy)');
  });

  it('fails naming the CRM when CRM_BASE_URL answers nothing (exit 1), the rest still ✓', async () => {
    const run = await cli(['--json', 'config', 'check'], {
      env: { ...h.env, CRM_BASE_URL: 'http://127.0.0.1:9/api' },
    });
    expect(run.code).toBe(1);
    const result = JSON.parse(run.stdout) as {
      ok: boolean;
      checks: { name: string; ok: boolean; detail: string }[];
    };
    expect(result.ok).toBe(false);
    const failing = result.checks.filter((check) => !check.ok);
    expect(failing.map((check) => check.name)).toEqual(['crm']);
    expect(failing[0]?.detail).toMatch(/ECONNREFUSED/);

    const text = await cli(['config', 'check'], {
      env: { ...h.env, CRM_BASE_URL: 'http://127.0.0.1:9/api' },
    });
    expect(text.stdout).toMatch(/^✗ crm /m);
  });

  it('reports each environment problem on its own line (exit 1)', async () => {
    const run = await cli(['config', 'check'], { env: {} });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^✗ environment\s+LIVEKIT_URL /m);
    expect(run.stdout).toMatch(/^✗ environment\s+CRM_BASE_URL /m);
  });
});
