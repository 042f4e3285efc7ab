/**
 * The `/_emulator/...` JSON endpoints a user scripts the standalone emulator with.
 */
import { EgressStatus } from 'livekit-server-sdk';
import { describe, expect, it } from 'vitest';
import type { LiveKitHarness } from '../helpers/livekit-emulator-harness.ts';
import {
  hasEnded,
  hasStatus,
  liveKitHarnessPerTest,
  oggOutput,
  TEST_CALLER,
} from '../helpers/livekit-emulator-harness.ts';

const harness = liveKitHarnessPerTest();

async function control(lk: LiveKitHarness, method: string, path: string, body?: unknown) {
  const response = await fetch(new URL(`/_emulator/${path}`, lk.url), {
    method,
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } }),
  });
  const text = await response.text();
  return {
    status: response.status,
    json: (text === '' ? undefined : JSON.parse(text)) as Record<string, unknown>,
  };
}

describe('LiveKit emulator: HTTP control API', () => {
  it('scripts a whole call: SIP call, behaviour, hang-up, egress and webhook listings', async () => {
    const lk = await harness({ departureTimeoutMs: 20, finalizeAfterMs: 0 });
    const call = await control(lk, 'POST', 'rooms/ctl/sip-calls', {
      callerNumber: TEST_CALLER,
      trunkNumber: '+15550000000',
    });
    expect(call.status).toBe(200);
    expect(call.json).toMatchObject({
      room: { name: 'ctl', num_participants: 2 },
      caller: { identity: `sip_${TEST_CALLER}`, kind: 'SIP', attributes: { 'sip.phoneNumber': TEST_CALLER } },
      agent: { kind: 'AGENT' },
    });
    expect((await control(lk, 'PUT', 'rooms/ctl/behaviour', { recordingSeconds: 1.5 })).status).toBe(200);
    expect((await control(lk, 'GET', 'rooms/ctl/behaviour')).json).toEqual({
      behaviour: { recordingSeconds: 1.5 },
    });

    const started = await lk.egress.startRoomCompositeEgress('ctl', oggOutput(), { audioOnly: true });
    await lk.emulator.waitForEgress(started.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    const closed = lk.emulator.waitForEvent('room:finished');
    const hangUp = await control(lk, 'POST', 'rooms/ctl/hang-up', {});
    expect(hangUp.json).toMatchObject({ left: [{ identity: `sip_${TEST_CALLER}`, state: 'DISCONNECTED' }] });
    await closed;
    await lk.emulator.waitForEgress(started.egressId, hasEnded);

    const egress = await control(lk, 'GET', `egress/${started.egressId}`);
    expect(egress.json).toMatchObject({
      egress: {
        egress_id: started.egressId,
        status: 'EGRESS_COMPLETE',
        file_results: [{ duration: '1500000000' }],
      },
    });
    expect((await control(lk, 'GET', 'egress?active=true')).json).toEqual({ items: [] });
    const webhooks = await control(lk, 'GET', 'webhooks');
    expect((webhooks.json.webhooks as { name: string }[]).map((w) => w.name)).toContain('egress_ended');
    expect((await control(lk, 'GET', 'rooms')).json).toEqual({ rooms: [] });
  });

  it('creates rooms, adds and removes participants, closes rooms', async () => {
    const lk = await harness();
    expect((await control(lk, 'POST', 'rooms', { name: 'manual' })).json).toMatchObject({
      room: { name: 'manual' },
    });
    const joined = await control(lk, 'POST', 'rooms/manual/participants', {
      identity: 'agent-1',
      kind: 'AGENT',
      attributes: { 'lk.agent.state': 'listening' },
    });
    expect(joined.json).toMatchObject({ participant: { identity: 'agent-1', kind: 'AGENT' } });
    expect((await control(lk, 'GET', 'rooms/manual')).json).toMatchObject({
      participants: [{ identity: 'agent-1' }],
    });
    expect((await control(lk, 'DELETE', 'rooms/manual/participants/agent-1')).status).toBe(200);
    expect((await control(lk, 'DELETE', 'rooms/manual/participants/agent-1')).status).toBe(404);

    expect((await control(lk, 'POST', 'rooms/manual/close')).status).toBe(200);
    expect(lk.emulator.getRoom('manual')).toBeUndefined();
    expect((await control(lk, 'GET', 'rooms/manual')).status).toBe(404);
  });

  it('validates bodies and explains what is wrong', async () => {
    const lk = await harness();
    const invalid = await control(lk, 'PUT', 'rooms/x/behaviour', { egressOutcome: 'exploded' });
    expect(invalid.status).toBe(400);
    expect(String(invalid.json.error)).toContain('egressOutcome');
    expect(lk.emulator.getRoomBehaviour('x')).toBeUndefined();
    expect((await control(lk, 'POST', 'rooms/x/participants', { kind: 'SIP' })).status).toBe(400);
    expect((await control(lk, 'GET', 'nothing-here')).status).toBe(404);
  });

  it('can be turned off', async () => {
    const lk = await harness({ controlApi: false });
    const response = await fetch(new URL('/_emulator/rooms', lk.url));
    expect(response.status).toBe(404);
    expect(await response.text()).toBe('404 page not found');
  });
});
