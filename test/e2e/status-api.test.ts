/** `GET /v1/status` through the real app: an operator route, computed from the store. */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startCallsyncHarness, type CallsyncHarness } from '../helpers/callsync-harness.ts';
import { callsyncApi } from '../helpers/callsync-api.ts';
import { watchFinished } from '../helpers/finished-calls.ts';

const ADMIN_TOKEN = 'admin-token-for-status-tests';
let h: CallsyncHarness;
beforeAll(async () => {
  h = await startCallsyncHarness({ env: { CALLSYNC_ADMIN_TOKEN: ADMIN_TOKEN } });
});
afterAll(async () => {
  await h.close();
});

it('answers the share within target over the last hour and day, calls by state and failed calls waiting', async () => {
  const finished = watchFinished(h.app.supervisor);
  const endCall = async (room: string) => {
    h.startLiveKitCall(room);
    h.emulator.setRoomBehaviour(room, { egressOutcome: 'aborted' });
    const callId = await h.createCall(room);
    await h.egressOf(room);
    await h.api('POST', `/v1/calls/${callId}/end`, {});
    return finished.outcome(callId);
  };
  expect(await endCall('room-status-delivered')).toBe('partial');
  h.crm.injectFaults('call-data', [{ status: 422 }]);
  expect(await endCall('room-status-failed')).toBe('failed');
  finished.stop();

  const status = await callsyncApi(h.url, 'GET', '/v1/status', undefined, { token: ADMIN_TOKEN });
  expect(status.status).toBe(200);
  const oneOfTwo = {
    finished: 2,
    withinTarget: 1,
    share: 0.5,
    latencySeconds: {
      p50: expect.any(Number) as number,
      p95: expect.any(Number) as number,
      p99: expect.any(Number) as number,
    },
  };
  expect(status.body).toEqual({
    targetSeconds: 30,
    delivery: { lastHour: oneOfTwo, lastDay: oneOfTwo },
    callsByState: { done: 1, failed: 1 },
    failedWaiting: 1,
  });

  // One delivery: every percentile is its end → CRM time, within the target.
  const latency = (status.body.delivery as { lastHour: { latencySeconds: { p50: number; p99: number } } })
    .lastHour.latencySeconds;
  expect(latency.p50).toBe(latency.p99);
  expect(latency.p99).toBeLessThanOrEqual(30);

  // An operator route: the admin token, not the ingest token.
  expect((await h.api('GET', '/v1/status')).status).toBe(401);
});
