/**
 * Recordings in Azure Blob Storage, read with the official `@azure/storage-blob` and the same
 * shared key the egress request's `AzureBlobUpload` carries.
 *
 * Reading: two ranged downloads for the Ogg ends, then one download of the whole blob pinned to
 * the ETag the first read saw (`If-Match`); the SDK resumes a broken download with ranged
 * re-requests pinned to that ETag (up to `AZURE_MAX_RETRY_REQUESTS`), so the bytes the CRM
 * gets are one blob's. `CALLSYNC_AZURE_BLOB_ENDPOINT` points at an emulator such as Azurite;
 * the egress itself always writes to `https://<account>.blob.core.windows.net`.
 */
import type { Readable } from 'node:stream';
import { AzureBlobUpload } from '@livekit/protocol';
import type { ContainerClient } from '@azure/storage-blob';
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
import { describeStorage, type AzureStorageSettings } from './storage-settings.ts';

export const AZURE_MAX_RETRY_REQUESTS = 5;
/** One request that takes longer fails (the SDK retries it, then the upload machine does). */
export const AZURE_TRY_TIMEOUT_SECONDS = 30;

function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

function messageOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
  return typeof code === 'string' ? `${code}: ${message}` : (message ?? 'unknown error');
}

export class AzureRecordingStorage implements RecordingStorage {
  readonly kind = 'azure' as const;
  readonly description: string;
  readonly egressUpload: RecordingStorage['egressUpload'];
  readonly #settings: AzureStorageSettings;
  readonly #container: FirstUse<ContainerClient>;

  constructor(settings: AzureStorageSettings, options: { sendToEgress: boolean }) {
    this.#settings = settings;
    this.description = describeStorage(settings);
    this.#container = onFirstUse(async () => {
      const { BlobServiceClient, StorageSharedKeyCredential } = await import('@azure/storage-blob');
      const service = new BlobServiceClient(
        settings.blobEndpoint,
        new StorageSharedKeyCredential(settings.accountName, settings.accountKey),
        { retryOptions: { maxTries: 2, tryTimeoutInMs: AZURE_TRY_TIMEOUT_SECONDS * 1000 } },
      );
      return service.getContainerClient(settings.container);
    });
    this.egressUpload = options.sendToEgress
      ? {
          case: 'azure',
          value: new AzureBlobUpload({
            accountName: settings.accountName,
            accountKey: settings.accountKey,
            containerName: settings.container,
          }),
        }
      : undefined;
  }

  async check(signal?: AbortSignal): Promise<void> {
    try {
      const container = await this.#container();
      await container.getProperties(signal === undefined ? {} : { abortSignal: signal });
    } catch (error) {
      throw storageErrorFor(statusOf(error), `container ${this.#settings.container}`, messageOf(error));
    }
  }

  async open(file: ReportedFile, signal?: AbortSignal): Promise<OpenedRecording> {
    const key = objectKeyOf(file);
    const where = `azure://${this.#settings.accountName}/${this.#settings.container}/${key}`;
    let etag: string | undefined;
    const download = async (offset: number, count: number | undefined) => {
      try {
        const blob = (await this.#container()).getBlobClient(key);
        return await blob.download(offset, count, {
          ...(signal === undefined ? {} : { abortSignal: signal }),
          ...(etag === undefined ? {} : { conditions: { ifMatch: etag } }),
          maxRetryRequests: AZURE_MAX_RETRY_REQUESTS,
        });
      } catch (error) {
        throw storageErrorFor(statusOf(error), where, messageOf(error));
      }
    };
    return openStoredRecording({
      file,
      key,
      where,
      readRange: async (start, end) => {
        const part = await download(start, end - start + 1);
        etag ??= part.etag;
        const bytes = await readSmall(part.readableStreamBody as Readable, end - start + 1);
        return {
          bytes,
          totalBytes: totalFromContentRange(part.contentRange) ?? part.contentLength ?? bytes.length,
        };
      },
      readWhole: async () => {
        const whole = await download(0, undefined);
        return { body: whole.readableStreamBody as Readable, sizeBytes: whole.contentLength };
      },
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
