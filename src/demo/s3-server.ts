/**
 * The demo's S3-compatible store for `npm run demo -- --storage s3`: s3rver (a devDependency)
 * in-process on a free loopback port, its objects in a directory of the demo's temp dir, one
 * bucket configured. Addressed path-style (`http://127.0.0.1:<port>/<bucket>/<key>`) with
 * s3rver's only, hard-coded key pair `S3RVER`/`S3RVER` (it checks the key id, not signatures).
 *
 * Besides starting and closing it, this file lists the bucket for the summary, with the same
 * SDK callsync reads recordings with. Loaded only when the demo is asked for S3, so the default
 * demo never touches s3rver.
 */
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';

export const DEMO_S3_BUCKET = 'callsync-recordings';
/** The only key pair s3rver accepts. */
export const DEMO_S3_ACCESS_KEY_ID = 'S3RVER';
export const DEMO_S3_SECRET_ACCESS_KEY = 'S3RVER';
export const DEMO_S3_REGION = 'us-east-1';

export interface DemoS3Server {
  /** `http://127.0.0.1:<port>`. */
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Objects in the bucket and their total size, with the bucket's first keys. */
  list(): Promise<{ objects: number; bytes: number; sampleKey: string | null }>;
  /** Stops the server (its directory stays; the demo's temp dir owns it). Safe twice. */
  close(): Promise<void>;
}

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
}

/** s3rver ships no type declarations; this is the part of its API the demo uses. */
type S3rverConstructor = new (options: {
  address: string;
  port: number;
  directory: string;
  silent: boolean;
  configureBuckets: { name: string }[];
}) => S3rverInstance;

/**
 * s3rver on a free loopback port with one bucket; `close()` also ends keep-alive sockets (the
 * S3 clients' would hold it open). The tests start theirs with this too.
 */
export async function runS3rver(options: {
  directory: string;
  bucket: string;
}): Promise<{ port: number; close(): Promise<void> }> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory: options.directory,
    silent: true,
    configureBuckets: [{ name: options.bucket }],
  });
  const { port } = await server.run();
  return {
    port,
    async close() {
      const closed = server.close();
      server.httpServer?.closeAllConnections();
      await closed;
    },
  };
}

export async function startDemoS3Server(options: { directory: string }): Promise<DemoS3Server> {
  const server = await runS3rver({ directory: options.directory, bucket: DEMO_S3_BUCKET });
  const { port } = server;
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    region: DEMO_S3_REGION,
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: DEMO_S3_ACCESS_KEY_ID, secretAccessKey: DEMO_S3_SECRET_ACCESS_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });

  let closing: Promise<void> | undefined;
  return {
    endpoint,
    bucket: DEMO_S3_BUCKET,
    region: DEMO_S3_REGION,
    accessKeyId: DEMO_S3_ACCESS_KEY_ID,
    secretAccessKey: DEMO_S3_SECRET_ACCESS_KEY,
    async list() {
      let objects = 0;
      let bytes = 0;
      let sampleKey: string | null = null;
      let token: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: DEMO_S3_BUCKET, ContinuationToken: token }),
        );
        for (const object of page.Contents ?? []) {
          objects += 1;
          bytes += object.Size ?? 0;
          sampleKey ??= object.Key ?? null;
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
      return { objects, bytes, sampleKey };
    },
    close() {
      closing ??= (async () => {
        client.destroy();
        await server.close();
      })();
      return closing;
    },
  };
}
