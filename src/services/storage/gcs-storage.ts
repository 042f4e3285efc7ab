/**
 * Recordings in Google Cloud Storage, read with the official `@google-cloud/storage`.
 *
 * Egress side: the request carries a `GCPUpload` with the bucket and the service-account JSON
 * (as text, which is what LiveKit expects). Reading side, with the same credentials: the
 * object's metadata (its length and generation), two ranged reads for the Ogg ends, then one
 * read of the whole object pinned to that generation, validated by the SDK's CRC32C check, so
 * an object replaced meanwhile is never mixed into the upload.
 *
 * `CALLSYNC_GCS_ENDPOINT` points reads at an emulator; the SDK then sends no credentials.
 */
import type { File, Storage } from '@google-cloud/storage';
import { GCPUpload } from '@livekit/protocol';
import {
  objectKeyOf,
  onFirstUse,
  openStoredRecording,
  readSmall,
  storageErrorFor,
  type FirstUse,
  type OpenedRecording,
  type RecordingStorage,
  type ReportedFile,
} from './recording-storage.ts';
import { describeStorage, type GcsStorageSettings } from './storage-settings.ts';

/** A request that makes no progress for this long fails (the upload machine retries). */
export const GCS_REQUEST_TIMEOUT_MS = 30_000;

function statusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' && code >= 100 && code < 600 ? code : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class GcsRecordingStorage implements RecordingStorage {
  readonly kind = 'gcs' as const;
  readonly description: string;
  readonly egressUpload: RecordingStorage['egressUpload'];
  readonly #settings: GcsStorageSettings;
  readonly #storage: FirstUse<Storage>;

  constructor(settings: GcsStorageSettings, options: { sendToEgress: boolean }) {
    this.#settings = settings;
    this.description = describeStorage(settings);
    const credentials = JSON.parse(settings.credentialsJson) as { project_id?: string };
    this.#storage = onFirstUse(async () => {
      const { Storage } = await import('@google-cloud/storage');
      return new Storage({
        ...(credentials.project_id === undefined ? {} : { projectId: credentials.project_id }),
        credentials,
        ...(settings.endpoint === undefined ? {} : { apiEndpoint: settings.endpoint }),
        timeout: GCS_REQUEST_TIMEOUT_MS,
        retryOptions: { maxRetries: 1 },
      });
    });
    this.egressUpload = options.sendToEgress
      ? {
          case: 'gcp',
          value: new GCPUpload({ bucket: settings.bucket, credentials: settings.credentialsJson }),
        }
      : undefined;
  }

  async check(): Promise<void> {
    try {
      const storage = await this.#storage();
      await storage.bucket(this.#settings.bucket).getMetadata();
    } catch (error) {
      throw storageErrorFor(statusOf(error), `bucket ${this.#settings.bucket}`, messageOf(error));
    }
  }

  async open(file: ReportedFile): Promise<OpenedRecording> {
    const key = objectKeyOf(file);
    const where = `gs://${this.#settings.bucket}/${key}`;
    let pinned: File;
    let totalBytes: number;
    try {
      const storage = await this.#storage();
      const [metadata] = await storage.bucket(this.#settings.bucket).file(key).getMetadata();
      totalBytes = Number(metadata.size ?? 0);
      pinned = storage
        .bucket(this.#settings.bucket)
        .file(key, metadata.generation === undefined ? {} : { generation: metadata.generation });
    } catch (error) {
      throw storageErrorFor(statusOf(error), where, messageOf(error));
    }
    return openStoredRecording({
      file,
      key,
      where,
      readRange: async (start, end) => {
        try {
          // The SDK reports HTTP failures on the stream, with the status as `code`.
          const stream = pinned.createReadStream({ start, end, validation: false, decompress: false });
          return { bytes: await readSmall(stream, end - start + 1), totalBytes };
        } catch (error) {
          throw storageErrorFor(statusOf(error), where, messageOf(error));
        }
      },
      readWhole: () =>
        Promise.resolve({ body: pinned.createReadStream({ validation: 'crc32c', decompress: false }) }),
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
