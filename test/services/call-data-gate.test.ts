/**
 * The call-data gate (`services/call-data-gate.ts`): the call data goes to the CRM only once the
 * call's snapshot is stored, and a call stopped meanwhile sends nothing. The effects behind it
 * record what reaches them; the store's answer is a promise the test settles.
 */
import { describe, expect, it } from 'vitest';
import type { CrmEffects } from '../../src/machines/call.actors.ts';
import type { PostCallDataRequest, UploadRecordingRequest } from '../../src/machines/call.types.ts';
import { gateCallDataOnStoredSnapshot } from '../../src/services/call-data-gate.ts';

const request = {
  step: 'call-data',
  callId: 'call-1',
  idempotencyKey: 'call-1:call-data',
} as PostCallDataRequest;

function recording() {
  const sent: string[] = [];
  const effects: CrmEffects = {
    uploadRecording: (upload: UploadRecordingRequest) => {
      sent.push(`upload ${upload.callId}`);
      return Promise.resolve({ url: 'https://crm.example/r.ogg', sizeBytes: 1, durationSeconds: 1 } as never);
    },
    postCallData: (post) => {
      sent.push(`call-data ${post.callId}`);
      return Promise.resolve({ status: 200 });
    },
  };
  return { sent, effects };
}

function deferred() {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  return { promise, resolve, reject };
}

/** Lets every pending promise callback run. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('gateCallDataOnStoredSnapshot', () => {
  it('sends the call data only after the store holds the call, asking for that call', async () => {
    const { sent, effects } = recording();
    const stored = deferred();
    const asked: string[] = [];
    const gated = gateCallDataOnStoredSnapshot(effects, (callId) => {
      asked.push(callId);
      return stored.promise;
    });
    const posted = gated.postCallData(request, new AbortController().signal);
    await turn();
    expect(asked).toEqual(['call-1']);
    expect(sent).toEqual([]);
    stored.resolve();
    expect(await posted).toEqual({ status: 200 });
    expect(sent).toEqual(['call-data call-1']);
  });

  it('sends nothing when the call is stopped while it waits, or the store fails to hold it', async () => {
    const { sent, effects } = recording();
    const stored = deferred();
    const gated = gateCallDataOnStoredSnapshot(effects, () => stored.promise);
    const stop = new AbortController();
    const posted = gated.postCallData(request, stop.signal);
    await turn();
    stop.abort(new Error('call stopped'));
    await expect(posted).rejects.toThrow('call stopped');
    stored.resolve();
    await turn();

    const unavailable = gateCallDataOnStoredSnapshot(effects, () =>
      Promise.reject(new Error('the call store is closed')),
    );
    await expect(unavailable.postCallData(request, new AbortController().signal)).rejects.toThrow(
      'the call store is closed',
    );
    expect(sent).toEqual([]);
  });

  it('leaves the recording upload alone', async () => {
    const { sent, effects } = recording();
    const gated = gateCallDataOnStoredSnapshot(effects, () => new Promise<void>(() => undefined));
    await gated.uploadRecording(
      { step: 'recording', callId: 'call-1' } as UploadRecordingRequest,
      new AbortController().signal,
    );
    expect(sent).toEqual(['upload call-1']);
  });
});
