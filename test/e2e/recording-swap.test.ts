/**
 * The recording swapped for a symlink to a file outside the recordings root while callsync
 * reads it (a file outside the recordings root must never reach the CRM), against the real
 * supervisor with recordings on the shared volume.
 *
 * For each call, the moment its egress is COMPLETE (before callsync has heard of it), a worker
 * thread starts swapping the recording's name between the real file and a link to the outside
 * file, as fast as the file system allows and in parallel with callsync's own file system calls,
 * until the CRM has the call's data. Whatever callsync makes of it (delivered with the
 * recording, or partial because the file changed or led outside the root), the outside file
 * never reaches the CRM, every upload is exactly the call's own recording, and the call data's
 * recording fields agree with what was uploaded. Afterwards a control call is delivered with its
 * recording.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { EgressStatus } from 'livekit-server-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { writeOggOpusRecording } from '../../src/audio/ogg-opus.ts';
import { PERSONA_CONFIG, startCallsyncHarness, type CallsyncHarness } from '../helpers/callsync-harness.ts';
import { watchFinished } from '../helpers/finished-calls.ts';

let h: CallsyncHarness | undefined;
let outsideDir: string | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
  if (outsideDir) await rm(outsideDir, { recursive: true, force: true });
  outsideDir = undefined;
});

const CALLS = 30;
const BASE_MS = Math.floor(Date.now() / 1000) * 1000 - 60_000;
const at = (seconds: number) => new Date(BASE_MS + seconds * 1000).toISOString();
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * Says it is ready, waits for the go (`control[0]` = 1), then renames in a loop until the stop
 * (`control[0]` = 2), always finishing a round so the recording is back under its name at the
 * end: recording → parked, link → recording, recording → link, parked → recording. Counts the
 * rounds in `control[1]`.
 */
const SWAPPER = `
const { renameSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const { recording, parked, link, control } = workerData;
const flag = new Int32Array(control);
parentPort.postMessage('ready');
Atomics.wait(flag, 0, 0);
while (Atomics.load(flag, 0) === 1) {
  renameSync(recording, parked);
  renameSync(link, recording);
  renameSync(recording, link);
  renameSync(parked, recording);
  Atomics.add(flag, 1, 1);
  Atomics.notify(flag, 1);
}
`;

/** How long the go may wait for the first round: only a broken worker takes this long. */
const FIRST_ROUND_TIMEOUT_MS = 5_000;

interface Swapper {
  /**
   * Starts the swapping and returns once the first round is done. It blocks this thread until
   * then, and callsync runs on this thread: it cannot look at the file before a swap happened.
   */
  go(): void;
  /** Stops after the current round (starting none if it never began); resolves with the rounds. */
  stop(): Promise<number>;
}

async function startSwapper(recording: string, link: string): Promise<Swapper> {
  const control = new SharedArrayBuffer(8);
  const flag = new Int32Array(control);
  const worker = new Worker(SWAPPER, {
    eval: true,
    workerData: { recording, parked: `${recording}.parked`, link, control },
  });
  const exited = new Promise<void>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`swapper exited ${code}`))));
  });
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    exited.catch(reject);
  });
  return {
    go() {
      if (Atomics.compareExchange(flag, 0, 0, 1) !== 0) return;
      Atomics.notify(flag, 0);
      const deadline = Date.now() + FIRST_ROUND_TIMEOUT_MS;
      while (Atomics.load(flag, 1) === 0) {
        if (Date.now() > deadline) throw new Error('the swapper did not complete a round');
        Atomics.wait(flag, 1, 0, 100);
      }
    },
    async stop() {
      Atomics.store(flag, 0, 2);
      Atomics.notify(flag, 0);
      await exited;
      return Atomics.load(flag, 1);
    },
  };
}

