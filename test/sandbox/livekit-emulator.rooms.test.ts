/**
 * Rooms and participants through the real RoomServiceClient, and the call lifecycle the
 * supervisor depends on: SIP hang-up → departure timeout → room closed → egress ended.
 */
import {
  DisconnectReason,
  EncodedFileOutput,
  EncodedFileType,
  ParticipantInfo_Kind,
  RoomCompositeEgressRequest,
  RoomEgress,
  RoomEndReason,
} from '@livekit/protocol';
import { EgressStatus } from 'livekit-server-sdk';
import { describe, expect, it } from 'vitest';
import {
  hasEnded,
  hasStatus,
  liveKitHarnessPerTest,
  oggOutput,
  serverErrorOf,
  TEST_CALLER,
  TEST_REFERENCE_MS,
} from '../helpers/livekit-emulator-harness.ts';

const TRUNK = '+15557650000';
/** Small enough to keep the run fast; the hang-up tests await the close, never sleep. */
const TEST_DEPARTURE_TIMEOUT_MS = 30;

const harness = liveKitHarnessPerTest();

describe('LiveKit emulator: rooms via RoomServiceClient', () => {
  it('creates rooms idempotently, lists them and deletes them', async () => {
    const lk = await harness({ now: () => TEST_REFERENCE_MS });
    const created = await lk.rooms.createRoom({
      name: 'room-1',
      departureTimeout: 5,
      metadata: '{"campaign":"c1"}',
    });
    expect(created.sid).toMatch(/^RM_[A-Za-z0-9]{12}$/);
    expect(created).toMatchObject({
      name: 'room-1',
      departureTimeout: 5,
      emptyTimeout: 300,
      metadata: '{"campaign":"c1"}',
    });
    expect(created.creationTime).toBe(BigInt(TEST_REFERENCE_MS / 1000));
    expect(created.creationTimeMs).toBe(BigInt(TEST_REFERENCE_MS));
    expect((await lk.rooms.createRoom({ name: 'room-1' })).sid).toBe(created.sid);
    await lk.rooms.createRoom({ name: 'room-2' });

    expect((await lk.rooms.listRooms()).map((room) => room.name).sort()).toEqual(['room-1', 'room-2']);
    expect((await lk.rooms.listRooms(['room-2'])).map((room) => room.name)).toEqual(['room-2']);

    await lk.rooms.deleteRoom('room-1');
    expect((await lk.rooms.listRooms()).map((room) => room.name)).toEqual(['room-2']);
    expect(lk.emulator.webhookLog().map((w) => `${w.name}:${w.roomName}`)).toEqual([
      'room_started:room-1',
      'room_started:room-2',
      'room_finished:room-1',
    ]);
  });

  it('answers 404 not_found when deleting a room that does not exist', async () => {
    const lk = await harness();
    expect(await serverErrorOf(lk.rooms.deleteRoom('ghost'))).toMatchObject({
      status: 404,
      code: 'not_found',
      message: 'requested room does not exist',
    });
  });

  it('lists SIP callers and agents with their kinds and SIP attributes', async () => {
    const lk = await harness();
    const call = lk.emulator.startSipCall({
      room: 'sip-room',
      callerNumber: TEST_CALLER,
      trunkNumber: TRUNK,
    });

    const participants = await lk.rooms.listParticipants('sip-room');
    expect(participants.map((p) => [p.identity, p.kind])).toEqual([
      [`sip_${TEST_CALLER}`, ParticipantInfo_Kind.SIP],
      [call.agent?.identity, ParticipantInfo_Kind.AGENT],
    ]);
    const caller = await lk.rooms.getParticipant('sip-room', `sip_${TEST_CALLER}`);
    expect(caller.sid).toMatch(/^PA_/);
    expect(caller.attributes).toMatchObject({
      'sip.phoneNumber': TEST_CALLER,
      'sip.trunkPhoneNumber': TRUNK,
      'sip.callStatus': 'active',
    });
    expect(caller.attributes['sip.callID']).toMatch(/^SCL_/);
    expect(await serverErrorOf(lk.rooms.getParticipant('sip-room', 'nobody'))).toMatchObject({
      status: 404,
      code: 'not_found',
      message: 'participant does not exist',
    });
    expect((await lk.rooms.listRooms(['sip-room']))[0]?.numParticipants).toBe(2);
  });

  it('removes a participant on request and tells the webhook receivers', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'kick', callerNumber: TEST_CALLER, agent: false });
    await lk.rooms.removeParticipant('kick', `sip_${TEST_CALLER}`);
    expect(await lk.rooms.listParticipants('kick')).toEqual([]);

    await lk.emulator.webhooksIdle();
    const events = await Promise.all(
      lk.sink.received.map((d) => lk.receiver.receive(d.rawBody, d.authorization)),
    );
    const left = events.find((event) => event.event === 'participant_left');
    expect(left?.participant).toMatchObject({
      identity: `sip_${TEST_CALLER}`,
      disconnectReason: DisconnectReason.PARTICIPANT_REMOVED,
    });
  });

  it('closes the room after the departure timeout once the SIP caller hangs up, ending the egress', async () => {
    const lk = await harness({ departureTimeoutMs: TEST_DEPARTURE_TIMEOUT_MS, finalizeAfterMs: 0 });
    lk.emulator.startSipCall({ room: 'hangup', callerNumber: TEST_CALLER });
    const started = await lk.egress.startRoomCompositeEgress('hangup', oggOutput(), { audioOnly: true });
    await lk.emulator.waitForEgress(started.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    const roomFinished = lk.emulator.waitForEvent('room:finished', ({ room }) => room.name === 'hangup');

    const [caller] = lk.emulator.hangUp({ room: 'hangup' });
    expect(caller?.attributes['sip.callStatus']).toBe('hangup');
    // The agent and the recorder remain: the room waits out the departure timeout.
    expect(lk.emulator.getRoom('hangup')).toBeDefined();

    const { reason } = await roomFinished;
    expect(reason).toBe(RoomEndReason.ROOM_END_IDLE_TIMEOUT);
    expect(lk.emulator.getEgress(started.egressId)).toMatchObject({
      status: EgressStatus.EGRESS_ENDING,
      details: 'End reason: Source closed',
    });
    const done = await lk.emulator.waitForEgress(started.egressId, hasEnded);
    expect(done.status).toBe(EgressStatus.EGRESS_COMPLETE);
    expect(await lk.rooms.listRooms()).toEqual([]);

    await lk.emulator.webhooksIdle();
    const events = await Promise.all(
      lk.sink.received.map((d) => lk.receiver.receive(d.rawBody, d.authorization)),
    );
    const sequence = events.map((event) => event.event);
    expect(sequence.indexOf('room_finished')).toBeGreaterThan(sequence.lastIndexOf('participant_left'));
    expect(sequence.indexOf('egress_ended')).toBeGreaterThan(sequence.indexOf('room_finished'));
    const callerLeft = events.find(
      (e) => e.event === 'participant_left' && e.participant?.kind === ParticipantInfo_Kind.SIP,
    );
    expect(callerLeft?.participant?.attributes['sip.callStatus']).toBe('hangup');
    const ended = events.find((e) => e.event === 'egress_ended');
    expect(ended?.egressInfo).toMatchObject({
      status: EgressStatus.EGRESS_COMPLETE,
      details: 'End reason: Source closed',
    });
  });

  it('keeps the room open when the caller comes back before the departure timeout', async () => {
    const lk = await harness({ departureTimeoutMs: TEST_DEPARTURE_TIMEOUT_MS });
    lk.emulator.startSipCall({ room: 'comeback', callerNumber: TEST_CALLER });
    lk.emulator.startSipCall({ room: 'gone', callerNumber: TEST_CALLER });

    lk.emulator.hangUp({ room: 'comeback' });
    lk.emulator.startSipCall({ room: 'comeback', callerNumber: TEST_CALLER, agent: false });
    // Hung up later with the same timeout: when it closes, the first room's timer would have fired.
    lk.emulator.hangUp({ room: 'gone' });
    await lk.emulator.waitForEvent('room:finished', ({ room }) => room.name === 'gone');
    expect(lk.emulator.getRoom('comeback')).toBeDefined();
  });

  it('closes a room nobody ever joined after the empty timeout', async () => {
    const lk = await harness();
    lk.emulator.createRoom({ name: 'unused', emptyTimeoutMs: 10 });
    const { room, reason } = await lk.emulator.waitForEvent('room:finished');
    expect(room.name).toBe('unused');
    expect(reason).toBe(RoomEndReason.ROOM_END_IDLE_TIMEOUT);
  });

  it('aborts an egress still STARTING when the room closes, with "Source closed"', async () => {
    const lk = await harness();
    await lk.rooms.createRoom({ name: 'closing' });
    const started = await lk.egress.startRoomCompositeEgress('closing', oggOutput(), { audioOnly: true });
    lk.emulator.closeRoom({ room: 'closing' });

    expect(lk.emulator.getEgress(started.egressId)).toMatchObject({
      status: EgressStatus.EGRESS_ABORTED,
      error: 'Stop called before pipeline could start',
      errorCode: 412,
      details: 'End reason: Source closed',
    });
  });

  it('starts an automatic room egress when CreateRoom carries one', async () => {
    const lk = await harness();
    await lk.rooms.createRoom({
      name: 'auto',
      egress: new RoomEgress({
        room: new RoomCompositeEgressRequest({
          audioOnly: true,
          fileOutputs: [
            new EncodedFileOutput({ fileType: EncodedFileType.OGG, filepath: 'auto/{room_name}' }),
          ],
        }),
      }),
    });
    const [info] = await lk.egress.listEgress({ roomName: 'auto' });
    expect(info).toMatchObject({ status: EgressStatus.EGRESS_STARTING, roomName: 'auto' });
    expect(info?.fileResults[0]?.filename).toBe('auto/auto.ogg');
  });
});
