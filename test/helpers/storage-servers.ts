/**
 * Object stores for tests, each on 127.0.0.1 with a free port, plus one way to reach each with
 * its official SDK so no test builds these clients twice:
 *
 * - S3: s3rver 3.7 in-process (temp directory, silent, the bucket pre-configured). It checks the
 *   access-key id only (`S3RVER`), never signatures, so wrong secrets still succeed there.
 * - Azure Blob: Azurite 3.35 (the last for Node 20) as a child process, in memory, telemetry off.
 *   It checks SharedKey signatures, so a wrong account key fails with 403.
 * - GCS: the loopback fake in gcs-fake.ts (no emulator can run here).
 *
 * Writers seed objects with `requestChecksumCalculation: 'WHEN_REQUIRED'`: with the SDK default
 * a streamed PutObject is sent `aws-chunked` and s3rver stores the chunk framing as the object.
 * Readers return the whole object as a Buffer, which is fine for test-sized recordings.
 * Each `close()` is safe to call twice.
 */
import { runS3rver } from '../../src/demo/s3-server.ts';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import type { ContainerClient } from '@azure/storage-blob';
import { Storage } from '@google-cloud/storage';
import type { Bucket } from '@google-cloud/storage';
import { startGcsFake } from './gcs-fake.ts';
import type { GcsTestServer } from './gcs-fake.ts';

export { startGcsFake };
export type { GcsTestServer };

const DEFAULT_BUCKET = 'recordings';
/** The only access key s3rver knows (hard-coded there); its secret is the same string. */
export const S3RVER_ACCESS_KEY_ID = 'S3RVER';
export const S3RVER_SECRET_ACCESS_KEY = 'S3RVER';
/** Azurite's well-known development account. */
export const AZURITE_ACCOUNT_NAME = 'devstoreaccount1';
export const AZURITE_ACCOUNT_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const AZURITE_MAIN = fileURLToPath(
  new URL('../../node_modules/azurite/dist/src/blob/main.js', import.meta.url),
);
const AZURITE_LISTENING = /successfully listens on (http:\/\/127\.0\.0\.1:(\d+))/;
const AZURITE_START_TIMEOUT_MS = 20_000;
/** After SIGTERM, how long Azurite may take to exit before it is killed. */
const AZURITE_EXIT_GRACE_MS = 5_000;
const DEFAULT_CONTENT_TYPE = 'audio/ogg';

export interface S3TestServer {
  /** `http://127.0.0.1:<port>`; use path-style addressing. */
  endpoint: string;
  bucket: string;
  region: 'us-east-1';
  accessKeyId: string;
  secretAccessKey: string;
  close(): Promise<void>;
}

export interface AzuriteTestServer {
  /** `http://127.0.0.1:<port>/devstoreaccount1` */
  blobEndpoint: string;
  accountName: string;
  accountKey: string;
  container: string;
  close(): Promise<void>;
}

/** A Buffer/Uint8Array is the object's content; a string is the path of a file to upload. */
export type ObjectBody = Uint8Array | string;

export interface PutObjectOptions {
  /** `audio/ogg` by default. */
  contentType?: string;
}

function memoized<T>(run: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => (result ??= run());
}

export async function startS3rver(options: { bucket?: string } = {}): Promise<S3TestServer> {
  const bucket = options.bucket ?? DEFAULT_BUCKET;
  const directory = await mkdtemp(join(tmpdir(), 's3rver-'));
  let server: Awaited<ReturnType<typeof runS3rver>>;
  try {
    server = await runS3rver({ directory, bucket });
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
  const { port } = server;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    region: 'us-east-1',
    accessKeyId: S3RVER_ACCESS_KEY_ID,
    secretAccessKey: S3RVER_SECRET_ACCESS_KEY,
    close: memoized(async () => {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    }),
  };
}

