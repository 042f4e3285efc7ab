/**
 * The recording storage for a deployment's settings: one home for where recordings live.
 * See `recording-storage.ts` for the reading policy every store follows.
 */
import { AzureRecordingStorage } from './azure-storage.ts';
import { GcsRecordingStorage } from './gcs-storage.ts';
import { LocalRecordingStorage } from './local-storage.ts';
import type { RecordingStorage } from './recording-storage.ts';
import { S3RecordingStorage } from './s3-storage.ts';
import type { EgressStorageSettings } from './storage-settings.ts';

export function createRecordingStorage({ storage, sendToEgress }: EgressStorageSettings): RecordingStorage {
  switch (storage.kind) {
    case 'local':
      return new LocalRecordingStorage(storage);
    case 's3':
      return new S3RecordingStorage(storage, { sendToEgress });
    case 'gcs':
      return new GcsRecordingStorage(storage, { sendToEgress });
    case 'azure':
      return new AzureRecordingStorage(storage, { sendToEgress });
  }
}

export {
  RECORDING_ERROR_CODES,
  RecordingError,
  type OpenedRecording,
  type RecordingErrorCode,
  type RecordingStorage,
  type ReportedFile,
} from './recording-storage.ts';
export { LocalRecordingStorage } from './local-storage.ts';
export * from './storage-settings.ts';
