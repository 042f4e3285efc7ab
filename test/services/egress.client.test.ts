/**
 * The per-call egress client against the LiveKit emulator, through the real livekit-server-sdk:
 * every egress path, the error classification (code + retryable) and the closed-client fence.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CallEgressClient, LiveKitError } from '../../src/services/egress.client.ts';
import { LocalRecordingStorage } from '../../src/services/storage/index.ts';
import { EgressStatus } from 'livekit-server-sdk';
import {
  TEST_API_KEY,
  TEST_API_SECRET,
  hasEnded,
  hasStatus,
  startLiveKitHarness,
  type LiveKitHarness,
} from '../helpers/livekit-emulator-harness.ts';
import { freePort } from '../helpers/free-port.ts';

let lk: LiveKitHarness;
let client: CallEgressClient;

beforeEach(async () => {
  lk = await startLiveKitHarness();
  client = new CallEgressClient({ url: lk.url, apiKey: TEST_API_KEY, apiSecret: TEST_API_SECRET });
});
afterEach(async () => {
  client.close();
  await lk.close();
});

function startCall(room: string) {
  lk.emulator.createRoom({ name: room });
  lk.emulator.startSipCall({ room, callerNumber: '+918655066243' });
}

async function rejection(call: Promise<unknown>): Promise<LiveKitError> {
  try {
    await call;
  } catch (error) {
    expect(error).toBeInstanceOf(LiveKitError);
    return error as LiveKitError;
  }
  throw new Error('expected the call to fail');
}

describe('CallEgressClient', () => {
  it('records a call to a real Ogg file that the recordings resolver accepts', async () => {
    startCall('room-complete');
    lk.emulator.setRoomBehaviour('room-complete', { recordingSeconds: 6.5 });
    const started = await client.startRecording({
      roomName: 'room-complete',
      filepath: 'calls/{room_name}-{time}',
    });
    expect(started).toMatchObject({
      roomName: 'room-complete',
      state: 'starting',
    });
    // No size before the egress is final (LiveKit reports 0 until then).
    expect(started.file).not.toHaveProperty('sizeBytes');
    expect(started.egressId).toMatch(/^EG_/);
    expect(started.file?.filename).toMatch(/^calls\/room-complete-.*\.ogg$/);
    expect(await client.listActive('room-complete')).toHaveLength(1);

    await lk.emulator.waitForEgress(started.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    const stopping = await client.stop(started.egressId);
    expect(stopping.state).toBe('ending');

    await lk.emulator.waitForEgress(started.egressId, hasEnded);
    const final = await client.status(started.egressId);
    expect(final.state).toBe('complete');
    expect(final.endedAtMs).toBeGreaterThan(0);
    expect(final.file?.durationSeconds).toBeCloseTo(6.5, 3);
    const recording = await new LocalRecordingStorage({ recordingsDir: lk.recordingsDir }).open(final.file!);
    await recording.close();
    expect(recording.sizeBytes).toBe(final.file?.sizeBytes);
    expect(recording.durationSeconds).toBeCloseTo(6.5, 3);
    expect(await client.listActive('room-complete')).toEqual([]);
  });

  it.each([
    ['failed', 'failed'],
    ['aborted', 'aborted'],
    ['limit_reached', 'limit_reached'],
  ] as const)('reports an egress that ends %s', async (outcome, state) => {
    const room = `room-${outcome}`;
    startCall(room);
    lk.emulator.setRoomBehaviour(room, { egressOutcome: outcome, recordingSeconds: 2 });
    const { egressId } = await client.startRecording({ roomName: room, filepath: 'x.ogg' });
    if (outcome !== 'limit_reached') {
      await lk.emulator
        .waitForEgress(egressId, (info) => info.status !== EgressStatus.EGRESS_STARTING)
        .catch(() => undefined);
      await client.stop(egressId).catch(() => undefined);
    }
    await lk.emulator.waitForEgress(egressId, hasEnded);
    const final = await client.status(egressId);
    expect(final.state).toBe(state);
    if (state === 'limit_reached') expect(final.file?.sizeBytes).toBeGreaterThan(0);
    else expect(final.error).not.toBeNull();
  });

  it('keeps reporting ending for an egress stuck in ENDING, and stopping it again is harmless', async () => {
    startCall('room-stuck');
    lk.emulator.setRoomBehaviour('room-stuck', { egressOutcome: 'stuck_ending' });
    const { egressId } = await client.startRecording({ roomName: 'room-stuck', filepath: 'x.ogg' });
    await lk.emulator.waitForEgress(egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    await client.stop(egressId);
    expect((await client.status(egressId)).state).toBe('ending');
    expect((await client.stop(egressId)).state).toBe('ending');
  });

  it('classifies LiveKit errors by code and retryability', async () => {
    startCall('room-errors');
    lk.emulator.setRoomBehaviour('room-errors', { recordingSeconds: 1 });
    const { egressId } = await client.startRecording({ roomName: 'room-errors', filepath: 'x.ogg' });
    await lk.emulator.waitForEgress(egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    await client.stop(egressId);
    await lk.emulator.waitForEgress(egressId, hasEnded);

    expect(await rejection(client.stop(egressId))).toMatchObject({
      code: 'EGRESS_ALREADY_ENDED',
      status: 412,
      retryable: false,
    });
    expect(await rejection(client.status('EG_doesnotexist'))).toMatchObject({
      code: 'LIVEKIT_NOT_FOUND',
      retryable: false,
    });
    expect(await rejection(client.stop('EG_doesnotexist'))).toMatchObject({
      code: 'LIVEKIT_NOT_FOUND',
      status: 404,
    });
    expect(
      await rejection(client.startRecording({ roomName: 'no-such-room', filepath: 'x.ogg' })),
    ).toMatchObject({
      code: 'LIVEKIT_NOT_FOUND',
      retryable: false,
    });

    lk.emulator.setRoomBehaviour('room-errors', { failStarts: { error: 'no_response' } });
    expect(
      await rejection(client.startRecording({ roomName: 'room-errors', filepath: 'x.ogg' })),
    ).toMatchObject({
      code: 'LIVEKIT_UNAVAILABLE',
      status: 503,
      retryable: true,
    });
  });

  it('refuses bad credentials without retrying them', async () => {
    startCall('room-auth');
    const wrongSecret = new CallEgressClient({
      url: lk.url,
      apiKey: TEST_API_KEY,
      apiSecret: 'not-the-secret-at-all',
    });
    expect(await rejection(wrongSecret.listActive('room-auth'))).toMatchObject({
      code: 'LIVEKIT_UNAUTHENTICATED',
      status: 401,
      retryable: false,
    });
    const unknownKey = new CallEgressClient({
      url: lk.url,
      apiKey: 'APIunknown',
      apiSecret: TEST_API_SECRET,
    });
    expect(
      await rejection(unknownKey.startRecording({ roomName: 'room-auth', filepath: 'x.ogg' })),
    ).toMatchObject({
      code: 'LIVEKIT_UNAUTHENTICATED',
    });
  });

  it('calls a refused connection a retryable network error', async () => {
    const port = await freePort();
    const offline = new CallEgressClient({
      url: `http://127.0.0.1:${port}`,
      apiKey: TEST_API_KEY,
      apiSecret: TEST_API_SECRET,
    });
    expect(await rejection(offline.status('EG_1'))).toMatchObject({
      code: 'LIVEKIT_NETWORK_ERROR',
      retryable: true,
    });
  });

  it('cannot be used after close, and closing twice is fine', async () => {
    startCall('room-closed');
    client.close();
    client.close();
    expect(client.closed).toBe(true);
    for (const call of [
      client.startRecording({ roomName: 'room-closed', filepath: 'x.ogg' }),
      client.status('EG_1'),
      client.stop('EG_1'),
      client.listActive('room-closed'),
    ]) {
      expect(await rejection(call)).toMatchObject({ code: 'LIVEKIT_CLIENT_CLOSED', retryable: false });
    }
    expect(lk.emulator.listEgress({ roomName: 'room-closed' })).toEqual([]);
  });
});
