/**
 * Uploads a finished egress file with each store's official SDK, the way livekit/storage does
 * with the Go SDKs: one PutObject (S3), one simple upload (GCS), one block-blob upload (Azure),
 * content type `audio/ogg`, S3 content disposition `inline` unless the request sets one.
 *
 * Where the emulator departs from egress, on purpose:
 * - GCS and Azure have no endpoint in the request (egress always talks to Google and to
 *   `<account>.blob.core.windows.net`), so the emulator's `gcsEndpoint`/`azureBlobEndpoint`
 *   options say where they are (a GCS fake, Azurite). With a custom GCS endpoint the SDK sends
 *   no credentials, as against any emulator.
 * - One attempt, no retries (egress retries S3 five times): the stores are local test servers,
 *   and a test that makes an upload fail wants the failure now.
 * - S3 needs an access key and secret: the emulator never falls back to AWS's default
 *   credential chain (environment, instance metadata), which would reach beyond the machine.
 * - S3 always uses `requestChecksumCalculation: 'WHEN_REQUIRED'` (egress does for custom
 *   endpoints), so s3rver and other S3-compatible stores get plain bodies, not aws-chunked.
 *
 * Errors carry the store's message, never a credential (GCS JSON parse errors quote their input,
 * so those are replaced by a fixed message).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { Storage } from '@google-cloud/storage';
import type { AzureBlobUpload, GCPUpload, S3Upload } from '@livekit/protocol';
import type { UploadTarget } from './egress-storage.ts';

/** livekit/egress `types.OutputTypeOGG`. */
export const OGG_CONTENT_TYPE = 'audio/ogg';
const DEFAULT_S3_REGION = 'us-east-1';
const DEFAULT_S3_CONTENT_DISPOSITION = 'inline';
const UPLOAD_MAX_ATTEMPTS = 1;
/**
 * The S3 client's logger: silent, so it never writes to the console (it warns there about a
 * failed streaming upload by default) and never sees anything worth leaking.
 */
const SILENT_SDK_LOGGER = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
/** An endpoint that accepts no connection fails the upload after this long. */
const UPLOAD_CONNECT_TIMEOUT_MS = 5_000;

export interface UploadEndpoints {
  /** Where GCS is (its JSON API root), instead of Google's. */
  gcsEndpoint?: string;
  /** The Blob service URL incl. account path for Azurite, instead of `https://<account>.blob.core.windows.net`. */
  azureBlobEndpoint?: string;
}

export class UploadRefusedError extends Error {
  override readonly name = 'UploadRefusedError';
}

async function uploadToS3(
  settings: S3Upload,
  localPath: string,
  key: string,
  sizeBytes: number,
): Promise<void> {
  if (settings.accessKey === '' || settings.secret === '') {
    throw new UploadRefusedError(
      'the LiveKit emulator needs accessKey and secret; it never uses AWS default credentials',
    );
  }
  const endpoint =
    settings.endpoint === ''
      ? undefined
      : /^https?:\/\//.test(settings.endpoint)
        ? settings.endpoint
        : `https://${settings.endpoint}`;
  const client = new S3Client({
    region: settings.region === '' ? DEFAULT_S3_REGION : settings.region,
    ...(endpoint === undefined ? {} : { endpoint }),
    forcePathStyle: settings.forcePathStyle,
    credentials: {
      accessKeyId: settings.accessKey,
      secretAccessKey: settings.secret,
      ...(settings.sessionToken === '' ? {} : { sessionToken: settings.sessionToken }),
    },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: UPLOAD_MAX_ATTEMPTS,
    logger: SILENT_SDK_LOGGER,
    requestHandler: { connectionTimeout: UPLOAD_CONNECT_TIMEOUT_MS },
  });
  try {
    await client.send(
      new PutObjectCommand({
        Bucket: settings.bucket,
        Key: key,
        Body: createReadStream(localPath),
        ContentLength: sizeBytes,
        ContentType: OGG_CONTENT_TYPE,
        ContentDisposition:
          settings.contentDisposition === '' ? DEFAULT_S3_CONTENT_DISPOSITION : settings.contentDisposition,
        ...(Object.keys(settings.metadata).length === 0 ? {} : { Metadata: settings.metadata }),
        ...(settings.tagging === '' ? {} : { Tagging: settings.tagging }),
      }),
    );
  } finally {
    client.destroy();
  }
}

function parsedCredentials(json: string): Record<string, unknown> | undefined {
  if (json === '') return undefined;
  try {
    const parsed: unknown = JSON.parse(json);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
      return parsed as Record<string, unknown>;
    }
  } catch {
    // fall through: the parser's message would quote the credentials
  }
  throw new UploadRefusedError('credentials are not a service-account JSON object');
}

async function uploadToGcs(
  settings: GCPUpload,
  localPath: string,
  key: string,
  endpoints: UploadEndpoints,
): Promise<void> {
  const credentials = parsedCredentials(settings.credentials);
  const projectId = typeof credentials?.project_id === 'string' ? credentials.project_id : undefined;
  const storage = new Storage({
    ...(endpoints.gcsEndpoint === undefined ? {} : { apiEndpoint: endpoints.gcsEndpoint }),
    ...(projectId === undefined ? {} : { projectId }),
    ...(credentials === undefined ? {} : { credentials }),
    retryOptions: { maxRetries: UPLOAD_MAX_ATTEMPTS - 1 },
  });
  await storage.bucket(settings.bucket).upload(localPath, {
    destination: key,
    resumable: false,
    contentType: OGG_CONTENT_TYPE,
    validation: 'crc32c',
  });
}

async function uploadToAzure(
  settings: AzureBlobUpload,
  localPath: string,
  key: string,
  endpoints: UploadEndpoints,
): Promise<void> {
  const url = endpoints.azureBlobEndpoint ?? `https://${settings.accountName}.blob.core.windows.net`;
  const credential = new StorageSharedKeyCredential(settings.accountName, settings.accountKey);
  const service = new BlobServiceClient(url, credential, {
    retryOptions: { maxTries: UPLOAD_MAX_ATTEMPTS },
  });
  await service
    .getContainerClient(settings.containerName)
    .getBlockBlobClient(key)
    .uploadFile(localPath, { blobHTTPHeaders: { blobContentType: OGG_CONTENT_TYPE } });
}

/** Uploads `localPath` as `key`; resolves with the bytes uploaded (the file's size). */
export async function uploadEgressFile(options: {
  target: UploadTarget;
  localPath: string;
  key: string;
  endpoints: UploadEndpoints;
}): Promise<{ sizeBytes: number }> {
  const { target, localPath, key, endpoints } = options;
  const { size: sizeBytes } = await stat(localPath);
  switch (target.provider) {
    case 's3':
      await uploadToS3(target.settings, localPath, key, sizeBytes);
      break;
    case 'gcp':
      await uploadToGcs(target.settings, localPath, key, endpoints);
      break;
    case 'azure':
      await uploadToAzure(target.settings, localPath, key, endpoints);
      break;
  }
  return { sizeBytes };
}
