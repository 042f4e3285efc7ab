/**
 * Egress to cloud storage, as livekit/egress ≥ 1.14 does it, through the real livekit-server-sdk
 * EgressClient against the emulator, with real stores: s3rver (S3), Azurite (Azure Blob) and the
 * GCS fake, each read back with its official SDK. Expected `location`s are egress v1.14's formats
 * (livekit/storage location_test.go), not whatever the emulator computes.
 *
 * The first part checks the test stores themselves (the GCS fake against the real
 * @google-cloud/storage client in particular), since everything after relies on them.
 */
import { createHash, createSign } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { CRC32C } from '@google-cloud/storage';
import { AzureBlobUpload, GCPUpload, S3Upload } from '@livekit/protocol';
import type { EgressInfo, EncodedFileOutput, EncodedOutputs } from 'livekit-server-sdk';
import { EgressStatus, EncodedFileOutput as FileOutput, EncodedFileType } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOggOpusInfo } from '../../src/audio/ogg-opus.ts';
import { egressLocation } from '../../src/sandbox/livekit/egress-storage.ts';
import type { UploadTarget } from '../../src/sandbox/livekit/egress-storage.ts';
import { Crc32c } from '../helpers/gcs-fake.ts';
import type { LiveKitHarness } from '../helpers/livekit-emulator-harness.ts';
import {
  hasEnded,
  hasStatus,
  type LiveKitHarnessOptions,
  liveKitHarnessPerTest,
  oggOutput,
  serverErrorOf,
  TEST_CALLER,
} from '../helpers/livekit-emulator-harness.ts';
import type { AzuriteTestServer, GcsTestServer, S3TestServer } from '../helpers/storage-servers.ts';
import {
  azureContainerFor,
  gcsBucketFor,
  putAzureBlob,
  putGcsObject,
  putS3Object,
  readAzureBlob,
  readGcsObject,
  readS3Object,
  s3ClientFor,
  startAzurite,
  startGcsFake,
  startS3rver,
} from '../helpers/storage-servers.ts';

const RECORDING_SECONDS = 3;
/** s3rver checks the access-key id only; this secret must still never show up outside the emulator. */
const S3_SECRET = 'secret-that-must-stay-in-the-request';

let s3: S3TestServer;
let azurite: AzuriteTestServer;
let gcs: GcsTestServer;
let scratch: string;

beforeAll(async () => {
  [s3, azurite, gcs] = await Promise.all([startS3rver(), startAzurite(), startGcsFake()]);
  scratch = await mkdtemp(join(tmpdir(), 'storage-test-'));
});
afterAll(async () => {
  await Promise.all([s3?.close(), azurite?.close(), gcs?.close()]);
  await rm(scratch, { recursive: true, force: true });
});

const start = liveKitHarnessPerTest();
const harness = (options: LiveKitHarnessOptions = {}) =>
  start({ gcsEndpoint: gcs.endpoint, azureBlobEndpoint: azurite.blobEndpoint, ...options });

/** How egress v1.14 encodes a key in `location`: each path segment percent-encoded. */
function encodedKey(key: string): string {
  return key
    .split('/')
    .map((segment) => encodeURIComponent(segment))
    .join('/');
}

function s3Upload(overrides: Partial<S3Upload> = {}): S3Upload {
  return new S3Upload({
    accessKey: s3.accessKeyId,
    secret: S3_SECRET,
    region: s3.region,
    endpoint: s3.endpoint,
    bucket: s3.bucket,
    forcePathStyle: true,
    ...overrides,
  });
}

function fileOutput(filepath: string, output: EncodedFileOutput['output']): { file: EncodedFileOutput } {
  return { file: new FileOutput({ fileType: EncodedFileType.OGG, filepath, output }) };
}

/**
 * A SIP call recorded for RECORDING_SECONDS and awaited until the egress ended; stopped once
 * ACTIVE unless `stop` is false (an egress that ends by itself).
 */
