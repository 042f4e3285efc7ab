/**
 * In a fleet, an instance acts on a call only while it trusts its lease: every request to
 * LiveKit or the CRM first asks `trusted()`. An instance that was paused (SIGSTOP, a long GC, a
 * partition) and has not renewed in time sends nothing; another instance may own the call by
 * now. The request fails retryable (`LEASE_NOT_TRUSTED`); by the time it would be retried the
 * call has been dropped here, or the lease renewed. A request already past the check when the
 * pause began can still reach the CRM once more: its `Idempotency-Key` makes that harmless.
 */
import { CallsyncError } from '../errors.ts';
import type { CrmEffects, LiveKitEffects } from '../machines/call.actors.ts';

export function leaseNotTrusted(): CallsyncError {
  return new CallsyncError(
    'LEASE_NOT_TRUSTED',
    "this instance's fleet lease is not recent enough to act on; the call may belong to another instance",
    { retryable: true },
  );
}

async function guarded<T>(trusted: () => boolean, run: () => Promise<T>): Promise<T> {
  if (!trusted()) throw leaseNotTrusted();
  return run();
}

export function guardLiveKitEffects<TClient extends object>(
  effects: LiveKitEffects<TClient>,
  trusted: () => boolean,
): LiveKitEffects<TClient> {
  return {
    open: (call) => effects.open(call),
    close: (client) => effects.close(client),
    startEgress: (client, input, signal) =>
      guarded(trusted, () => effects.startEgress(client, input, signal)),
    stopEgress: (client, input, signal) => guarded(trusted, () => effects.stopEgress(client, input, signal)),
    checkEgress: (client, input, signal) =>
      guarded(trusted, () => effects.checkEgress(client, input, signal)),
  };
}

export function guardCrmEffects(effects: CrmEffects, trusted: () => boolean): CrmEffects {
  return {
    uploadRecording: (request, signal, timeoutMs) =>
      guarded(trusted, () => effects.uploadRecording(request, signal, timeoutMs)),
    postCallData: (request, signal, timeoutMs) =>
      guarded(trusted, () => effects.postCallData(request, signal, timeoutMs)),
  };
}
