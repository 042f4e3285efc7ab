/**
 * Recordings in AWS S3 or an S3-compatible store (MinIO, Cloudflare R2, Ceph, …), read with
 * the official `@aws-sdk/client-s3`.
 *
 * Egress side: the request carries an `S3Upload` with the same bucket, region, endpoint, path
 * style and keys callsync reads with. Reading side: two ranged `GetObject`s for the Ogg ends,
 * then one `GetObject` of the whole object pinned to the ETag the first read saw (`If-Match`),
 * so an object replaced meanwhile fails as `RECORDING_REPLACED` instead of mixing two files.
 *
 * Client policy: checksums only when required (`WHEN_REQUIRED`), as non-AWS stores mangle the
 * SDK's default `aws-chunked` trailers; one shared client and its keep-alive sockets for every
 * call; a connection that takes over `S3_CONNECT_TIMEOUT_MS` or a socket idle for over
 * `S3_SOCKET_IDLE_TIMEOUT_MS` fails the read (the upload machine retries it).
 */
import type { Readable } from 'node:stream';
import type * as S3Sdk from '@aws-sdk/client-s3';
import { S3Upload } from '@livekit/protocol';
import {
  objectKeyOf,
  onFirstUse,
  openStoredRecording,
  readSmall,
  storageErrorFor,
  totalFromContentRange,
  type FirstUse,
  type OpenedRecording,
  type RecordingStorage,
  type ReportedFile,
} from './recording-storage.ts';
import { describeStorage, type S3StorageSettings } from './storage-settings.ts';

export const S3_CONNECT_TIMEOUT_MS = 5_000;
export const S3_SOCKET_IDLE_TIMEOUT_MS = 30_000;

/** The SDK's service errors (`S3ServiceException`) carry the HTTP status in `$metadata`. */
function statusOf(error: unknown): number | undefined {
  const status = (error as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

export class S3RecordingStorage implements RecordingStorage {
  readonly kind = 's3' as const;
  readonly description: string;
  readonly egressUpload: RecordingStorage['egressUpload'];
  readonly #settings: S3StorageSettings;
  readonly #sdk: FirstUse<{ client: S3Sdk.S3Client; sdk: typeof S3Sdk }>;

  constructor(settings: S3StorageSettings, options: { sendToEgress: boolean }) {
    this.#settings = settings;
    this.description = describeStorage(settings);
    const { accessKeyId, secretAccessKey, sessionToken } = settings;
    this.#sdk = onFirstUse(async () => {
      const sdk = await import('@aws-sdk/client-s3');
      const client = new sdk.S3Client({
        region: settings.region,
        ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
        forcePathStyle: settings.forcePathStyle,
        ...(accessKeyId !== undefined && secretAccessKey !== undefined
          ? { credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } }
          : {}),
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        maxAttempts: 2,
        requestHandler: {
          connectionTimeout: S3_CONNECT_TIMEOUT_MS,
          requestTimeout: S3_SOCKET_IDLE_TIMEOUT_MS,
        },
      });
      return { client, sdk };
    });
    this.egressUpload = options.sendToEgress
      ? {
          case: 's3',
          value: new S3Upload({
            bucket: settings.bucket,
            region: settings.region,
            endpoint: settings.endpoint ?? '',
            forcePathStyle: settings.forcePathStyle,
            accessKey: accessKeyId ?? '',
            secret: secretAccessKey ?? '',
            sessionToken: sessionToken ?? '',
          }),
        }
      : undefined;
  }

  async check(signal?: AbortSignal): Promise<void> {
    try {
      const { client, sdk } = await this.#sdk();
      await client.send(new sdk.HeadBucketCommand({ Bucket: this.#settings.bucket }), {
        abortSignal: signal,
      });
    } catch (error) {
      throw storageErrorFor(statusOf(error), `bucket ${this.#settings.bucket}`, messageOf(error));
    }
  }

  async open(file: ReportedFile, signal?: AbortSignal): Promise<OpenedRecording> {
    const key = objectKeyOf(file);
    const where = `s3://${this.#settings.bucket}/${key}`;
    let etag: string | undefined;
    const get = async (range: string | undefined) => {
      try {
        const { client, sdk } = await this.#sdk();
        return await client.send(
          new sdk.GetObjectCommand({
            Bucket: this.#settings.bucket,
            Key: key,
            ...(range === undefined ? {} : { Range: range }),
            ...(etag === undefined ? {} : { IfMatch: etag }),
          }),
          { abortSignal: signal },
        );
      } catch (error) {
        throw storageErrorFor(statusOf(error), where, messageOf(error));
      }
    };
    return openStoredRecording({
      file,
      key,
      where,
      readRange: async (start, end) => {
        const part = await get(`bytes=${start}-${end}`);
        etag ??= part.ETag;
        const bytes = await readSmall(part.Body as Readable, end - start + 1);
        return {
          bytes,
          totalBytes: totalFromContentRange(part.ContentRange) ?? part.ContentLength ?? bytes.length,
        };
      },
      readWhole: async () => {
        const whole = await get(undefined);
        return { body: whole.Body as Readable, sizeBytes: whole.ContentLength };
      },
    });
  }

  async close(): Promise<void> {
    if (!this.#sdk.made) return;
    const made = await this.#sdk().catch(() => undefined);
    made?.client.destroy();
  }
}
