/**
 * The emulator object itself: start/close, and waits that end instead of hanging.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EgressClient, EgressStatus } from 'livekit-server-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLiveKitEmulator } from '../../src/sandbox/livekit/index.ts';
import { TEST_API_KEY, TEST_API_SECRET, oggOutput } from '../helpers/livekit-emulator-harness.ts';

let recordingsDir: string;
beforeEach(async () => {
  recordingsDir = await mkdtemp(join(tmpdir(), 'livekit-emulator-'));
});
afterEach(async () => {
  await rm(recordingsDir, { recursive: true, force: true });
});

function emulator() {
  return createLiveKitEmulator({ keys: { [TEST_API_KEY]: TEST_API_SECRET }, recordingsDir });
}

describe('LiveKit emulator: lifecycle', () => {
  it('has a url only once started, starts once, and closes twice safely', async () => {
    const lk = emulator();
    expect(() => lk.url).toThrow('not started');
    const { url } = await lk.start();
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(lk.url).toBe(url);
    expect((await lk.start()).url).toBe(url);
    expect(await (await fetch(url)).text()).toBe('OK');

    await Promise.all([lk.close(), lk.close()]);
    await lk.close();
    await expect(fetch(url)).rejects.toThrow();
    await expect(lk.start()).rejects.toThrow('closed');
  });

  it('refuses keys it cannot sign webhooks with', () => {
    expect(() => createLiveKitEmulator({ keys: {}, recordingsDir })).toThrow('at least one API key');
    expect(() => createLiveKitEmulator({ keys: { a: 'secret' }, recordingsDir, webhookApiKey: 'b' })).toThrow(
      'webhookApiKey b is not in keys',
    );
  });

  it('rejects pending waits on close, and waits that time out name the last status', async () => {
    const lk = emulator();
    await lk.start();
    lk.createRoom({ name: 'quiet' }); // nobody publishes audio: the egress stays STARTING
    const client = new EgressClient(lk.url, TEST_API_KEY, TEST_API_SECRET);
    const info = await client.startRoomCompositeEgress('quiet', oggOutput(), { audioOnly: true });

    await expect(
      lk.waitForEgress(info.egressId, (i) => i.status === EgressStatus.EGRESS_COMPLETE, { timeoutMs: 1 }),
    ).rejects.toThrow(`waiting for egress ${info.egressId} (last status EGRESS_STARTING)`);

    const pending = lk.waitForEvent('room:finished');
    await lk.close();
    await expect(pending).rejects.toThrow('closed');
  });
});
