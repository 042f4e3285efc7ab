/**
 * End to end with recordings in a bucket, through callsync's HTTP API only: the LiveKit
 * emulator uploads each egress's .ogg to a real local store (s3rver, the GCS fake, Azurite)
 * before it reports COMPLETE, and callsync reads it back from its own settings plus the
 * egress's `filename`. Each run checks what the contract promises: the CRM gets exactly the
 * stored bytes, the call data carries their size and duration, the egress request carried
 * exactly the configured storage (or none), and no secret appears in any log line at trace level.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EgressStatus } from 'livekit-server-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  startCallsyncHarness,
  type CallsyncHarness,
  type HarnessOptions,
} from '../helpers/callsync-harness.ts';
import { callTimes } from '../helpers/callsync-api.ts';
import {
  readAzureBlob,
  readGcsObject,
  readS3Object,
  startAzurite,
  startGcsFake,
  startS3rver,
  type AzuriteTestServer,
  type GcsTestServer,
  type S3TestServer,
} from '../helpers/storage-servers.ts';

let dir: string;
let s3: S3TestServer;
let azure: AzuriteTestServer;
let gcs: GcsTestServer;
let gcsKeyFile: string;
let h: CallsyncHarness | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'callsync-e2e-storage-'));
  [s3, azure, gcs] = await Promise.all([startS3rver(), startAzurite(), startGcsFake()]);
  gcsKeyFile = join(dir, 'gcs-key.json');
  await writeFile(gcsKeyFile, gcs.credentialsJson);
}, 60_000);

afterEach(async () => {
  await h?.close();
  h = undefined;
});

afterAll(async () => {
  await Promise.all([s3?.close(), azure?.close(), gcs?.close()]);
  await rm(dir, { recursive: true, force: true });
});

const { at } = callTimes();
const RECORDING_SECONDS = 7.4;

interface StorageCase {
  name: string;
  harness: () => HarnessOptions;
  /** What the egress must have uploaded with (`emulator.egressStorage`). */
  expectedUpload: () => { source: 'request' | 'server'; provider: string; settings: Record<string, unknown> };
  readStored: (key: string) => Promise<Buffer>;
  secrets: () => string[];
}

const s3Env = (send: boolean) => ({
  CALLSYNC_EGRESS_STORAGE: 's3',
  CALLSYNC_S3_BUCKET: s3.bucket,
  CALLSYNC_S3_REGION: s3.region,
  CALLSYNC_S3_ENDPOINT: s3.endpoint,
  CALLSYNC_S3_FORCE_PATH_STYLE: 'true',
  CALLSYNC_S3_ACCESS_KEY_ID: s3.accessKeyId,
  CALLSYNC_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
  CALLSYNC_EGRESS_SEND_STORAGE: String(send),
});
const s3Upload = () => ({
  accessKey: s3.accessKeyId,
  secret: s3.secretAccessKey,
  region: s3.region,
  endpoint: s3.endpoint,
  bucket: s3.bucket,
  forcePathStyle: true,
});

const cases: StorageCase[] = [
  {
    name: 's3, the egress request carrying the storage (LiveKit Cloud)',
    harness: () => ({ env: s3Env(true), emulator: { requireStorage: true } }),
    expectedUpload: () => ({ source: 'request', provider: 's3', settings: s3Upload() }),
    readStored: (key) => readS3Object(s3, key),
    secrets: () => [s3.secretAccessKey],
  },
  {
    name: "s3 with CALLSYNC_EGRESS_SEND_STORAGE=false (the egress server's own storage: block)",
    harness: () => ({
      env: s3Env(false),
      emulator: { requireStorage: true, serverStorage: { s3: s3Upload() } },
    }),
    expectedUpload: () => ({ source: 'server', provider: 's3', settings: s3Upload() }),
    readStored: (key) => readS3Object(s3, key),
    secrets: () => [s3.secretAccessKey],
  },
  {
    name: 'gcs',
    harness: () => ({
      env: {
        CALLSYNC_EGRESS_STORAGE: 'gcs',
        CALLSYNC_GCS_BUCKET: gcs.bucket,
        CALLSYNC_GCS_CREDENTIALS_FILE: gcsKeyFile,
        CALLSYNC_GCS_ENDPOINT: gcs.endpoint,
      },
      emulator: { requireStorage: true, gcsEndpoint: gcs.endpoint },
    }),
    expectedUpload: () => ({
      source: 'request',
      provider: 'gcp',
      settings: { bucket: gcs.bucket, credentials: gcs.credentialsJson },
    }),
    readStored: (key) => readGcsObject(gcs, key),
    secrets: () => [(JSON.parse(gcs.credentialsJson) as { private_key: string }).private_key.split('\n')[1]!],
  },
  {
    name: 'azure',
    harness: () => ({
      env: {
        CALLSYNC_EGRESS_STORAGE: 'azure',
        CALLSYNC_AZURE_ACCOUNT_NAME: azure.accountName,
        CALLSYNC_AZURE_ACCOUNT_KEY: azure.accountKey,
        CALLSYNC_AZURE_CONTAINER: azure.container,
        CALLSYNC_AZURE_BLOB_ENDPOINT: azure.blobEndpoint,
      },
      emulator: { requireStorage: true, azureBlobEndpoint: azure.blobEndpoint },
    }),
    expectedUpload: () => ({
      source: 'request',
      provider: 'azure',
      settings: {
        accountName: azure.accountName,
        accountKey: azure.accountKey,
        containerName: azure.container,
      },
    }),
    readStored: (key) => readAzureBlob(azure, key),
    secrets: () => [azure.accountKey],
  },
];

