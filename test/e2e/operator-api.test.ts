/**
 * The operator's side of the HTTP API (the contract's "Operators" and "HTTP API"): a failed call
 * is dismissed and no longer waits, the list pages by cursor and refuses an unknown filter, the
 * admin token guards operator routes while the ingest token keeps serving the agents, and the
 * retention policy prunes finished calls but never a failed one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { callsyncApi } from '../helpers/callsync-api.ts';
import { INGEST_TOKEN, startCallsyncHarness, type CallsyncHarness } from '../helpers/callsync-harness.ts';

const ADMIN_TOKEN = 'admin-token-for-tests';

let h: CallsyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const operator = (harness: CallsyncHarness, method: 'GET' | 'POST', path: string, body?: unknown) =>
  callsyncApi(harness.url, method, path, body, { token: ADMIN_TOKEN });

/** A call that ends `failed` (the CRM refuses its call data), and resolves once it has. */
async function failedCall(harness: CallsyncHarness, room: string): Promise<string> {
  harness.startLiveKitCall(room);
  harness.emulator.setRoomBehaviour(room, { egressOutcome: 'aborted' });
  harness.crm.injectFaults('call-data', [{ status: 422, body: { error: 'campaign closed' } }]);
  const callId = await harness.createCall(room);
  await harness.egressOf(room);
  const finished = new Promise<void>((resolve) =>
    harness.app.supervisor.events.on('call:finished', (event) => event.callId === callId && resolve()),
  );
  await harness.api('POST', `/v1/calls/${callId}/end`, {});
  await finished;
  return callId;
}

describe('operator API', () => {
  it('dismisses a failed call with a reason: it leaves the failed list and cannot be retried', async () => {
    h = await startCallsyncHarness({ env: { CALLSYNC_ADMIN_TOKEN: ADMIN_TOKEN } });
    const callId = await failedCall(h, 'room-dismiss');
    expect((await operator(h, 'GET', '/v1/calls?state=failed')).body.calls).toHaveLength(1);

    expect(await operator(h, 'POST', `/v1/calls/${callId}/dismiss`, {})).toMatchObject({
      status: 400,
      body: { error: 'INVALID_BODY', details: { field: 'reason' } },
    });
    expect(
      (await operator(h, 'POST', `/v1/calls/${callId}/dismiss`, { reason: 'campaign closed for good' }))
        .status,
    ).toBe(202);
    expect((await operator(h, 'GET', '/v1/calls?state=failed')).body.calls).toHaveLength(0);
    const dismissed = await operator(h, 'GET', `/v1/calls/${callId}`);
    expect(dismissed.body).toMatchObject({ state: 'dismissed', status: 'done' });
    expect((dismissed.body.journal as { kind: string; detail?: unknown }[]).at(-1)).toMatchObject({
      kind: 'dismissed',
      detail: { reason: 'campaign closed for good' },
    });
    expect((await operator(h, 'GET', '/v1/calls?state=dismissed')).body.calls).toHaveLength(1);
    expect(await operator(h, 'POST', `/v1/calls/${callId}/dismiss`, { reason: 'again' })).toMatchObject({
      status: 409,
      body: { error: 'CALL_NOT_DISMISSABLE' },
    });
    expect((await operator(h, 'POST', `/v1/calls/${callId}/retry`)).status).toBe(409);
    expect((await operator(h, 'POST', '/v1/calls/CALL-unknown/dismiss', { reason: 'x' })).status).toBe(404);
  });

  it('guards operator routes with the admin token and agent routes with the ingest token', async () => {
    h = await startCallsyncHarness({ env: { CALLSYNC_ADMIN_TOKEN: ADMIN_TOKEN } });
    const callId = await h.createCall('room-tokens'); // with the ingest token
    const withIngest = (method: 'GET' | 'POST', path: string, body?: unknown) =>
      callsyncApi(h!.url, method, path, body, { token: INGEST_TOKEN });
    expect((await withIngest('GET', '/v1/calls')).status).toBe(401);
    expect((await withIngest('GET', `/v1/calls/${callId}`)).status).toBe(401);
    expect((await withIngest('POST', `/v1/calls/${callId}/retry`)).status).toBe(401);
    expect((await operator(h, 'GET', `/v1/calls/${callId}`)).status).toBe(200);
    // The admin token is not the agents' token.
    expect((await operator(h, 'POST', `/v1/calls/${callId}/end`, {})).status).toBe(401);
    expect((await withIngest('POST', `/v1/calls/${callId}/end`, {})).status).toBe(202);
  });

  it('pages the list by cursor, newest first, and names an unknown filter', async () => {
    h = await startCallsyncHarness();
    const created: string[] = [];
    for (let n = 1; n <= 5; n += 1) created.push(await h.createCall(`room-page-${n}`));
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor === null ? '' : `&cursor=${cursor}`;
      const page = await h.api('GET', `/v1/calls?limit=2${query}`);
      expect(page.status).toBe(200);
      seen.push(...(page.body.calls as { callId: string }[]).map((call) => call.callId));
      cursor = page.body.nextCursor as string | null;
      pages += 1;
    } while (cursor !== null && pages < 10);
    expect(pages).toBe(3);
    expect(new Set(seen)).toEqual(new Set(created));
    expect(seen).toHaveLength(5);

    expect(await h.api('GET', '/v1/calls?state=faild')).toMatchObject({
      status: 400,
      body: { error: 'INVALID_QUERY', details: { field: 'state' } },
    });
    expect(await h.api('GET', '/v1/calls?colour=red')).toMatchObject({
      status: 400,
      body: { error: 'INVALID_QUERY' },
    });
    expect(await h.api('GET', '/v1/calls?cursor=not-a-cursor')).toMatchObject({
      status: 400,
      body: { error: 'INVALID_QUERY', details: { field: 'cursor' } },
    });
    expect((await h.api('GET', '/v1/calls?limit=5000')).status).toBe(400);
  });

  it('prunes calls that finished before the retention window, never a failed one', async () => {
    h = await startCallsyncHarness();
    const failed = await failedCall(h, 'room-kept');
    h.crm.clearFaults();
    h.startLiveKitCall('room-pruned');
    const delivered = await h.createCall('room-pruned');
    await h.egressOf('room-pruned');
    const finished = new Promise<void>((resolve) =>
      h!.app.supervisor.events.on('call:finished', (event) => event.callId === delivered && resolve()),
    );
    await h.api('POST', `/v1/calls/${delivered}/end`, {});
    await finished;

    // A retention of zero days: everything finished before now.
    expect(await h.app.supervisor.pruneFinished(0)).toBe(1);
    expect((await h.api('GET', `/v1/calls/${delivered}`)).status).toBe(404);
    expect((await h.api('GET', `/v1/calls/${failed}`)).body).toMatchObject({ state: 'failed' });
  });
});
