/**
 * The call actor's LiveKit effects over the per-call egress client (`egress.client.ts`):
 * `createCallLogic` (`machines/call.actors.ts`) turns them into the machine's named actors; tests
 * supply fakes through the same `LiveKitEffects` interface.
 *
 * Idempotency policy, so that restoring a call (which re-runs the effect in flight) never
 * records twice:
 * - start: an egress id already in context is reused while LiveKit still knows it; otherwise,
 *   when an earlier attempt may have reached LiveKit (`mayHaveStarted`: a retry, or a restored
 *   call), an egress still active for the room is adopted before a new one is started. A new
 *   call's first attempt starts at once: there is nothing to adopt, and a room's leftover
 *   egress from an earlier call is not this call's recording.
 * - stop: an egress that already ended (412) or that LiveKit forgot (404) counts as stopped.
 */
import { CallsyncError } from '../errors.ts';
import type { LiveKitEffects } from '../machines/call.actors.ts';
import type { EgressOutcome } from '../machines/call.types.ts';
import {
  CallEgressClient,
  type CallEgressClientOptions,
  type EgressSnapshot,
  type StartRecordingOptions,
} from './egress.client.ts';
import { LiveKitTokenSource } from './livekit-token.ts';

const ALREADY_ENDED_CODES = new Set(['EGRESS_ALREADY_ENDED', 'LIVEKIT_NOT_FOUND']);

/** An egress's status as the machine reads it (from `ListEgress` or a webhook): STARTING and ENDING are `active`. */
export function egressOutcomeOf(snapshot: EgressSnapshot): EgressOutcome {
  const status =
    snapshot.state === 'starting' || snapshot.state === 'active' || snapshot.state === 'ending'
      ? 'active'
      : snapshot.state;
  return { status, file: snapshot.file, ...(snapshot.error === null ? {} : { error: snapshot.error }) };
}

export interface LiveKitEffectsOptions extends CallEgressClientOptions {
  /** Egress filepath template (`CALLSYNC_RECORDING_FILEPATH`). */
  recordingFilepath: string;
  /** The upload settings every StartEgress carries (`RecordingStorage.egressUpload`). */
  upload?: StartRecordingOptions['upload'];
}

export function createLiveKitEffects(options: LiveKitEffectsOptions): LiveKitEffects<CallEgressClient> {
  const { recordingFilepath, upload, ...clientOptions } = options;
  // One token for every call's client (it is renewed long before it expires).
  const tokens = clientOptions.tokens ?? new LiveKitTokenSource(clientOptions);
  return {
    open: () => new CallEgressClient({ ...clientOptions, tokens }),
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
      if (input.mayHaveStarted) {
        const [running] = await client.listActive(input.roomName);
        if (running) return { egressId: running.egressId, roomSid: running.roomId || undefined };
      }
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
      return egressOutcomeOf(await client.status(input.egressId));
    },
  };
}