describe('the recording swapped for a link out of the root during the read', () => {
  it(`never sends the outside file to the CRM (${CALLS} calls), then delivers a control call`, async () => {
    h = await startCallsyncHarness();
    outsideDir = await mkdtemp(join(tmpdir(), 'callsync-outside-'));
    const outside = join(outsideDir, 'secret.ogg');
    // A valid Ogg Opus file of another length than any call's: were it read, it would be sent.
    await writeOggOpusRecording(outside, { durationSeconds: 3.3 });
    const outsideSha = sha256(await readFile(outside));

    const outcomes = new Map<string, number>();
    let totalRounds = 0;
    for (let index = 0; index < CALLS; index += 1) {
      const room = `room-swap-${index}`;
      const finished = watchFinished(h.app.supervisor);
      h.startLiveKitCall(room);
      const callId = await h.createCall(room, { startedAt: at(0) });
      await h.api('POST', `/v1/calls/${callId}/transcript`, {
        items: [{ id: `${room}-1`, role: 'user', content: 'hello', timestamp: at(2) }],
      });
      const egressId = await h.recordingStarted(room);

      // Where the egress will write the file; a link to the outside file beside it.
      const recording = join(h.recordingsDir, h.emulator.getEgress(egressId)!.fileResults[0]!.filename);
      const link = `${recording}.link`;
      await mkdir(dirname(recording), { recursive: true });
      await symlink(outside, link);
      const swapper = await startSwapper(recording, link);
      // The file is final the moment the egress is COMPLETE; callsync learns of it only later
      // (a webhook, or its next poll). The go is given inside the event's predicate, which the
      // emulator calls as it emits, and returns after a first swap: the swapping is under way
      // before callsync looks.
      const complete = h.emulator.waitForEvent('egress:updated', (event) => {
        const final = event.info.egressId === egressId && event.info.status === EgressStatus.EGRESS_COMPLETE;
        if (final) swapper.go();
        return final;
      });

      let document;
      let rounds;
      try {
        expect((await h.api('POST', `/v1/calls/${callId}/end`, { endedAt: at(5) })).status).toBe(202);
        await complete;
        ({ document } = await h.crm.waitForCallData(callId));
      } finally {
        rounds = await swapper.stop();
      }
      // The name was being swapped while callsync opened and read the file.
      expect(rounds).toBeGreaterThan(0);
      totalRounds += rounds;
      const outcome = await finished.outcome(callId);
      finished.stop();
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);

      // Only the call's own recording was ever uploaded for it, and the call data agrees.
      const ownSha = sha256(await readFile(recording));
      const uploads = h.crm
        .received()
        .uploads.filter((upload) => upload.idempotencyKey === `${callId}:recording`);
      for (const upload of uploads) expect(upload.sha256).toBe(ownSha);
      expect(outcome === 'delivered' || outcome === 'partial').toBe(true);
      if (outcome === 'delivered') {
        expect(uploads.length).toBeGreaterThan(0);
        expect(document.callDetails.recordingSize).toBe(uploads[0]!.sizeBytes);
      } else {
        expect(document.callDetails).toMatchObject({ recordingUrl: null, recordingSize: null });
      }
      expect(document.transcription.conversation_items.map((entry) => entry.content)).toEqual(['hello']);
    }

    // Nothing from outside the root, in any call.
    expect(h.crm.received().uploads.map((upload) => upload.sha256)).not.toContain(outsideSha);
    console.info(`swap test: ${JSON.stringify(Object.fromEntries(outcomes))}, ${totalRounds} swap rounds`);

    // The service still delivers, recording and all.
    const room = 'room-control';
    const finished = watchFinished(h.app.supervisor);
    h.startLiveKitCall(room);
    const created = await h.api('POST', '/v1/calls', {
      roomName: room,
      callerNumber: '+918655066243',
      config: PERSONA_CONFIG,
      startedAt: at(0),
    });
    const callId = created.body.callId as string;
    expect((await h.api('POST', `/v1/calls/${callId}/leads`, { leadId: 'lead-control' })).status).toBe(202);
    const egressId = await h.recordingStarted(room);
    expect((await h.api('POST', `/v1/calls/${callId}/end`, { endedAt: at(5) })).status).toBe(202);
    const { document } = await h.crm.waitForCallData(callId);
    expect(await finished.outcome(callId)).toBe('delivered');
    finished.stop();
    const [upload] = h.crm
      .received()
      .uploads.filter((entry) => entry.idempotencyKey === `${callId}:recording`);
    const file = await readFile(h.emulator.getEgress(egressId)!.fileResults[0]!.location);
    expect(upload?.sha256).toBe(sha256(file));
    expect(document.callDetails.recordingSize).toBe(file.length);
    expect(document.lead).toMatchObject({ leadId: 'lead-control' });
  }, 240_000);
});