async function recordCall(
  lk: LiveKitHarness,
  room: string,
  outputs: EncodedOutputs,
  behaviour: Parameters<LiveKitHarness['emulator']['setRoomBehaviour']>[1] = {},
  { stop = true }: { stop?: boolean } = {},
): Promise<{ started: EgressInfo; ended: EgressInfo }> {
  lk.emulator.startSipCall({ room, callerNumber: TEST_CALLER });
  lk.emulator.setRoomBehaviour(room, { recordingSeconds: RECORDING_SECONDS, ...behaviour });
  const started = await lk.egress.startRoomCompositeEgress(room, outputs, { audioOnly: true });
  if (stop) {
    await lk.emulator.waitForEgress(started.egressId, hasStatus(EgressStatus.EGRESS_ACTIVE));
    await lk.egress.stopEgress(started.egressId);
  }
  return { started, ended: await lk.emulator.waitForEgress(started.egressId, hasEnded) };
}

/**
 * Reads the object the moment the egress is announced COMPLETE (or LIMIT_REACHED / FAILED), and
 * records the egress status at the moment the upload was announced: proves the object existed
 * before the terminal state was published.
 */
function readAtEnd(
  lk: LiveKitHarness,
  read: () => Promise<Buffer>,
): { object: Promise<Buffer>; statusWhenUploaded: () => EgressStatus | undefined } {
  let statusWhenUploaded: EgressStatus | undefined;
  lk.emulator.events.on('egress:uploaded', ({ egressId }) => {
    statusWhenUploaded = lk.emulator.getEgress(egressId)?.status;
  });
  const object = new Promise<Buffer>((resolve, reject) => {
    const listener = ({ info }: { info: EgressInfo }) => {
      if (info.status < EgressStatus.EGRESS_COMPLETE) return;
      lk.emulator.events.off('egress:updated', listener);
      read().then(resolve, reject);
    };
    lk.emulator.events.on('egress:updated', listener);
  });
  return { object, statusWhenUploaded: () => statusWhenUploaded };
}

/** The bytes are a finished Ogg Opus recording of about `seconds`. */
async function expectOggOpus(bytes: Buffer, seconds: number): Promise<void> {
  const path = join(scratch, `${createHash('sha1').update(bytes).digest('hex')}.ogg`);
  await writeFile(path, bytes);
  const info = await readOggOpusInfo(path);
  expect(info.complete).toBe(true);
  expect(info.durationSeconds).toBeCloseTo(seconds, 2);
  expect(info.sizeBytes).toBe(bytes.length);
}

async function recordingsDirIsEmpty(lk: LiveKitHarness): Promise<boolean> {
  return (await readdir(lk.recordingsDir)).length === 0;
}

