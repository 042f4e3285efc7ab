/**
 * The bucket stores against real local servers with the official SDKs: s3rver (S3), Azurite
 * (Azure Blob, which checks the shared key) and the loopback GCS fake. Expected values come
 * from the recordings written here and the storage contract (key = the egress's filename,
 * bytes streamed exactly, duration from the Ogg stream), not from the code under test.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeOggOpusRecording } from '../../../src/audio/ogg-opus.ts';
import {
  createRecordingStorage,
  type RecordingStorage,
  type StorageSettings,
} from '../../../src/services/storage/index.ts';
import {
  putAzureBlob,
  putGcsObject,
  putS3Object,
  startAzurite,
  startGcsFake,
  startS3rver,
  type AzuriteTestServer,
  type GcsTestServer,
  type S3TestServer,
} from '../../helpers/storage-servers.ts';

let dir: string;
let recordingPath: string;
let recordingBytes: Buffer;
let s3: S3TestServer;
let azure: AzuriteTestServer;
let gcs: GcsTestServer;

const RECORDING_SECONDS = 42.5;
const KEY = 'callsync/room-1-2026-12-01T100000.ogg';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'callsync-bucket-storage-'));
  recordingPath = join(dir, 'recording.ogg');
  await writeOggOpusRecording(recordingPath, { durationSeconds: RECORDING_SECONDS });
  recordingBytes = await readFile(recordingPath);
  [s3, azure, gcs] = await Promise.all([startS3rver(), startAzurite(), startGcsFake()]);
  for (const [key, body] of [
    [KEY, recordingPath],
    ['callsync/not-ogg.ogg', Buffer.from('this is not audio at all, just text')],
  ] as const) {
    await Promise.all([
      putS3Object(s3, key, body),
      putAzureBlob(azure, key, body),
      putGcsObject(gcs, key, body),
    ]);
  }
}, 60_000);

afterAll(async () => {
  await Promise.all([s3?.close(), azure?.close(), gcs?.close()]);
  await rm(dir, { recursive: true, force: true });
});

interface Provider {
  name: 's3' | 'gcs' | 'azure';
  settings: () => StorageSettings;
  /** Every secret the settings hold: none may reach an error message. */
  secrets: () => string[];
}

const providers: Provider[] = [
  {
    name: 's3',
    settings: () => ({
      kind: 's3',
      bucket: s3.bucket,
      region: s3.region,
      endpoint: s3.endpoint,
      forcePathStyle: true,
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
      sessionToken: undefined,
    }),
    secrets: () => [s3.secretAccessKey],
  },
  {
    name: 'gcs',
    settings: () => ({
      kind: 'gcs',
      bucket: gcs.bucket,
      credentialsJson: gcs.credentialsJson,
      endpoint: gcs.endpoint,
    }),
    secrets: () => [(JSON.parse(gcs.credentialsJson) as { private_key: string }).private_key],
  },
  {
    name: 'azure',
    settings: () => ({
      kind: 'azure',
      accountName: azure.accountName,
      accountKey: azure.accountKey,
      container: azure.container,
      blobEndpoint: azure.blobEndpoint,
    }),
    secrets: () => [azure.accountKey],
  },
];

