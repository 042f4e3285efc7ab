/**
 * The call actor's CRM effects over the CRM client (`crm.client.ts`) and the recording storage:
 * `createCallLogic` (`machines/call.actors.ts`) turns them into the upload machine's `deliver`
 * actor; tests supply fakes through the same `CrmEffects` interface.
 *
 * Idempotency policy: the client sends `Idempotency-Key: <callId>:recording` /
 * `<callId>:call-data`, so an attempt re-run after a restore is one step to the CRM. Each upload
 * attempt opens the recording afresh: a stream is single-use, and the object may have changed.
 */
import type { CrmEffects } from '../machines/call.actors.ts';
import type { CrmClient } from './crm.client.ts';
import type { RecordingStorage } from './storage/index.ts';

export function createCrmEffects(deps: { crm: CrmClient; storage: RecordingStorage }): CrmEffects {
  return {
    async uploadRecording(request, signal, timeoutMs) {
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