describe.each(cases)('recordings in $name', (storageCase) => {
  it('delivers exactly the stored recording, then the call data with its size and duration', async () => {
    const options = storageCase.harness();
    h = await startCallsyncHarness({ ...options, env: { ...options.env, LOG_LEVEL: 'trace' } });
    const room = 'room-bucket';
    h.startLiveKitCall(room);
    h.emulator.setRoomBehaviour(room, { recordingSeconds: RECORDING_SECONDS });
    const callId = await h.createCall(room, { startedAt: at(0) });
    await h.api('POST', `/v1/calls/${callId}/transcript`, {
      items: [{ id: 'i1', role: 'user', content: 'Store it in the cloud, please.', timestamp: at(2) }],
    });
    await h.api('POST', `/v1/calls/${callId}/leads`, { leadId: 'lead-bucket', data: { plan: 'premium' } });
    const egressId = await h.recordingStarted(room);
    expect(
      (await h.api('POST', `/v1/calls/${callId}/end`, { endedAt: at(10), status: 'completed' })).status,
    ).toBe(202);

    const { document } = await h.crm.waitForCallData(callId);
    const egress = h.emulator.getEgress(egressId)!;
    expect(egress.status).toBe(EgressStatus.EGRESS_COMPLETE);
    const file = egress.fileResults[0]!;
    expect(file.location).toMatch(/^https:\/\//); // a storage URL, never read by callsync

    // The egress request carried exactly the configured storage (or none).
    const upload = h.emulator.egressStorage(egressId);
    const expected = storageCase.expectedUpload();
    expect(upload).toMatchObject({ source: expected.source, provider: expected.provider });
    expect(upload?.settings).toMatchObject(expected.settings);
    const echoed = egress.request.case === 'roomComposite' ? egress.request.value.fileOutputs[0] : undefined;
    expect(echoed?.output.case).toBe(expected.source === 'request' ? expected.provider : undefined);

    // Exactly the stored bytes reached the CRM.
    const stored = await storageCase.readStored(upload!.key);
    const [received] = h.crm.received().uploads;
    expect(h.crm.received().uploads).toHaveLength(1);
    expect(received!.sha256).toBe(createHash('sha256').update(stored).digest('hex'));
    expect(received!.sizeBytes).toBe(stored.length);
    expect(received!.contentType).toBe('audio/ogg');
    expect(received!.fileName).toBe(file.filename.split('/').at(-1));
    expect(document.callDetails).toMatchObject({ recordingSize: stored.length });
    // The seed's document carries whole seconds.
    expect(document.callDetails.recordingDuration).toBe(7);
    expect(document.callDetails.recordingUrl).toMatch(/^https?:\/\//);
    expect(document.transcription.conversation_items).toHaveLength(1);
    expect(document.lead).toMatchObject({ leadId: 'lead-bucket' });

    const call = await h.api('GET', `/v1/calls/${callId}`);
    expect(call.body).toMatchObject({ state: 'done' });
    expect(await h.api('GET', '/readyz')).toMatchObject({ status: 200, body: { checks: { storage: 'ok' } } });

    // No secret in any output, at trace level.
    const output = JSON.stringify(h.logLines) + JSON.stringify(call.body);
    expect(h.app.logger.level).toBe('trace');
    expect(h.logLines.length).toBeGreaterThan(5);
    for (const secret of storageCase.secrets()) expect(output).not.toContain(secret);
  });
});