async function sha256(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function storageFor(provider: Provider, sendToEgress = true): RecordingStorage {
  return createRecordingStorage({ storage: provider.settings(), sendToEgress });
}

describe.each(providers)('$name storage', (provider) => {
  it('streams the exact object named by the egress filename, with its size and Ogg duration', async () => {
    const storage = storageFor(provider);
    const recording = await storage.open({
      filename: KEY,
      location: 'https://somewhere.else.example/never-fetched.ogg',
      sizeBytes: recordingBytes.length,
    });
    expect(recording.fileName).toBe('room-1-2026-12-01T100000.ogg');
    expect(recording.sizeBytes).toBe(recordingBytes.length);
    expect(recording.durationSeconds).toBeCloseTo(RECORDING_SECONDS, 3);
    expect(await sha256(recording.body)).toBe(createHash('sha256').update(recordingBytes).digest('hex'));
    await recording.close();
    await storage.close();
  });

  it('a fresh read for each open: two attempts get two whole streams', async () => {
    const storage = storageFor(provider);
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const recording = await storage.open({ filename: KEY, location: '' });
      expect(await sha256(recording.body)).toBe(createHash('sha256').update(recordingBytes).digest('hex'));
      await recording.close();
    }
  });

  it('releases an unread body on close: 60 opens closed unread do not exhaust the connection pool', async () => {
    const storage = storageFor(provider);
    for (let attempt = 0; attempt < 60; attempt += 1) {
      const recording = await storage.open({ filename: KEY, location: '' });
      await recording.close();
      expect(recording.body.destroyed).toBe(true);
    }
  });

  it.each([
    ['a missing object', { filename: 'callsync/missing.ogg' }, 'RECORDING_NOT_FOUND', true],
    ['an object that is not Ogg', { filename: 'callsync/not-ogg.ogg' }, 'RECORDING_INVALID', false],
    ['no file name at all', { filename: '' }, 'RECORDING_NO_PATH', false],
    [
      'a size other than the egress reported',
      { filename: KEY, sizeBytes: 12_345 },
      'RECORDING_SIZE_MISMATCH',
      false,
    ],
  ])('%s → %s (retryable: %s)', async (_name, file, code, retryable) => {
    const storage = storageFor(provider);
    const error = (await storage.open({ location: '', ...file }).catch((caught: unknown) => caught)) as {
      code: string;
      retryable: boolean;
      message: string;
    };
    expect(error).toMatchObject({ code, retryable });
    for (const secret of provider.secrets()) expect(error.message).not.toContain(secret);
  });

  it('check() resolves when the bucket is reachable, and names the problem when it is not', async () => {
    await expect(storageFor(provider).check()).resolves.toBeUndefined();
    const settings = provider.settings();
    const missing = createRecordingStorage({
      storage:
        settings.kind === 'azure'
          ? { ...settings, container: 'no-such-container' }
          : settings.kind === 'local'
            ? settings
            : { ...settings, bucket: 'no-such-bucket' },
      sendToEgress: true,
    });
    await expect(missing.check()).rejects.toMatchObject({ code: 'RECORDING_NOT_FOUND' });
  });

  it('carries exactly its settings into the egress request, or nothing when the egress has its own', () => {
    const settings = provider.settings();
    const upload = storageFor(provider).egressUpload;
    switch (settings.kind) {
      case 's3':
        expect(upload?.case).toBe('s3');
        expect(upload?.value).toMatchObject({
          bucket: settings.bucket,
          region: settings.region,
          endpoint: settings.endpoint,
          forcePathStyle: true,
          accessKey: settings.accessKeyId,
          secret: settings.secretAccessKey,
        });
        break;
      case 'gcs':
        expect(upload?.case).toBe('gcp');
        expect(upload?.value).toMatchObject({
          bucket: settings.bucket,
          credentials: settings.credentialsJson,
        });
        break;
      case 'azure':
        expect(upload?.case).toBe('azure');
        expect(upload?.value).toMatchObject({
          accountName: settings.accountName,
          accountKey: settings.accountKey,
          containerName: settings.container,
        });
        break;
      default:
        throw new Error('unexpected');
    }
    expect(storageFor(provider, false).egressUpload).toBeUndefined();
    expect(storageFor(provider).description).not.toContain(provider.secrets()[0]!.slice(0, 20));
  });
});

describe('reading a recording without downloading it twice', () => {
  it('GCS: two ranged reads of the ends, then one read of the whole object', async () => {
    const storage = storageFor(providers[1]!);
    const before = gcs.requests.length;
    const recording = await storage.open({ filename: KEY, location: '' });
    await sha256(recording.body);
    await recording.close();
    const media = gcs.requests.slice(before).filter((request) => request.path.includes('alt=media'));
    expect(media.map((request) => request.range !== undefined)).toEqual([true, true, false]);
  });
});

describe('Azure checks the shared key', () => {
  it('a wrong account key is refused as STORAGE_ACCESS_DENIED, not retried, and the key is in no message', async () => {
    const wrongKey = Buffer.from('not the key of this account, but base64 all the same').toString('base64');
    const storage = createRecordingStorage({
      storage: {
        kind: 'azure',
        accountName: azure.accountName,
        accountKey: wrongKey,
        container: azure.container,
        blobEndpoint: azure.blobEndpoint,
      },
      sendToEgress: true,
    });
    const error = (await storage
      .open({ filename: KEY, location: '' })
      .catch((caught: unknown) => caught)) as {
      code: string;
      retryable: boolean;
      message: string;
    };
    expect(error).toMatchObject({ code: 'STORAGE_ACCESS_DENIED', retryable: false });
    expect(error.message).not.toContain(wrongKey);
    await expect(storage.check()).rejects.toMatchObject({ code: 'STORAGE_ACCESS_DENIED' });
  });
});
