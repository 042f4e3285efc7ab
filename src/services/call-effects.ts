/**
 * The production side effects of a call actor, over the real services: the per-call LiveKit
 * egress client, the recording storage (a shared volume or a bucket) and the CRM client. `createCallLogic` (machines/)
 * turns these into the machines' named actors; tests supply fakes through the same interface.
 *
 * Idempotency policy, so that restoring a call (which re-runs the effect in flight) never
 * records or delivers twice:
 * - start: an egress id already in context is reused while LiveKit still knows it; otherwise an
 *   egress still active for the room is adopted before a new one is started.
 * - stop: an egress that already ended (412) or that LiveKit forgot (404) counts as stopped.
 * - CRM: the client sends `Idempotency-Key: <callId>:recording` / `<callId>:call-data`.
 */
import type { CrmEffects, LiveKitEffects } from '../machines/call.effects.ts';
import type { EgressOutcome } from '../machines/call.types.ts';
import type { CrmClient } from './crm.client.ts';
import {
  CallEgressClient,
  type CallEgressClientOptions,
  type EgressSnapshot,
  type StartRecordingOptions,
} from './egress.client.ts';
import type { RecordingStorage } from './storage/index.ts';
import { CallsyncError } from '../errors.ts';

const ALREADY_ENDED_CODES = new Set(['EGRESS_ALREADY_ENDED', 'LIVEKIT_NOT_FOUND']);

function toMachineOutcome(snapshot: EgressSnapshot): EgressOutcome {
  const status =
    snapshot.state === 'starting' || snapshot.state === 'active' || snapshot.state === 'ending'
      ? 'active'
      : snapshot.state;
  const file = snapshot.file
    ? {
        filename: snapshot.file.filename,
        location: snapshot.file.location,
        sizeBytes: snapshot.file.sizeBytes ?? undefined,
        durationSeconds: snapshot.file.durationSeconds ?? undefined,
      }
    : null;
  return { status, file, ...(snapshot.error === null ? {} : { error: snapshot.error }) };
}

export { toMachineOutcome as egressOutcomeOf };

export interface LiveKitEffectsOptions extends CallEgressClientOptions {
  /** Egress filepath template (`CALLSYNC_RECORDING_FILEPATH`). */
  recordingFilepath: string;
  /** The upload settings every StartEgress carries (`RecordingStorage.egressUpload`). */
  upload?: StartRecordingOptions['upload'];
}

export function createLiveKitEffects(options: LiveKitEffectsOptions): LiveKitEffects<CallEgressClient> {
  const { recordingFilepath, upload, ...clientOptions } = options;
  return {
    open: () => new CallEgressClient(clientOptions),
    close: (client) => client.close(),

    async startEgress(client, input) {
      if (input.egressId !== null) {
        try {
          const known = await client.status(input.egressId);
          return { egressId: known.egressId, roomSid: known.roomId || undefined };
        } catch (error) {
          if (!(error instanceof CallsyncError && error.code === 'LIVEKIT_NOT_FOUND')) throw error;
        }
      }
      const [running] = await client.listActive(input.roomName);
      if (running) return { egressId: running.egressId, roomSid: running.roomId || undefined };
      const started = await client.startRecording({
        roomName: input.roomName,
        filepath: recordingFilepath,
        upload,
      });
      return { egressId: started.egressId, roomSid: started.roomId || undefined };
    },

    async stopEgress(client, input) {
      try {
        await client.stop(input.egressId);
        return { alreadyEnded: false };
      } catch (error) {
        if (error instanceof CallsyncError && ALREADY_ENDED_CODES.has(error.code))
          return { alreadyEnded: true };
        throw error;
      }
    },

    async checkEgress(client, input) {
      return toMachineOutcome(await client.status(input.egressId));
    },
  };
}

export function createCrmEffects(deps: { crm: CrmClient; storage: RecordingStorage }): CrmEffects {
  return {
    async uploadRecording(request, signal, timeoutMs) {
      // A fresh read for every attempt: a stream is single-use, and the object may have changed.
      const recording = await deps.storage.open(request.file, signal);
      try {
        const { url } = await deps.crm.uploadRecording({
          callId: request.callId,
          recording,
          timeoutMs,
          signal,
        });
        return { url, sizeBytes: recording.sizeBytes, durationSeconds: recording.durationSeconds };
      } finally {
        await recording.close();
      }
    },
    async postCallData(request, signal, timeoutMs) {
      const { status } = await deps.crm.postCallData({
        callId: request.callId,
        document: request.document,
        signal,
        timeoutMs,
      });
      return { status };
    },
  };
}
