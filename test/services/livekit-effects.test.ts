/**
 * The call actor's LiveKit effects (`src/services/livekit-effects.ts`) against the LiveKit
 * emulator, through the real livekit-server-sdk: StartEgress never records a call twice. An
 * attempt that may repeat an earlier one (a retry, a restored call) adopts the room's active
 * egress; a new call's first attempt starts its own at once, a leftover egress of an earlier
 * call in the same room notwithstanding.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CallEgressClient } from '../../src/services/egress.client.ts';
import { createLiveKitEffects } from '../../src/services/livekit-effects.ts';
import type { LiveKitEffects } from '../../src/machines/call.actors.ts';
import {
  TEST_API_KEY,
  TEST_API_SECRET,
  startLiveKitHarness,
  type LiveKitHarness,
} from '../helpers/livekit-emulator-harness.ts';

const ROOM = 'room-effects';
const CALL = { callId: 'call-1', roomName: ROOM };
const signal = new AbortController().signal;
let lk: LiveKitHarness;
let effects: LiveKitEffects<CallEgressClient>;
let client: CallEgressClient;

beforeEach(async () => {
  lk = await startLiveKitHarness();
  effects = createLiveKitEffects({
    url: lk.url,
    apiKey: TEST_API_KEY,
    apiSecret: TEST_API_SECRET,
    recordingFilepath: 'calls/{room_name}-{time}',
  });
  client = effects.open(CALL);
  lk.emulator.createRoom({ name: ROOM });
  lk.emulator.startSipCall({ room: ROOM, callerNumber: '+918655066243' });
});
afterEach(async () => {
  await effects.close(client);
  await lk.close();
});

const input = (mayHaveStarted: boolean, attempt = 1) => ({
  callId: 'call-1',
  roomName: ROOM,
  egressId: null,
  attempt,
  mayHaveStarted,
});
const egressesOfRoom = () => lk.emulator.listEgress({ roomName: ROOM });

describe('startEgress', () => {
  it('adopts the egress an earlier attempt started, for a retry and for a restored call', async () => {
    const first = await effects.startEgress(client, input(false), signal);
    expect(egressesOfRoom()).toHaveLength(1);

    // The answer was lost (a timeout, a crash): the next attempt finds the same egress.
    expect(await effects.startEgress(client, input(true, 2), signal)).toEqual(first);
    const restored = effects.open(CALL);
    expect(await effects.startEgress(restored, input(true, 1), signal)).toEqual(first);
    await effects.close(restored);
    expect(egressesOfRoom()).toHaveLength(1);
  });

  it("starts a new call's first attempt at once, leaving an earlier call's egress alone", async () => {
    const earlier = await effects.startEgress(client, input(false), signal);
    const fresh = await effects.startEgress(client, { ...input(false), callId: 'call-2' }, signal);
    expect(fresh.egressId).not.toBe(earlier.egressId);
    expect(
      egressesOfRoom()
        .map((info) => info.egressId)
        .sort(),
    ).toEqual([earlier.egressId, fresh.egressId].sort());
  });
});
