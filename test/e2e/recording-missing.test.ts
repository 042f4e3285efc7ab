/**
 * A recording never holds back the transcript and the lead (the contract's partial rule), end to
 * end through callsync's HTTP API: one test per cause the contract lists. Each call ends
 * `partial`, the CRM gets the call data with the recording fields `null`, every transcript item
 * and the lead, and the call's journal says why.
 */
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EgressStatus } from 'livekit-server-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RoomBehaviour } from '../../src/sandbox/livekit/index.ts';
import type { CrmFault } from '../../src/sandbox/crm/faults.ts';
import {
  startCallsyncHarness,
  type CallsyncHarness,
  type HarnessOptions,
} from '../helpers/callsync-harness.ts';
import { callTimes } from '../helpers/callsync-api.ts';
import { startAzurite, type AzuriteTestServer } from '../helpers/storage-servers.ts';

let h: CallsyncHarness | undefined;
let azure: AzuriteTestServer;
let elsewhere: string;

beforeAll(async () => {
  azure = await startAzurite();
  elsewhere = await mkdtemp(join(tmpdir(), 'callsync-other-volume-'));
}, 60_000);
afterEach(async () => {
  await h?.close();
  h = undefined;
});
afterAll(async () => {
  await azure?.close();
  await rm(elsewhere, { recursive: true, force: true });
});

const { at } = callTimes();
const ITEMS = [
  { id: 'm1', role: 'assistant', content: 'Hello, this is Acme.', timestamp: at(1) },
  { id: 'm2', role: 'user', content: 'I want a callback tomorrow.', timestamp: at(3) },
  { id: 'm3', role: 'assistant', content: 'Booked for ten o clock.', timestamp: at(5) },
];
const LEAD = { leadId: 'lead-partial', data: { callback: 'tomorrow 10:00' } };

/**
 * The call's data as the CRM stored it, checked for what the partial rule promises: recording
 * fields null, every transcript item and the lead still there.
 */
async function callDataWithoutRecording(callId: string) {
  const { document } = await h!.crm.waitForCallData(callId, { timeoutMs: 30_000 });
  expect(document.callDetails).toMatchObject({
    recordingUrl: null,
    recordingDuration: null,
    recordingSize: null,
  });
  expect(document.transcription.conversation_items.map((item) => item.content)).toEqual(
    ITEMS.map((item) => item.content),
  );
  expect(document.lead).toMatchObject({ leadId: LEAD.leadId });
  return document;
}

/** Holds `egress_ended` (and polls rarely) so the test can spoil the file before callsync reads it. */
const HOLD_EGRESS_ENDED: RoomBehaviour = {
  webhooks: { hold: [{ event: 'egress_ended', until: 'room_started' }] },
};
const RARE_POLLS = { egressPollIntervalMs: 600_000 };

interface Cause {
  name: string;
  reason: string;
  harness?: () => HarnessOptions;
  behaviour?: RoomBehaviour;
  crmFaults?: CrmFault[];
  /** Runs once the egress is COMPLETE and before callsync learns it (with HOLD_EGRESS_ENDED). */
  spoil?: (location: string) => Promise<void>;
}

const causes: Cause[] = [
  { name: 'the egress failed', reason: 'egress_failed', behaviour: { egressOutcome: 'failed' } },
  { name: 'the egress aborted', reason: 'egress_aborted', behaviour: { egressOutcome: 'aborted' } },
  {
    name: 'the egress never started (LiveKit Cloud refuses a file output without storage)',
    reason: 'egress_not_started',
    harness: () => ({ emulator: { requireStorage: true } }),
  },
  {
    name: 'the egress was not final within the egress deadline',
    reason: 'egress_timed_out',
    harness: () => ({ env: { CALLSYNC_EGRESS_DEADLINE_SECONDS: '1' } }),
    behaviour: { egressOutcome: 'stuck_ending' },
  },
  {
    name: 'the file is missing',
    reason: 'file_missing',
    harness: () => ({ limits: RARE_POLLS }),
    behaviour: HOLD_EGRESS_ENDED,
    spoil: (location) => unlink(location),
  },
  {
    name: 'the file is not Ogg',
    reason: 'file_not_ogg',
    harness: () => ({ limits: RARE_POLLS }),
    behaviour: HOLD_EGRESS_ENDED,
    spoil: (location) => writeFile(location, 'RIFF....WAVEfmt this is no Ogg stream'),
  },
  {
    name: 'the file is outside the recordings root',
    reason: 'file_outside_root',
    harness: () => ({ env: { CALLSYNC_RECORDINGS_DIR: elsewhere } }),
  },
  {
    name: 'the storage refuses callsync (wrong Azure key; the egress used its own storage block)',
    reason: 'storage_refused',
    harness: () => ({
      env: {
        CALLSYNC_EGRESS_STORAGE: 'azure',
        CALLSYNC_EGRESS_SEND_STORAGE: 'false',
        CALLSYNC_AZURE_ACCOUNT_NAME: azure.accountName,
        CALLSYNC_AZURE_ACCOUNT_KEY: Buffer.from('a key this account does not have').toString('base64'),
        CALLSYNC_AZURE_CONTAINER: azure.container,
        CALLSYNC_AZURE_BLOB_ENDPOINT: azure.blobEndpoint,
      },
      emulator: {
        azureBlobEndpoint: azure.blobEndpoint,
        serverStorage: {
          azure: {
            accountName: azure.accountName,
            accountKey: azure.accountKey,
            containerName: azure.container,
          },
        },
      },
    }),
  },
  { name: 'the CRM refuses the upload with 413', reason: 'crm_refused', crmFaults: [{ status: 413 }] },
  { name: 'the CRM refuses the upload with 401', reason: 'crm_refused', crmFaults: [{ status: 401 }] },
  {
    name: 'the CRM answers the upload 200 with no JSON',
    reason: 'crm_refused',
    crmFaults: [{ status: 200, body: 'OK' }],
  },
  {
    name: 'the CRM answers the upload 200 without a file URL',
    reason: 'crm_refused',
    crmFaults: [{ status: 200, body: { success: true } }],
  },
];

