/**
 * In a fleet no request reaches LiveKit or the CRM while the instance does not trust its lease
 * (the fleet section of the contract: a stalled instance must not act for a call another may
 * own by now). The guard is checked at the moment of each request, not when the call started.
 */
import { describe, expect, it } from 'vitest';
import type { CrmEffects, LiveKitEffects } from '../../src/machines/call.actors.ts';
import { guardCrmEffects, guardLiveKitEffects } from '../../src/services/lease-guard.ts';

function recordingEffects() {
  const calls: string[] = [];
  const crm: CrmEffects = {
    uploadRecording: () => {
      calls.push('upload');
      return Promise.resolve({ url: 'https://crm.example/f.ogg' } as never);
    },
    postCallData: () => {
      calls.push('call-data');
      return Promise.resolve({} as never);
    },
  };
  const liveKit: LiveKitEffects<object> = {
    open: () => ({}),
    close: () => undefined,
    startEgress: () => {
      calls.push('start');
      return Promise.resolve({} as never);
    },
    stopEgress: () => {
      calls.push('stop');
      return Promise.resolve({} as never);
    },
    checkEgress: () => {
      calls.push('check');
      return Promise.resolve({} as never);
    },
  };
  return { calls, crm, liveKit };
}

const signal = new AbortController().signal;

describe('lease guard', () => {
  it('lets every request through while the lease is trusted, and none once it is not', async () => {
    let trusted = true;
    const effects = recordingEffects();
    const crm = guardCrmEffects(effects.crm, () => trusted);
    const liveKit = guardLiveKitEffects(effects.liveKit, () => trusted);
    const client = liveKit.open({} as never);
    await crm.uploadRecording({} as never, signal);
    await crm.postCallData({} as never, signal);
    await liveKit.startEgress(client, {} as never, signal);
    await liveKit.stopEgress(client, {} as never, signal);
    await liveKit.checkEgress(client, {} as never, signal);
    expect(effects.calls).toEqual(['upload', 'call-data', 'start', 'stop', 'check']);

    trusted = false;
    const refused = [
      crm.uploadRecording({} as never, signal),
      crm.postCallData({} as never, signal),
      liveKit.startEgress(client, {} as never, signal),
      liveKit.stopEgress(client, {} as never, signal),
      liveKit.checkEgress(client, {} as never, signal),
    ];
    for (const attempt of refused) {
      await expect(attempt).rejects.toMatchObject({ code: 'LEASE_NOT_TRUSTED', retryable: true });
    }
    expect(effects.calls).toHaveLength(5);
  });
});