describe('test stores', () => {
  it('the GCS fake computes CRC-32C like GCS (check value of "123456789", and the SDK’s own CRC32C)', () => {
    expect(new Crc32c().update(Buffer.from('123456789')).value()).toBe(0xe3069283);
    const bytes = Buffer.from('a recording, more or less');
    const sdk = new CRC32C();
    sdk.update(bytes);
    expect(new Crc32c().update(bytes).base64()).toBe(sdk.toString());
  });

  it('the GCS fake serves the real SDK: uploads, metadata, validated and ranged downloads, 404', async () => {
    const bucket = gcsBucketFor(gcs);
    const bytes = Buffer.alloc(300_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 251;
    const source = join(scratch, 'gcs-source.bin');
    await writeFile(source, bytes);

    await bucket.upload(source, { destination: 'fake/from path é.bin', resumable: false });
    await bucket.file('fake/saved.bin').save(bytes, { resumable: false, contentType: 'audio/ogg' });
    await bucket.file('fake/resumable.bin').save(bytes); // the SDK's default: a resumable session
    await putGcsObject(gcs, 'fake/helper.bin', source);

    const [metadata] = await bucket.file('fake/saved.bin').getMetadata();
    expect(metadata).toMatchObject({
      name: 'fake/saved.bin',
      bucket: gcs.bucket,
      size: String(bytes.length),
      contentType: 'audio/ogg',
      md5Hash: createHash('md5').update(bytes).digest('base64'),
      crc32c: new Crc32c().update(bytes).base64(),
    });
    expect(metadata.generation).toMatch(/^\d+$/);

    for (const name of ['fake/from path é.bin', 'fake/saved.bin', 'fake/resumable.bin', 'fake/helper.bin']) {
      expect((await readGcsObject(gcs, name)).equals(bytes)).toBe(true); // crc32c validated
      const [md5Validated] = await bucket.file(name).download({ validation: 'md5' });
      expect(md5Validated.equals(bytes)).toBe(true);
    }
    const [middle] = await bucket.file('fake/saved.bin').download({ start: 1000, end: 1999 });
    expect(middle.equals(bytes.subarray(1000, 2000))).toBe(true);
    const [tail] = await bucket.file('fake/saved.bin').download({ end: -500 });
    expect(tail.equals(bytes.subarray(bytes.length - 500))).toBe(true);
    expect(gcs.requests.filter((r) => r.range !== undefined).map((r) => r.range)).toEqual([
      'bytes=1000-1999',
      'bytes=-500',
    ]);

    const missing = await bucket
      .file('fake/missing.bin')
      .getMetadata()
      .then(
        () => undefined,
        (error: unknown) => error as { code?: number },
      );
    expect(missing?.code).toBe(404);
    expect((await bucket.file('fake/missing.bin').exists())[0]).toBe(false);
  });

  it('the GCS fake answers raw HTTP like GCS: hashes, 206 ranges, JSON 404 errors', async () => {
    const bytes = Buffer.from('0123456789abcdef');
    await putGcsObject(gcs, 'raw/x.bin', bytes);
    const url = `${gcs.endpoint}/storage/v1/b/${gcs.bucket}/o/${encodeURIComponent('raw/x.bin')}?alt=media`;

    const full = await fetch(url);
    expect(full.status).toBe(200);
    expect(full.headers.get('content-length')).toBe('16');
    expect(full.headers.get('x-goog-hash')).toBe(
      `crc32c=${new Crc32c().update(bytes).base64()},md5=${createHash('md5').update(bytes).digest('base64')}`,
    );
    expect(Buffer.from(await full.arrayBuffer()).equals(bytes)).toBe(true);

    const ranged = await fetch(url, { headers: { range: 'bytes=2-5' } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe('bytes 2-5/16');
    expect(await ranged.text()).toBe('2345');
    const suffix = await fetch(url, { headers: { range: 'bytes=-3' } });
    expect([suffix.status, suffix.headers.get('content-range'), await suffix.text()]).toEqual([
      206,
      'bytes 13-15/16',
      'def',
    ]);

    const missing = await fetch(`${gcs.endpoint}/storage/v1/b/${gcs.bucket}/o/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({
      error: { code: 404, message: `No such object: ${gcs.bucket}/nope` },
    });
  });

  it('the GCS fake’s credentials hold a working RSA key: a JWT signed with it buys a token at token_uri', async () => {
    const credentials = JSON.parse(gcs.credentialsJson) as Record<string, string>;
    expect(credentials).toMatchObject({ type: 'service_account', token_uri: `${gcs.endpoint}/token` });
    for (const field of ['project_id', 'private_key_id', 'client_email'])
      expect(credentials[field]).toBeTruthy();
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const unsigned = `${encode({ alg: 'RS256', typ: 'JWT' })}.${encode({ iss: credentials.client_email })}`;
    const signature = createSign('RSA-SHA256').update(unsigned).sign(credentials.private_key!, 'base64url');
    const exchange = (assertion: string) =>
      fetch(credentials.token_uri!, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }),
      });

    const granted = await exchange(`${unsigned}.${signature}`);
    expect(granted.status).toBe(200);
    const { access_token: token } = (await granted.json()) as { access_token: string };
    const authorized = await fetch(`${gcs.endpoint}/storage/v1/b/${gcs.bucket}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(authorized.status).toBe(200);
    expect((await exchange(`${unsigned}.${signature.slice(0, -4)}AAAA`)).status).toBe(400);
    const forged = await fetch(`${gcs.endpoint}/storage/v1/b/${gcs.bucket}`, {
      headers: { authorization: 'Bearer made-up' },
    });
    expect(forged.status).toBe(401);
  });

  it('s3rver and Azurite round-trip objects through the helpers; Azurite checks the account key', async () => {
    const bytes = Buffer.from('some audio bytes');
    const source = join(scratch, 'roundtrip.bin');
    await writeFile(source, bytes);
    await putS3Object(s3, 'roundtrip/buffer.bin', bytes);
    await putS3Object(s3, 'roundtrip/path.bin', source);
    expect((await readS3Object(s3, 'roundtrip/buffer.bin')).equals(bytes)).toBe(true);
    expect((await readS3Object(s3, 'roundtrip/path.bin')).equals(bytes)).toBe(true); // no aws-chunked framing
    await putAzureBlob(azurite, 'roundtrip/buffer.bin', bytes);
    await putAzureBlob(azurite, 'roundtrip/path.bin', source);
    expect((await readAzureBlob(azurite, 'roundtrip/buffer.bin')).equals(bytes)).toBe(true);
    expect((await readAzureBlob(azurite, 'roundtrip/path.bin')).equals(bytes)).toBe(true);

    const wrongKey = azureContainerFor({ ...azurite, accountKey: Buffer.alloc(64, 1).toString('base64') });
    const refused = await wrongKey
      .getBlobClient('roundtrip/buffer.bin')
      .downloadToBuffer()
      .then(
        () => undefined,
        (error: unknown) => error as { statusCode?: number },
      );
    expect(refused?.statusCode).toBe(403);
  });
});

describe('LiveKit emulator: egress to cloud storage', () => {
  it('S3 (path-style): uploads, then COMPLETE with egress v1.14 location; credentials recorded, redacted elsewhere', async () => {
    const lk = await harness({ requireStorage: true });
    const reader = readAtEnd(lk, () => readS3Object(s3, 'calls/my call é/call-s3.ogg'));
    const { started, ended } = await recordCall(
      lk,
      'call-s3',
      fileOutput('calls/my call é/{room_name}', { case: 's3', value: s3Upload() }),
    );

    expect(ended.status).toBe(EgressStatus.EGRESS_COMPLETE);
    expect(reader.statusWhenUploaded()).toBe(EgressStatus.EGRESS_ENDING);
    const object = await reader.object;
    const file = ended.fileResults[0]!;
    expect(file.filename).toBe('calls/my call é/call-s3.ogg');
    expect(file.location).toBe(
      `https://${new URL(s3.endpoint).host}/${s3.bucket}/${encodedKey('calls/my call é/call-s3.ogg')}`,
    );
    expect(Number(file.size)).toBe(object.length);
    expect(file.duration).toBe(BigInt(RECORDING_SECONDS * 1e9));
    await expectOggOpus(object, RECORDING_SECONDS);
    const head = await s3ClientFor(s3).send(
      new HeadObjectCommand({ Bucket: s3.bucket, Key: 'calls/my call é/call-s3.ogg' }),
    );
    expect(head.ContentType).toBe('audio/ogg');
    expect(await recordingsDirIsEmpty(lk)).toBe(true);

    expect(lk.emulator.egressStorage(started.egressId)).toEqual({
      source: 'request',
      provider: 's3',
      settings: {
        accessKey: s3.accessKeyId,
        secret: S3_SECRET,
        region: s3.region,
        endpoint: s3.endpoint,
        bucket: s3.bucket,
        forcePathStyle: true,
      },
      prefix: '',
      key: 'calls/my call é/call-s3.ogg',
    });
    const [listed] = await lk.egress.listEgress({ egressId: started.egressId });
    const echoed =
      listed?.request.case === 'roomComposite' ? listed.request.value.fileOutputs[0]?.output : undefined;
    expect(echoed?.case).toBe('s3');
    expect(echoed?.value).toMatchObject({ accessKey: '{access_key}', secret: '{secret}', bucket: s3.bucket });
    await lk.emulator.webhooksIdle();
    expect(lk.sink.received.some((delivery) => delivery.rawBody.includes(S3_SECRET))).toBe(false);
    const control = await fetch(`${lk.url}/_emulator/egress/${started.egressId}`);
    expect(await control.text()).not.toContain(S3_SECRET);
  });

  it('S3 with a custom endpoint and no forcePathStyle reports the virtual-host location', async () => {
    const lk = await harness();
    const { ended } = await recordCall(
      lk,
      'call-vhost',
      fileOutput('vhost/{room_name}.ogg', { case: 's3', value: s3Upload({ forcePathStyle: false }) }),
    );
    expect(ended.status).toBe(EgressStatus.EGRESS_COMPLETE);
    expect(ended.fileResults[0]?.location).toBe(
      `https://${s3.bucket}.${new URL(s3.endpoint).host}/vhost/call-vhost.ogg`,
    );
    // The SDK reaches an IP endpoint path-style whatever the flag says; the object is there.
    expect((await readS3Object(s3, 'vhost/call-vhost.ogg')).length).toBe(Number(ended.fileResults[0]?.size));
  });

  it('GCS: uploads with the request’s service account, then COMPLETE with the googleapis location', async () => {
    const lk = await harness({ requireStorage: true });
    const reader = readAtEnd(lk, () => readGcsObject(gcs, 'gcs calls/call-gcs.ogg'));
    const { started, ended } = await recordCall(
      lk,
      'call-gcs',
      fileOutput('gcs calls/{room_name}', {
        case: 'gcp',
        value: new GCPUpload({ credentials: gcs.credentialsJson, bucket: gcs.bucket }),
      }),
    );

    expect(ended.status).toBe(EgressStatus.EGRESS_COMPLETE);
    expect(reader.statusWhenUploaded()).toBe(EgressStatus.EGRESS_ENDING);
    const object = await reader.object;
    const file = ended.fileResults[0]!;
    expect(file.filename).toBe('gcs calls/call-gcs.ogg');
    expect(file.location).toBe(
      `https://${gcs.bucket}.storage.googleapis.com/${encodedKey('gcs calls/call-gcs.ogg')}`,
    );
    expect(Number(file.size)).toBe(object.length);
    await expectOggOpus(object, RECORDING_SECONDS);
    const [metadata] = await gcsBucketFor(gcs).file('gcs calls/call-gcs.ogg').getMetadata();
    expect(metadata.contentType).toBe('audio/ogg');
    expect(
      gcs.requests.some(
        (r) =>
          r.method === 'POST' &&
          r.path.startsWith(`/upload/storage/v1/b/${gcs.bucket}/o?uploadType=multipart`),
      ),
    ).toBe(true);

    expect(lk.emulator.egressStorage(started.egressId)).toMatchObject({
      source: 'request',
      provider: 'gcp',
      settings: { credentials: gcs.credentialsJson, bucket: gcs.bucket },
      key: 'gcs calls/call-gcs.ogg',
    });
    const echoed =
      ended.request.case === 'roomComposite' ? ended.request.value.fileOutputs[0]?.output : undefined;
    expect(echoed).toMatchObject({
      case: 'gcp',
      value: { credentials: '{credentials}', bucket: gcs.bucket },
    });
  });

  it('Azure: uploads with the request’s account key, then COMPLETE with the blob.core.windows.net location', async () => {
    const lk = await harness({ requireStorage: true });
    const reader = readAtEnd(lk, () => readAzureBlob(azurite, 'azure/call-azure.ogg'));
    const { started, ended } = await recordCall(
      lk,
      'call-azure',
      fileOutput('azure/{room_name}', {
        case: 'azure',
        value: new AzureBlobUpload({
          accountName: azurite.accountName,
          accountKey: azurite.accountKey,
          containerName: azurite.container,
        }),
      }),
    );

    expect(ended.status).toBe(EgressStatus.EGRESS_COMPLETE);
    expect(reader.statusWhenUploaded()).toBe(EgressStatus.EGRESS_ENDING);
    const object = await reader.object;
    const file = ended.fileResults[0]!;
    expect(file.filename).toBe('azure/call-azure.ogg');
    expect(file.location).toBe(
      `https://${azurite.accountName}.blob.core.windows.net/${azurite.container}/azure/call-azure.ogg`,
    );
    expect(Number(file.size)).toBe(object.length);
    await expectOggOpus(object, RECORDING_SECONDS);
    const properties = await azureContainerFor(azurite).getBlobClient('azure/call-azure.ogg').getProperties();
    expect(properties.contentType).toBe('audio/ogg');

    expect(lk.emulator.egressStorage(started.egressId)).toMatchObject({
      source: 'request',
      provider: 'azure',
      settings: {
        accountName: azurite.accountName,
        accountKey: azurite.accountKey,
        containerName: azurite.container,
      },
    });
    const echoed =
      ended.request.case === 'roomComposite' ? ended.request.value.fileOutputs[0]?.output : undefined;
    expect(echoed).toMatchObject({
      case: 'azure',
      value: { accountName: '{account_name}', accountKey: '{account_key}', containerName: azurite.container },
    });
  });

  it('Azure with a wrong account key: FAILED "Azure upload failed: …" 400, no location, size 0, no blob', async () => {
    const lk = await harness();
    const failures: string[] = [];
    lk.emulator.events.on('egress:upload-failed', ({ error }) => failures.push(error));
    const { ended } = await recordCall(
      lk,
      'call-azure-denied',
      fileOutput('denied/{room_name}', {
        case: 'azure',
        value: new AzureBlobUpload({
          accountName: azurite.accountName,
          accountKey: Buffer.alloc(64, 7).toString('base64'),
          containerName: azurite.container,
        }),
      }),
    );

    expect(ended.status).toBe(EgressStatus.EGRESS_FAILED);
    expect(ended.error).toMatch(/^Azure upload failed: ./);
    expect(ended.errorCode).toBe(400);
    expect(ended.fileResults[0]).toMatchObject({
      filename: 'denied/call-azure-denied.ogg',
      location: '',
      size: 0n,
    });
    expect(failures).toEqual([ended.error]);
    expect(await azureContainerFor(azurite).getBlobClient('denied/call-azure-denied.ogg').exists()).toBe(
      false,
    );
  });

  it('S3 with a missing bucket or an unreachable endpoint: FAILED "S3 upload failed: …" 400, no location', async () => {
    const lk = await harness();
    const noBucket = await recordCall(
      lk,
      'call-no-bucket',
      fileOutput('x/{room_name}', { case: 's3', value: s3Upload({ bucket: 'no-such-bucket' }) }),
    );
    // Port 1 on loopback: nothing listens there.
    const unreachable = await recordCall(
      lk,
      'call-unreachable',
      fileOutput('x/{room_name}', { case: 's3', value: s3Upload({ endpoint: 'http://127.0.0.1:1' }) }),
    );
    for (const { ended } of [noBucket, unreachable]) {
      expect(ended).toMatchObject({ status: EgressStatus.EGRESS_FAILED, errorCode: 400 });
      expect(ended.error).toMatch(/^S3 upload failed: ./);
      expect(ended.fileResults[0]).toMatchObject({ location: '', size: 0n });
    }
  });

  it('Cloud mode refuses a file output without storage: 400 invalid_argument "…field: output"', async () => {
    const lk = await harness({ requireStorage: true });
    lk.emulator.startSipCall({ room: 'call-cloud', callerNumber: TEST_CALLER });
    const refused = await serverErrorOf(
      lk.egress.startRoomCompositeEgress('call-cloud', oggOutput(), { audioOnly: true }),
    );
    expect(refused).toMatchObject({
      status: 400,
      code: 'invalid_argument',
      message: 'request has missing or invalid field: output',
    });
    expect(lk.emulator.listEgress()).toEqual([]);
    const accepted = await lk.egress.startRoomCompositeEgress(
      'call-cloud',
      fileOutput('cloud/{room_name}', { case: 's3', value: s3Upload() }),
      { audioOnly: true },
    );
    expect(accepted.status).toBe(EgressStatus.EGRESS_STARTING);
  });

  it('uses the server’s default storage when the request has none: prefix in the key, not in filename', async () => {
    const lk = await harness({
      requireStorage: true,
      serverStorage: {
        prefix: 'tenant-7',
        s3: {
          accessKey: s3.accessKeyId,
          secret: S3_SECRET,
          region: s3.region,
          endpoint: s3.endpoint,
          bucket: s3.bucket,
          forcePathStyle: true,
        },
      },
    });
    const { started, ended } = await recordCall(lk, 'call-server', oggOutput('calls/{room_name}.ogg'));

    expect(ended.status).toBe(EgressStatus.EGRESS_COMPLETE);
    const file = ended.fileResults[0]!;
    expect(file.filename).toBe('calls/call-server.ogg');
    expect(file.location).toBe(
      `https://${new URL(s3.endpoint).host}/${s3.bucket}/tenant-7/calls/call-server.ogg`,
    );
    const object = await readS3Object(s3, 'tenant-7/calls/call-server.ogg');
    expect(object.length).toBe(Number(file.size));
    await expectOggOpus(object, RECORDING_SECONDS);
    expect(await recordingsDirIsEmpty(lk)).toBe(true);

    expect(lk.emulator.egressStorage(started.egressId)).toMatchObject({
      source: 'server',
      provider: 's3',
      settings: { secret: S3_SECRET, bucket: s3.bucket },
      prefix: 'tenant-7',
      key: 'tenant-7/calls/call-server.ogg',
    });
    // The server's storage is never echoed in the request.
    const echoed =
      ended.request.case === 'roomComposite' ? ended.request.value.fileOutputs[0]?.output : undefined;
    expect(echoed?.case).toBeUndefined();
    expect(JSON.stringify(ended.toJson())).not.toContain(S3_SECRET);
  });

  it('request storage wins over the server’s, and the server prefix still applies to it', async () => {
    const lk = await harness({
      serverStorage: { prefix: 'shared', gcp: { credentials: gcs.credentialsJson, bucket: gcs.bucket } },
    });
    const gcsRequestsBefore = gcs.requests.length;
    const { started, ended } = await recordCall(
      lk,
      'call-request-wins',
      fileOutput('calls/{room_name}', { case: 's3', value: s3Upload() }),
    );

    expect(ended.status).toBe(EgressStatus.EGRESS_COMPLETE);
    expect(ended.fileResults[0]?.filename).toBe('calls/call-request-wins.ogg');
    expect(ended.fileResults[0]?.location).toBe(
      `https://${new URL(s3.endpoint).host}/${s3.bucket}/shared/calls/call-request-wins.ogg`,
    );
    expect((await readS3Object(s3, 'shared/calls/call-request-wins.ogg')).length).toBe(
      Number(ended.fileResults[0]?.size),
    );
    expect(gcs.requests.length).toBe(gcsRequestsBefore);
    expect(lk.emulator.egressStorage(started.egressId)).toMatchObject({
      source: 'request',
      provider: 's3',
      prefix: 'shared',
    });
  });

  it('failed_with_file: FAILED "connection to room failed" with the partial file uploaded and described', async () => {
    const lk = await harness();
    const { ended } = await recordCall(
      lk,
      'call-partial',
      fileOutput('partial/{room_name}', {
        case: 'gcp',
        value: new GCPUpload({ credentials: gcs.credentialsJson, bucket: gcs.bucket }),
      }),
      { egressOutcome: 'failed_with_file' },
    );

    expect(ended.status).toBe(EgressStatus.EGRESS_FAILED);
    expect(ended.error).toContain('connection to room failed');
    const file = ended.fileResults[0]!;
    expect(file.location).toBe(`https://${gcs.bucket}.storage.googleapis.com/partial/call-partial.ogg`);
    expect(file.size).toBeGreaterThan(0n);
    expect(file.duration).toBeGreaterThan(0n);
    const object = await readGcsObject(gcs, file.filename);
    expect(object.length).toBe(Number(file.size));
    await expectOggOpus(object, RECORDING_SECONDS);
  });

  it('failed_with_file without storage keeps the local file and its absolute location', async () => {
    const lk = await harness();
    const { ended } = await recordCall(lk, 'call-partial-local', oggOutput('calls/{room_name}.ogg'), {
      egressOutcome: 'failed_with_file',
    });
    expect(ended.status).toBe(EgressStatus.EGRESS_FAILED);
    expect(ended.fileResults[0]?.location).toBe(join(lk.recordingsDir, 'calls/call-partial-local.ogg'));
    expect(lk.emulator.egressStorage(ended.egressId)).toBeNull();
    expect(lk.emulator.egressStorage('EG_unknown')).toBeUndefined();
  });

  it('LIMIT_REACHED uploads the file too', async () => {
    const lk = await harness();
    const { ended } = await recordCall(
      lk,
      'call-limit',
      fileOutput('limit/{room_name}', {
        case: 'azure',
        value: new AzureBlobUpload({
          accountName: azurite.accountName,
          accountKey: azurite.accountKey,
          containerName: azurite.container,
        }),
      }),
      { egressOutcome: 'limit_reached', limitReachedAfterMs: 0 },
      { stop: false },
    );
    expect(ended).toMatchObject({ status: EgressStatus.EGRESS_LIMIT_REACHED, errorCode: 413 });
    expect(ended.fileResults[0]?.location).toBe(
      `https://${azurite.accountName}.blob.core.windows.net/${azurite.container}/limit/call-limit.ogg`,
    );
    expect((await readAzureBlob(azurite, 'limit/call-limit.ogg')).length).toBe(
      Number(ended.fileResults[0]?.size),
    );
  });
});

describe('egress v1.14 location formats (livekit/storage location_test.go)', () => {
  const s3 = (fields: Partial<S3Upload>): UploadTarget => ({
    provider: 's3',
    settings: new S3Upload(fields),
  });
  const cases: [string, UploadTarget, string, string][] = [
    ['S3 vhost, AWS', s3({ bucket: 'mybucket' }), 'foo.mp4', 'https://mybucket.s3.amazonaws.com/foo.mp4'],
    [
      'S3 vhost, endpoint without scheme',
      s3({ bucket: 'mybucket', endpoint: 's3.example.com' }),
      'foo.mp4',
      'https://mybucket.s3.example.com/foo.mp4',
    ],
    [
      'S3 vhost, http endpoint',
      s3({ bucket: 'mybucket', endpoint: 'http://s3.example.com' }),
      'foo.mp4',
      'https://mybucket.s3.example.com/foo.mp4',
    ],
    [
      'S3 vhost, leading slash',
      s3({ bucket: 'mybucket' }),
      '/foo.mp4',
      'https://mybucket.s3.amazonaws.com/foo.mp4',
    ],
    [
      'S3 vhost, unicode',
      s3({ bucket: 'mybucket' }),
      'café/résumé.mp4',
      'https://mybucket.s3.amazonaws.com/caf%C3%A9/r%C3%A9sum%C3%A9.mp4',
    ],
    [
      'S3 path-style, AWS',
      s3({ bucket: 'mybucket', forcePathStyle: true }),
      'a/b/c.mp4',
      'https://s3.amazonaws.com/mybucket/a/b/c.mp4',
    ],
    [
      'S3 path-style, endpoint',
      s3({ bucket: 'mybucket', endpoint: 'https://minio.example.com', forcePathStyle: true }),
      'foo.mp4',
      'https://minio.example.com/mybucket/foo.mp4',
    ],
    [
      'S3 path-style, leading slash',
      s3({ bucket: 'mybucket', forcePathStyle: true }),
      '/foo.mp4',
      'https://s3.amazonaws.com/mybucket/foo.mp4',
    ],
    [
      'GCS, space',
      { provider: 'gcp', settings: new GCPUpload({ bucket: 'mybucket' }) },
      'folder/my file.mp4',
      'https://mybucket.storage.googleapis.com/folder/my%20file.mp4',
    ],
    [
      'Azure',
      {
        provider: 'azure',
        settings: new AzureBlobUpload({ accountName: 'acct', containerName: 'mycontainer' }),
      },
      'a/b/c.mp4',
      'https://acct.blob.core.windows.net/mycontainer/a/b/c.mp4',
    ],
    [
      'Azure, empty container',
      { provider: 'azure', settings: new AzureBlobUpload({ accountName: 'acct', containerName: '' }) },
      'recordings/x.ogg',
      'https://acct.blob.core.windows.net/recordings/x.ogg',
    ],
    [
      'Azure, container with slashes',
      {
        provider: 'azure',
        settings: new AzureBlobUpload({ accountName: 'acct', containerName: '/mycontainer/' }),
      },
      'foo.mp4',
      'https://acct.blob.core.windows.net/mycontainer/foo.mp4',
    ],
  ];
  it.each(cases)('%s', (_name, target, key, expected) => {
    expect(egressLocation(target, key)).toBe(expected);
  });
});