describe('a recording never holds back the call data', () => {
  it.each(causes)('$name → partial ($reason)', async (cause) => {
    h = await startCallsyncHarness(cause.harness?.());
    const room = `room-${cause.reason}`;
    h.startLiveKitCall(room);
    h.emulator.setRoomBehaviour(room, { recordingSeconds: 4, ...cause.behaviour });
    if (cause.crmFaults) h.crm.injectFaults('upload', cause.crmFaults);

    const callId = await h.createCall(room, { startedAt: at(0) });
    expect((await h.api('POST', `/v1/calls/${callId}/transcript`, { items: ITEMS })).status).toBe(202);
    expect((await h.api('POST', `/v1/calls/${callId}/leads`, LEAD)).status).toBe(202);
    const egressId = h.emulator.listEgress({ roomName: room })[0]?.egressId;
    if (egressId !== undefined && cause.reason !== 'egress_aborted') {
      await h.emulator.waitForEgress(egressId, (info) => info.status !== EgressStatus.EGRESS_STARTING);
    }
    expect(
      (await h.api('POST', `/v1/calls/${callId}/end`, { endedAt: at(8), status: 'completed' })).status,
    ).toBe(202);
    if (cause.spoil) {
      const final = await h.emulator.waitForEgress(
        egressId!,
        (info) => info.status === EgressStatus.EGRESS_COMPLETE,
      );
      await cause.spoil(final.fileResults[0]!.location);
      h.emulator.releaseHeldWebhooks(room);
    }

    const document = await callDataWithoutRecording(callId);
    expect(document.transcription.lead_generated).toBe(true);
    expect(h.crm.received().uploads).toHaveLength(0);

    const call = await h.api('GET', `/v1/calls/${callId}`);
    expect(call.body).toMatchObject({ state: 'done', outcome: 'partial' });
    const journal = call.body.journal as { kind: string; detail?: { reason?: string } }[];
    expect(
      journal.filter((entry) => entry.kind === 'recording_missing').map((entry) => entry.detail?.reason),
    ).toEqual([cause.reason]);
    expect(await h.app.registry.getSingleMetricAsString('callsync_recordings_missing_total')).toContain(
      `callsync_recordings_missing_total{reason="${cause.reason}"} 1`,
    );
  });
});

describe('a call for a room LiveKit does not know', () => {
  it('is refused an egress as LiveKit refuses it (not_found), and the journal says why there is no recording', async () => {
    h = await startCallsyncHarness();
    // No startLiveKitCall: the emulator has no such room, as when the agent reports a wrong name.
    const room = 'room-livekit-never-had';
    expect(h.emulator.getRoom(room)).toBeUndefined();

    const callId = await h.createCall(room, { startedAt: at(0) });
    expect((await h.api('POST', `/v1/calls/${callId}/transcript`, { items: ITEMS })).status).toBe(202);
    expect((await h.api('POST', `/v1/calls/${callId}/leads`, LEAD)).status).toBe(202);
    expect(
      (await h.api('POST', `/v1/calls/${callId}/end`, { endedAt: at(8), status: 'completed' })).status,
    ).toBe(202);

    const document = await callDataWithoutRecording(callId);
    expect(document.transcription.metadata).toMatchObject({
      room_name: room,
      egress_id: null,
      recording_missing_reason: 'egress_not_started',
    });
    expect(h.crm.received().uploads).toHaveLength(0);
    expect(h.emulator.listEgress({ roomName: room })).toEqual([]);

    const call = await h.api('GET', `/v1/calls/${callId}`);
    expect(call.body).toMatchObject({ state: 'done', outcome: 'partial' });
    const journal = call.body.journal as {
      kind: string;
      detail?: { reason?: string; error?: { code?: string; message?: string; retryable?: boolean } | null };
    }[];
    const missing = journal.filter((entry) => entry.kind === 'recording_missing');
    expect(missing.map((entry) => entry.detail?.reason)).toEqual(['egress_not_started']);
    // The journal says why there is no recording: LiveKit's answer to the start.
    expect(missing[0]!.detail?.error).toMatchObject({ code: 'LIVEKIT_NOT_FOUND' });
    // The error LiveKit answered is kept: code, message, and that it is not worth retrying.
    const startFailures = journal.filter((entry) => entry.kind === 'egress_start_failed');
    expect(startFailures).toHaveLength(1);
    expect(startFailures[0]!.detail?.error).toMatchObject({
      code: 'LIVEKIT_NOT_FOUND',
      retryable: false,
      message: expect.stringContaining('requested room does not exist') as string,
    });
    expect(await h.app.registry.getSingleMetricAsString('callsync_recordings_missing_total')).toContain(
      'callsync_recordings_missing_total{reason="egress_not_started"} 1',
    );
  });
});