export async function startAzurite(options: { container?: string } = {}): Promise<AzuriteTestServer> {
  const container = options.container ?? DEFAULT_BUCKET;
  const workspace = await mkdtemp(join(tmpdir(), 'azurite-'));
  const child = spawn(
    process.execPath,
    [
      AZURITE_MAIN,
      ...['--blobHost', '127.0.0.1', '--blobPort', '0'],
      '--inMemoryPersistence',
      '--disableTelemetry',
      '--silent',
      // @azure/storage-blob 12.32 speaks a newer service version than Azurite 3.35 accepts.
      '--skipApiVersionCheck',
    ],
    { cwd: workspace, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // Resolves on exit, also when the process never started ('error'): close() must not throw.
  const exited = once(child, 'exit').catch(() => undefined);
  const stopChild = memoized(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), AZURITE_EXIT_GRACE_MS);
      await exited;
      clearTimeout(killer);
    }
    await rm(workspace, { recursive: true, force: true });
  });

  let output = '';
  const onOutput = (chunk: Buffer) => {
    output += chunk.toString('utf8');
  };
  child.stdout.on('data', onOutput);
  child.stderr.on('data', onOutput);
  try {
    const origin = await new Promise<string>((resolve, reject) => {
      const settle = (error: Error | undefined, value?: string) => {
        clearTimeout(timer);
        child.stdout.off('data', onListening);
        child.off('error', onError);
        child.off('exit', onExit);
        if (error) reject(error);
        else resolve(value!);
      };
      const onListening = () => {
        const match = AZURITE_LISTENING.exec(output);
        if (match?.[1]) settle(undefined, match[1]);
      };
      const onError = (error: Error) => settle(error);
      const onExit = (code: number | null, signal: string | null) =>
        settle(new Error(`Azurite exited (${signal ?? code}) before listening:\n${output}`));
      const timer = setTimeout(
        () => settle(new Error(`Azurite did not start within ${AZURITE_START_TIMEOUT_MS} ms:\n${output}`)),
        AZURITE_START_TIMEOUT_MS,
      );
      child.stdout.on('data', onListening);
      child.once('error', onError);
      child.once('exit', onExit);
    });
    // From here on the output is only drained, so Azurite never blocks on a full pipe.
    child.stdout.off('data', onOutput);
    child.stderr.off('data', onOutput);
    child.stdout.resume();
    child.stderr.resume();
    const server: AzuriteTestServer = {
      blobEndpoint: `${origin}/${AZURITE_ACCOUNT_NAME}`,
      accountName: AZURITE_ACCOUNT_NAME,
      accountKey: AZURITE_ACCOUNT_KEY,
      container,
      close: stopChild,
    };
    await azureContainerFor(server).create();
    return server;
  } catch (error) {
    await stopChild();
    throw error;
  }
}

export function s3ClientFor(server: S3TestServer): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export function azureContainerFor(
  server: Pick<AzuriteTestServer, 'blobEndpoint' | 'accountName' | 'accountKey' | 'container'>,
): ContainerClient {
  const credential = new StorageSharedKeyCredential(server.accountName, server.accountKey);
  return new BlobServiceClient(server.blobEndpoint, credential).getContainerClient(server.container);
}

/** The fake's bucket through the real SDK; a custom `apiEndpoint` makes it send no credentials. */
export function gcsBucketFor(server: Pick<GcsTestServer, 'endpoint' | 'bucket'>): Bucket {
  return new Storage({
    apiEndpoint: server.endpoint,
    projectId: 'test',
    retryOptions: { maxRetries: 0 },
  }).bucket(server.bucket);
}

export async function putS3Object(
  server: S3TestServer,
  key: string,
  body: ObjectBody,
  options: PutObjectOptions = {},
): Promise<void> {
  const client = s3ClientFor(server);
  try {
    const contentType = options.contentType ?? DEFAULT_CONTENT_TYPE;
    if (typeof body === 'string') {
      const { size } = await stat(body);
      await client.send(
        new PutObjectCommand({
          Bucket: server.bucket,
          Key: key,
          Body: createReadStream(body),
          ContentLength: size,
          ContentType: contentType,
        }),
      );
    } else {
      await client.send(
        new PutObjectCommand({ Bucket: server.bucket, Key: key, Body: body, ContentType: contentType }),
      );
    }
  } finally {
    client.destroy();
  }
}

export async function readS3Object(server: S3TestServer, key: string): Promise<Buffer> {
  const client = s3ClientFor(server);
  try {
    const { Body } = await client.send(new GetObjectCommand({ Bucket: server.bucket, Key: key }));
    if (!Body) throw new Error(`S3 object ${key} has no body`);
    return Buffer.from(await Body.transformToByteArray());
  } finally {
    client.destroy();
  }
}

export async function putAzureBlob(
  server: AzuriteTestServer,
  key: string,
  body: ObjectBody,
  options: PutObjectOptions = {},
): Promise<void> {
  const blob = azureContainerFor(server).getBlockBlobClient(key);
  const blobHTTPHeaders = { blobContentType: options.contentType ?? DEFAULT_CONTENT_TYPE };
  if (typeof body === 'string') await blob.uploadFile(body, { blobHTTPHeaders });
  else await blob.uploadData(body, { blobHTTPHeaders });
}

export async function readAzureBlob(server: AzuriteTestServer, key: string): Promise<Buffer> {
  return azureContainerFor(server).getBlobClient(key).downloadToBuffer();
}

export async function putGcsObject(
  server: GcsTestServer,
  key: string,
  body: ObjectBody,
  options: PutObjectOptions = {},
): Promise<void> {
  const bucket = gcsBucketFor(server);
  const contentType = options.contentType ?? DEFAULT_CONTENT_TYPE;
  if (typeof body === 'string') {
    await bucket.upload(body, { destination: key, resumable: false, contentType });
  } else {
    await bucket.file(key).save(Buffer.from(body), { resumable: false, contentType });
  }
}

/** Downloads with the SDK's default crc32c validation against the fake's `x-goog-hash`. */
export async function readGcsObject(server: GcsTestServer, key: string): Promise<Buffer> {
  const [contents] = await gcsBucketFor(server).file(key).download();
  return contents;
}
