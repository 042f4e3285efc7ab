/**
 * Where the egress writes each recording and callsync reads it back (`CALLSYNC_EGRESS_STORAGE`
 * and the `CALLSYNC_S3_*`, `CALLSYNC_GCS_*`, `CALLSYNC_AZURE_*` variables, parsed in
 * `config.ts`). One settings object serves both directions: the upload settings the egress
 * request carries, and the client callsync reads the object back with, so the two can never
 * name different buckets.
 *
 * Secrets (keys, the GCS service-account JSON) live only here and in the egress request; they
 * never reach a log line, a metric, an error message or an API answer.
 */

export type StorageKind = 'local' | 's3' | 'gcs' | 'azure';

export interface LocalStorageSettings {
  kind: 'local';
  /** The volume shared with the egress (`CALLSYNC_RECORDINGS_DIR`). */
  recordingsDir: string;
}

export interface S3StorageSettings {
  kind: 's3';
  bucket: string;
  region: string;
  /** An S3-compatible store's URL (MinIO, R2, …); unset for AWS. */
  endpoint: string | undefined;
  forcePathStyle: boolean;
  /** Unset: the SDK's default chain (environment, instance role) for reading; the egress then uses its own. */
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  sessionToken: string | undefined;
}

export interface GcsStorageSettings {
  kind: 'gcs';
  bucket: string;
  /** The service-account JSON key, as text: what the egress request carries. */
  credentialsJson: string;
  /** Only for reading through an emulator; the egress always writes to Google. */
  endpoint: string | undefined;
}

export interface AzureStorageSettings {
  kind: 'azure';
  accountName: string;
  accountKey: string;
  container: string;
  /** `https://<account>.blob.core.windows.net` unless an emulator such as Azurite is used. */
  blobEndpoint: string;
}

export type StorageSettings =
  LocalStorageSettings | S3StorageSettings | GcsStorageSettings | AzureStorageSettings;

export interface EgressStorageSettings {
  storage: StorageSettings;
  /**
   * `true`: every egress request carries the upload settings (LiveKit Cloud refuses a file
   * output without them); `false`: the egress server's own `storage:` block applies and
   * callsync only reads (`CALLSYNC_EGRESS_SEND_STORAGE`).
   */
  sendToEgress: boolean;
}

/** Where a bucket store lives, for logs and readiness answers: no secret in it. */
export function describeStorage(settings: StorageSettings): string {
  switch (settings.kind) {
    case 'local':
      return `local volume ${settings.recordingsDir}`;
    case 's3':
      return `s3 bucket ${settings.bucket}${settings.endpoint ? ` at ${settings.endpoint}` : ` in ${settings.region}`}`;
    case 'gcs':
      return `gcs bucket ${settings.bucket}`;
    case 'azure':
      return `azure container ${settings.container} of account ${settings.accountName}`;
  }
}
