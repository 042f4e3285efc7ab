/**
 * Egress through the real livekit-server-sdk EgressClient against the emulator: every path
 * an egress can take, the files it leaves behind, and the errors LiveKit answers with.
 */
import { access, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { EgressSourceType } from '@livekit/protocol';
import type { EgressInfo } from 'livekit-server-sdk';
import { EgressStatus } from 'livekit-server-sdk';
import { describe, expect, it } from 'vitest';
import { readOggOpusInfo } from '../../src/audio/ogg-opus.ts';
import { formatEgressTime } from '../../src/sandbox/livekit/egress-filepath.ts';
import type { LiveKitHarness } from '../helpers/livekit-emulator-harness.ts';
import {
  hasEnded,
  hasStatus,
  liveKitHarnessPerTest,
  oggOutput,
  serverErrorOf,
  TEST_CALLER,
  TEST_REFERENCE_MS,
} from '../helpers/livekit-emulator-harness.ts';

const harness = liveKitHarnessPerTest();

function startRecording(lk: LiveKitHarness, room: string): Promise<EgressInfo> {
  return lk.egress.startRoomCompositeEgress(room, oggOutput(), { audioOnly: true });
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Every status an egress went through, as the emulator announced it. */
function recordStatuses(lk: LiveKitHarness): (egressId: string) => EgressStatus[] {
  const updates: EgressInfo[] = [];
  lk.emulator.events.on('egress:updated', ({ info }) => updates.push(info));
  return (egressId) => updates.filter((info) => info.egressId === egressId).map((info) => info.status);
}

describe('LiveKit emulator: egress via EgressClient', () => {
  it('completes with a real Ogg Opus file whose size and duration are what ListEgress reports', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'call-complete', callerNumber: TEST_CALLER });
    lk.emulator.setRoomBehaviour('call-complete', { recordingSeconds: 4.5 });

    const started = await startRecording(lk, 'call-complete');
    expect(started.egressId).toMatch(/^EG_[A-Za-z0-9]{12}$/);
    expect(started.status).toBe(EgressStatus.EGRESS_STARTING);
    expect(started.roomName).toBe('call-complete');
    expect(started.roomId).toBe(lk.emulator.getRoom('call-complete')?.sid);
    expect(started.sourceType).toBe(EgressSourceType.SDK);
    expect(started.request.case).toBe('roomComposite');
    expect(started.request.value).toMatchObject({ roomName: 'call-complete', audioOnly: true });
    expect(started.fileResults[0]?.filename).toMatch(/^calls\/call-complete-\d{4}-\d{2}-\d{2}T\d{6}\.ogg$/);
    expect(started.result).toMatchObject({
      case: 'file',
      value: { filename: started.fileResults[0]?.filename },
    });
    expect(started.startedAt).toBeGreaterThan(0n);
    expect(started.endedAt).toBe(0n);

    await lk.emulator.waitForEgress(started.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    const stopped = await lk.egress.stopEgress(started.egressId);
    expect(stopped.status).toBe(EgressStatus.EGRESS_ENDING);
    expect(stopped.details).toBe('End reason: StopEgress API');

    await lk.emulator.waitForEgress(started.egressId, hasEnded);
    const [listed] = await lk.egress.listEgress({ egressId: started.egressId });
    expect(listed?.status).toBe(EgressStatus.EGRESS_COMPLETE);
    expect(listed?.error).toBe('');
    expect(listed?.endedAt).toBeGreaterThan(listed!.startedAt);
    expect(listed?.updatedAt).toBe(listed?.endedAt);
    const file = listed!.fileResults[0]!;
    expect(file.location).toBe(join(lk.recordingsDir, file.filename));
    expect(Number(file.size)).toBe((await stat(file.location)).size);
    const ogg = await readOggOpusInfo(file.location);
    expect(ogg.complete).toBe(true);
    expect(ogg.durationSeconds).toBeCloseTo(4.5, 2);
    expect(Number(file.duration) / 1e9).toBeCloseTo(ogg.durationSeconds, 6);
    expect(file.endedAt - file.startedAt).toBe(file.duration);
    // The deprecated single result mirrors file_results[0], as livekit/egress fills it.
    expect(listed?.result).toMatchObject({
      case: 'file',
      value: { location: file.location, size: file.size },
    });
  });

  it('records for as long as the egress was ACTIVE on the injected clock, and stamps times from it', async () => {
    let nowMs = TEST_REFERENCE_MS;
    const lk = await harness({ now: () => nowMs });
    lk.emulator.startSipCall({ room: 'call-clock', callerNumber: TEST_CALLER });

    const started = await startRecording(lk, 'call-clock');
    expect(started.startedAt).toBe(BigInt(TEST_REFERENCE_MS) * 1_000_000n);
    expect(started.fileResults[0]?.filename).toBe(
      `calls/call-clock-${formatEgressTime(TEST_REFERENCE_MS)}.ogg`,
    );
    await lk.emulator.waitForEgress(started.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    nowMs += 7_250;
    await lk.egress.stopEgress(started.egressId);

    const done = await lk.emulator.waitForEgress(started.egressId, hasEnded);
    const file = done.fileResults[0]!;
    expect(done.status).toBe(EgressStatus.EGRESS_COMPLETE);
    expect(done.endedAt).toBe(BigInt(TEST_REFERENCE_MS + 7_250) * 1_000_000n);
    expect(file.startedAt).toBe(BigInt(TEST_REFERENCE_MS) * 1_000_000n);
    expect(file.duration).toBe(7_250_000_000n);
    expect((await readOggOpusInfo(file.location)).durationSeconds).toBeCloseTo(7.25, 3);
  });

  it('waits in STARTING until someone in the room publishes audio', async () => {
    const lk = await harness({ activateAfterMs: 0 });
    await lk.rooms.createRoom({ name: 'call-quiet' });
    lk.emulator.addParticipant({ room: 'call-quiet', identity: 'listener', publishAudio: false });
    const waiting = await startRecording(lk, 'call-quiet');
    // Same activation delay, scheduled later: once it is ACTIVE, the first one's delay is over too.
    lk.emulator.startSipCall({ room: 'call-busy', callerNumber: TEST_CALLER });
    const sentinel = await startRecording(lk, 'call-busy');
    await lk.emulator.waitForEgress(sentinel.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    expect(lk.emulator.getEgress(waiting.egressId)?.status).toBe(EgressStatus.EGRESS_STARTING);

    lk.emulator.startSipCall({ room: 'call-quiet', callerNumber: TEST_CALLER });
    await lk.emulator.waitForEgress(waiting.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
  });

  it('aborts when stopped before it could start, with no file', async () => {
    const lk = await harness();
    await lk.rooms.createRoom({ name: 'call-early-stop' });
    const started = await startRecording(lk, 'call-early-stop');

    const stopped = await lk.egress.stopEgress(started.egressId);
    expect(stopped.status).toBe(EgressStatus.EGRESS_ABORTED);
    expect(stopped.error).toBe('Stop called before pipeline could start');
    expect(stopped.errorCode).toBe(412);
    expect(stopped.endedAt).toBeGreaterThan(0n);
    expect(stopped.fileResults[0]?.location).toBe('');
    expect(await exists(join(lk.recordingsDir, stopped.fileResults[0]!.filename))).toBe(false);
  });

  it('fails: FAILED with an error, error code 500, "End reason: Failure" and no file', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'call-failed', callerNumber: TEST_CALLER });
    lk.emulator.setRoomBehaviour('call-failed', { egressOutcome: 'failed' });
    const started = await startRecording(lk, 'call-failed');
    await lk.emulator.waitForEgress(started.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    await lk.egress.stopEgress(started.egressId);

    await lk.emulator.waitForEgress(started.egressId, hasEnded);
    const [failed] = await lk.egress.listEgress({ egressId: started.egressId });
    expect(failed).toMatchObject({
      status: EgressStatus.EGRESS_FAILED,
      error: 'pipeline frozen',
      errorCode: 500,
      details: 'End reason: Failure',
    });
    expect(failed?.fileResults[0]).toMatchObject({ location: '', size: 0n, duration: 0n });
    expect(await exists(join(lk.recordingsDir, failed!.fileResults[0]!.filename))).toBe(false);
  });

  it('aborts with "Start signal not received" without ever becoming ACTIVE', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'call-aborted', callerNumber: TEST_CALLER });
    lk.emulator.setRoomBehaviour('call-aborted', { egressOutcome: 'aborted' });
    const statusesOf = recordStatuses(lk);
    const started = await startRecording(lk, 'call-aborted');

    const ended = await lk.emulator.waitForEgress(started.egressId, hasEnded);
    expect(ended).toMatchObject({
      status: EgressStatus.EGRESS_ABORTED,
      error: 'Start signal not received',
      errorCode: 412,
    });
    expect(statusesOf(started.egressId)).toEqual([EgressStatus.EGRESS_STARTING, EgressStatus.EGRESS_ABORTED]);
    expect(
      lk.emulator
        .webhookLog()
        .filter((w) => w.name.startsWith('egress_'))
        .map((w) => w.name),
    ).toEqual(['egress_started', 'egress_ended']);
  });

  it('reaches the session limit: LIMIT_REACHED 413 with the file present; stopping it then is refused', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'call-limit', callerNumber: TEST_CALLER });
    lk.emulator.setRoomBehaviour('call-limit', {
      egressOutcome: 'limit_reached',
      limitReachedAfterMs: 0,
      recordingSeconds: 2,
    });
    const started = await startRecording(lk, 'call-limit');

    const ended = await lk.emulator.waitForEgress(started.egressId, hasEnded);
    expect(ended).toMatchObject({
      status: EgressStatus.EGRESS_LIMIT_REACHED,
      error: 'Session limit reached',
      errorCode: 413,
      details: 'End reason: Session limit reached',
    });
    const file = ended.fileResults[0]!;
    expect(Number(file.size)).toBe((await stat(file.location)).size);
    expect((await readOggOpusInfo(file.location)).durationSeconds).toBeCloseTo(2, 2);

    const refused = await serverErrorOf(lk.egress.stopEgress(started.egressId));
    expect(refused).toMatchObject({
      status: 412,
      code: 'failed_precondition',
      message: 'egress with status EGRESS_LIMIT_REACHED cannot be stopped',
    });
  });

  it('stuck in ENDING: ListEgress keeps answering ENDING and a second stop returns ENDING again', async () => {
    const lk = await harness({ finalizeAfterMs: 0 });
    lk.emulator.startSipCall({ room: 'call-stuck', callerNumber: TEST_CALLER });
    lk.emulator.startSipCall({ room: 'call-healthy', callerNumber: TEST_CALLER });
    lk.emulator.setRoomBehaviour('call-stuck', { egressOutcome: 'stuck_ending' });
    const stuck = await startRecording(lk, 'call-stuck');
    const healthy = await startRecording(lk, 'call-healthy');
    await lk.emulator.waitForEgress(stuck.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    await lk.emulator.waitForEgress(healthy.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));

    expect((await lk.egress.stopEgress(stuck.egressId)).status).toBe(EgressStatus.EGRESS_ENDING);
    await lk.egress.stopEgress(healthy.egressId);
    // Same finalize delay, stopped later: once it completed, the stuck one had its chance.
    await lk.emulator.waitForEgress(healthy.egressId, hasEnded);

    const [listed] = await lk.egress.listEgress({ egressId: stuck.egressId });
    expect(listed?.status).toBe(EgressStatus.EGRESS_ENDING);
    const active = await lk.egress.listEgress({ active: true });
    expect(active.map((info) => info.egressId)).toEqual([stuck.egressId]);
    const again = await lk.egress.stopEgress(stuck.egressId);
    expect(again.status).toBe(EgressStatus.EGRESS_ENDING);
    expect(again.details).toBe('End reason: StopEgress API');
  });

  it('stuck in STARTING: never becomes ACTIVE, and stop aborts it', async () => {
    const lk = await harness({ activateAfterMs: 0 });
    lk.emulator.startSipCall({ room: 'call-stuck-start', callerNumber: TEST_CALLER });
    lk.emulator.startSipCall({ room: 'call-healthy', callerNumber: TEST_CALLER });
    lk.emulator.setRoomBehaviour('call-stuck-start', { egressOutcome: 'stuck_starting' });
    const stuck = await startRecording(lk, 'call-stuck-start');
    const healthy = await startRecording(lk, 'call-healthy');
    await lk.emulator.waitForEgress(healthy.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));

    const [listed] = await lk.egress.listEgress({ egressId: stuck.egressId });
    expect(listed?.status).toBe(EgressStatus.EGRESS_STARTING);
    const stopped = await lk.egress.stopEgress(stuck.egressId);
    expect(stopped).toMatchObject({ status: EgressStatus.EGRESS_ABORTED, errorCode: 412 });
  });

  it('finalizes slowly when the room asks for it', async () => {
    const lk = await harness({ finalizeAfterMs: 0 });
    lk.emulator.startSipCall({ room: 'call-slow', callerNumber: TEST_CALLER });
    lk.emulator.startSipCall({ room: 'call-fast', callerNumber: TEST_CALLER });
    lk.emulator.setRoomBehaviour('call-slow', { finalizeAfterMs: 500 });
    const slow = await startRecording(lk, 'call-slow');
    const fast = await startRecording(lk, 'call-fast');
    await lk.emulator.waitForEgress(slow.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    await lk.emulator.waitForEgress(fast.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));

    await lk.egress.stopEgress(slow.egressId);
    await lk.egress.stopEgress(fast.egressId);
    await lk.emulator.waitForEgress(fast.egressId, hasEnded);
    expect(lk.emulator.getEgress(slow.egressId)?.status).toBe(EgressStatus.EGRESS_ENDING);
    expect((await lk.emulator.waitForEgress(slow.egressId, hasEnded)).status).toBe(
      EgressStatus.EGRESS_COMPLETE,
    );
  });

  it('refuses to start with 503 unavailable "no response from servers", for as many starts as asked', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'call-no-egress', callerNumber: TEST_CALLER });
    lk.emulator.setRoomBehaviour('call-no-egress', { failStarts: { error: 'no_response', count: 1 } });

    const refused = await serverErrorOf(startRecording(lk, 'call-no-egress'));
    expect(refused).toMatchObject({ status: 503, code: 'unavailable', message: 'no response from servers' });
    expect(lk.emulator.listEgress()).toEqual([]);
    expect((await startRecording(lk, 'call-no-egress')).status).toBe(EgressStatus.EGRESS_STARTING);
  });

  it('answers 412 failed_precondition when stopping a completed egress', async () => {
    const lk = await harness({ finalizeAfterMs: 0 });
    lk.emulator.startSipCall({ room: 'call-done', callerNumber: TEST_CALLER });
    const started = await startRecording(lk, 'call-done');
    await lk.emulator.waitForEgress(started.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    await lk.egress.stopEgress(started.egressId);
    await lk.emulator.waitForEgress(started.egressId, hasStatus(EgressStatus.EGRESS_COMPLETE));

    const refused = await serverErrorOf(lk.egress.stopEgress(started.egressId));
    expect(refused).toMatchObject({
      status: 412,
      code: 'failed_precondition',
      message: 'egress with status EGRESS_COMPLETE cannot be stopped',
    });
  });

  it('answers 404 not_found "egress does not exist" for unknown egress ids', async () => {
    const lk = await harness();
    for (const call of [
      lk.egress.listEgress({ egressId: 'EG_doesnotexist' }),
      lk.egress.stopEgress('EG_doesnotexist'),
    ]) {
      expect(await serverErrorOf(call)).toMatchObject({
        status: 404,
        code: 'not_found',
        message: 'egress does not exist',
      });
    }
  });

  it('answers 404 not_found "requested room does not exist" when the room is missing', async () => {
    const lk = await harness();
    expect(await serverErrorOf(startRecording(lk, 'no-such-room'))).toMatchObject({
      status: 404,
      code: 'not_found',
      message: 'requested room does not exist',
    });
  });

  it('answers the same once the room has closed: LiveKit forgets a finished room', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'call-finished', callerNumber: TEST_CALLER });
    expect(lk.emulator.closeRoom({ room: 'call-finished' })).toBe(true);
    expect(await serverErrorOf(startRecording(lk, 'call-finished'))).toMatchObject({
      status: 404,
      code: 'not_found',
      message: 'requested room does not exist',
    });
  });

  it('answers 400 invalid_argument for audio_only with video_only, and for a filepath outside the recordings', async () => {
    const lk = await harness();
    lk.emulator.startSipCall({ room: 'call-invalid', callerNumber: TEST_CALLER });
    const both = lk.egress.startRoomCompositeEgress('call-invalid', oggOutput(), {
      audioOnly: true,
      videoOnly: true,
    });
    expect(await serverErrorOf(both)).toMatchObject({
      status: 400,
      code: 'invalid_argument',
      message: 'request has missing or invalid field: audio_only and video_only',
    });
    const escaping = lk.egress.startRoomCompositeEgress('call-invalid', oggOutput('../../escape.ogg'), {
      audioOnly: true,
    });
    expect(await serverErrorOf(escaping)).toMatchObject({
      status: 400,
      code: 'invalid_argument',
      message: 'request has missing or invalid field: filepath',
    });
    expect(lk.emulator.listEgress()).toEqual([]);
  });

  it('lists egresses by id, by room and by activity', async () => {
    const lk = await harness({ finalizeAfterMs: 0 });
    lk.emulator.startSipCall({ room: 'room-a', callerNumber: TEST_CALLER });
    lk.emulator.startSipCall({ room: 'room-b', callerNumber: TEST_CALLER });
    const a1 = await startRecording(lk, 'room-a');
    const a2 = await startRecording(lk, 'room-a');
    const b1 = await startRecording(lk, 'room-b');
    await lk.emulator.waitForEgress(a1.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    await lk.egress.stopEgress(a1.egressId);
    await lk.emulator.waitForEgress(a1.egressId, hasEnded);

    const ids = (infos: EgressInfo[]) => infos.map((info) => info.egressId).sort();
    expect(ids(await lk.egress.listEgress())).toEqual([a1, a2, b1].map((i) => i.egressId).sort());
    expect(ids(await lk.egress.listEgress({ roomName: 'room-a' }))).toEqual(
      [a1.egressId, a2.egressId].sort(),
    );
    expect(ids(await lk.egress.listEgress({ roomName: 'room-a', active: true }))).toEqual([a2.egressId]);
    expect(ids(await lk.egress.listEgress({ active: true }))).toEqual([a2.egressId, b1.egressId].sort());
    expect(ids(await lk.egress.listEgress({ egressId: a1.egressId }))).toEqual([a1.egressId]);
  });

  it('ends the egress with "Source closed" when the room is deleted, and still completes the file', async () => {
    const lk = await harness({ finalizeAfterMs: 0 });
    lk.emulator.startSipCall({ room: 'call-deleted', callerNumber: TEST_CALLER });
    const started = await startRecording(lk, 'call-deleted');
    await lk.emulator.waitForEgress(started.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));

    const ending = lk.emulator.waitForEvent(
      'egress:updated',
      ({ info }) => info.egressId === started.egressId && info.status === EgressStatus.EGRESS_ENDING,
    );
    await lk.rooms.deleteRoom('call-deleted');
    expect((await ending).info.details).toBe('End reason: Source closed');
    const done = await lk.emulator.waitForEgress(started.egressId, hasEnded);
    expect(done.status).toBe(EgressStatus.EGRESS_COMPLETE);
    expect(await exists(done.fileResults[0]!.location)).toBe(true);
  });
});
