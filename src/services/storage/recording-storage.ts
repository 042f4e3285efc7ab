/**
 * Recordings, wherever the egress wrote them: one small interface over the shared volume and
 * the S3, GCS and Azure Blob stores (`local-storage.ts`, `s3-storage.ts`, `gcs-storage.ts`,
 * `azure-storage.ts`; `createRecordingStorage` in `index.ts` picks one from the settings).
 *
 * Reading policy, the same for every store:
 * - Where: the bucket or container comes from callsync's own settings and the key from the
 *   egress's `filename` (the templated filepath). The egress's `location` is never fetched or
 *   parsed for a bucket store: its format changed between egress versions.
 * - What: before anything is sent, the recording's two ends are read (two small ranged reads,
 *   `OGG_HEAD_READ_BYTES` and `OGG_TAIL_READ_BYTES`), which proves it is a finished Ogg Opus
 *   stream and gives its duration without downloading it twice. A store's length that differs
 *   from the size the egress reported means another or a partial object: refused.
 * - How: `open()` once per upload attempt gives a fresh, single-use stream of the whole
 *   object with its length known (never whole in memory); `close()` destroys whatever was not
 *   consumed, on every path, because an unread S3 or Azure body holds its socket.
 *
 * Error policy (`RecordingError`, codes below): a missing object is retryable (a store or a
 * shared volume may show it a moment after the egress reports it), as is a store that does not
 * answer; a refusal (403), a file that is not Ogg, outside the root or of the wrong size is not.
 * How long retryable ones may hold the call data back is the machines' recording policy.
 *
 * Loading policy: a bucket store's SDK is imported on its first use (`onFirstUse`), never at
 * start-up by the others. Each costs 150-200 ms of CPU and 20-30 MiB of memory to load; a shared
 * volume needs none of them, and a bucket deployment only its own.
 */
import type { Readable } from 'node:stream';
import type { EncodedFileOutput } from '@livekit/protocol';
import { OGG_HEAD_READ_BYTES, OGG_TAIL_READ_BYTES, oggOpusInfoFromEnds } from '../../audio/ogg-opus.ts';
import { OggFormatError } from '../../audio/ogg-page.ts';
import { CallsyncError, type CallsyncErrorOptions } from '../../errors.ts';
import type { EgressFile } from '../../machines/call.types.ts';
import type { StorageKind } from './storage-settings.ts';

export const RECORDING_ERROR_CODES = {
  /** The egress reported no file name. */
  NO_PATH: 'RECORDING_NO_PATH',
  /** Not (yet) in the store or on the volume. Retryable. */
  NOT_FOUND: 'RECORDING_NOT_FOUND',
  /** A path that leaves `CALLSYNC_RECORDINGS_DIR` (`..`, absolute elsewhere, a symlink out). */
  OUTSIDE_ROOT: 'RECORDING_OUTSIDE_ROOT',
  NOT_A_FILE: 'RECORDING_NOT_A_FILE',
  /** Not a finished Ogg Opus stream (empty, truncated, another format). */
  INVALID: 'RECORDING_INVALID',
  /** The store's length is not the size the egress reported. */
  SIZE_MISMATCH: 'RECORDING_SIZE_MISMATCH',
  /** The file changed between being checked and being opened (a swap on the shared volume). */
  CHANGED: 'RECORDING_CHANGED',
  /** A stored object was overwritten between two reads (its ETag or generation moved). Retryable. */
  REPLACED: 'RECORDING_REPLACED',
  /** The store refused callsync's credentials (401/403). */
  ACCESS_DENIED: 'STORAGE_ACCESS_DENIED',
  /** The store did not answer, or answered 5xx. Retryable. */
  UNAVAILABLE: 'STORAGE_UNAVAILABLE',
  /** `CALLSYNC_RECORDINGS_DIR` is missing or unreadable (a start-up error). */
  DIR_MISSING: 'RECORDINGS_DIR_MISSING',
} as const;

export type RecordingErrorCode = (typeof RECORDING_ERROR_CODES)[keyof typeof RECORDING_ERROR_CODES];

export class RecordingError extends CallsyncError {
  declare readonly code: RecordingErrorCode;

  constructor(code: RecordingErrorCode, message: string, options: CallsyncErrorOptions) {
    super(code, message, options);
  }
}

/**
 * What the egress reported about its file (`fileResults[0]`): `filename` is the templated
 * filepath (the key in the bucket, or the path under the recordings root); `location` where the
 * egress says it put it (a path on its host or a storage URL; only logged for buckets).
 */
export type ReportedFile = Pick<EgressFile, 'filename' | 'location' | 'sizeBytes'>;

/** One recording, opened for one upload attempt. */
export interface OpenedRecording {
  /** The name the CRM gets: the recording's base name. */
  fileName: string;
  sizeBytes: number;
  /** From the Ogg stream's last granule position, not the egress's wall-clock figure. */
  durationSeconds: number;
  /** Where it was read, for logs (a path, or `s3://bucket/key`); no secret. */
  source: string;
  /** The whole recording, single use. Consumed by the upload, or destroyed by `close()`. */
  body: Readable;
  /** Destroys the body if it was not consumed and releases its file or socket. Safe twice. */
  close(): Promise<void>;
}

export interface RecordingStorage {
  readonly kind: StorageKind;
  /** For logs and `/readyz`: where recordings are read; no secret. */
  readonly description: string;
  /**
   * The upload settings every egress request carries (`EncodedFileOutput.output`), or
   * `undefined` when it carries none (local storage, or `CALLSYNC_EGRESS_SEND_STORAGE=false`).
   */
  readonly egressUpload: EncodedFileOutput['output'] | undefined;
  open(file: ReportedFile, signal?: AbortSignal): Promise<OpenedRecording>;
  /** Resolves when the store is reachable with callsync's settings; else a `RecordingError` saying why. */
  check(signal?: AbortSignal): Promise<void>;
  /** Releases the store's client. Safe twice. */
  close(): Promise<void>;
}

/** The object key the egress wrote: its `filename` without a leading slash. */
export function objectKeyOf(file: ReportedFile): string {
  const key = file.filename.replace(/^\/+/, '');
  if (key === '') {
    throw new RecordingError(RECORDING_ERROR_CODES.NO_PATH, 'the egress reported no file name', {
      retryable: false,
    });
  }
  return key;
}

export function baseNameOf(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

/** One ranged read of a stored object: its bytes and the whole object's length. */
export interface RangeRead {
  bytes: Buffer;
  totalBytes: number;
}

/**
 * Reads a stored recording's two ends with `readRange(start, endInclusive)` (the first read
 * also tells the object's length) and returns its length and Ogg duration. `where` names it
 * in errors.
 */
export async function probeOggRecording(
  where: string,
  readRange: (start: number, endInclusive: number) => Promise<RangeRead>,
): Promise<{ sizeBytes: number; durationSeconds: number }> {
  const first = await readRange(0, OGG_HEAD_READ_BYTES - 1);
  const sizeBytes = first.totalBytes;
  if (sizeBytes === 0) {
    throw new RecordingError(RECORDING_ERROR_CODES.INVALID, `recording ${where} is empty`, {
      retryable: false,
    });
  }
  const tailLength = Math.min(sizeBytes, OGG_TAIL_READ_BYTES);
  // A short recording is all head: one read serves both ends.
  const tail =
    sizeBytes <= first.bytes.length
      ? first.bytes
      : (await readRange(sizeBytes - tailLength, sizeBytes - 1)).bytes;
  try {
    return { sizeBytes, durationSeconds: oggOpusInfoFromEnds(first.bytes, tail, sizeBytes).durationSeconds };
  } catch (error) {
    if (error instanceof OggFormatError) {
      throw new RecordingError(
        RECORDING_ERROR_CODES.INVALID,
        `recording ${where} is not a valid Ogg Opus file: ${error.message}`,
        { retryable: false, cause: error },
      );
    }
    throw error;
  }
}

/** The whole object's length from a ranged answer's `Content-Range` (`bytes 0-99/12345` → 12345). */
export function totalFromContentRange(contentRange: string | undefined): number | undefined {
  const total = contentRange?.split('/')[1];
  const parsed = total === undefined ? Number.NaN : Number(total);
  return Number.isSafeInteger(parsed) ? parsed : undefined;
}

/**
 * The reading policy for a bucket store, given its two kinds of read: the Ogg ends (ranged),
 * the size check, then the whole object as a single-use stream. Each store supplies only how
 * it reads (and pins the version the first read saw).
 */
export async function openStoredRecording(options: {
  file: ReportedFile;
  key: string;
  /** Names the object in errors and logs (`s3://bucket/key`). */
  where: string;
  readRange: (start: number, endInclusive: number) => Promise<RangeRead>;
  readWhole: () => Promise<{ body: Readable; sizeBytes?: number | undefined }>;
}): Promise<OpenedRecording> {
  const { file, key, where } = options;
  const { sizeBytes, durationSeconds } = await probeOggRecording(where, options.readRange);
  assertReportedSize(file, sizeBytes, where);
  const whole = await options.readWhole();
  return {
    fileName: baseNameOf(key),
    sizeBytes: whole.sizeBytes ?? sizeBytes,
    durationSeconds,
    source: where,
    body: whole.body,
    close: closerOf(whole.body),
  };
}

/** Refuses a stored object whose length is not what the egress reported (when it reported one). */
export function assertReportedSize(file: ReportedFile, sizeBytes: number, where: string): void {
  const reported = file.sizeBytes;
  if (reported === undefined || reported === null || reported <= 0 || reported === sizeBytes) return;
  throw new RecordingError(
    RECORDING_ERROR_CODES.SIZE_MISMATCH,
    `recording ${where} holds ${sizeBytes} bytes but the egress reported ${reported}`,
    { retryable: false, details: { storedBytes: sizeBytes, reportedBytes: reported } },
  );
}

/** Reads a small stream (a ranged read) into one buffer, at most `maxBytes`. */
export async function readSmall(stream: Readable, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream) {
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      total += bytes.length;
      if (total > maxBytes) break;
      chunks.push(bytes);
    }
  } finally {
    if (!stream.destroyed) stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, maxBytes);
}

/** An `OpenedRecording.close` for a body stream: destroy it unless it ended, wait until closed. */
export function closerOf(body: Readable, release?: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= (async () => {
      if (!body.destroyed) {
        const closed = new Promise<void>((resolve) => {
          body.once('close', () => resolve());
        });
        body.destroy();
        await closed;
      }
      await release?.();
    })();
    return closing;
  };
}

/** Maps a store's HTTP status to our codes; `undefined` status = no answer (network, timeout). */
export function storageErrorFor(status: number | undefined, where: string, message: string): RecordingError {
  // The SDK's error is not kept as `cause`: some carry the signed request (an Azure
  // `RestError` holds its Authorization header), and errors reach logs.
  if (status === 404) {
    return new RecordingError(RECORDING_ERROR_CODES.NOT_FOUND, `recording ${where} does not exist (yet)`, {
      retryable: true,
      status,
    });
  }
  if (status === 401 || status === 403) {
    return new RecordingError(
      RECORDING_ERROR_CODES.ACCESS_DENIED,
      `the store refused to read ${where} (HTTP ${status}): ${message}`,
      { retryable: false, status },
    );
  }
  if (status === 412) {
    return new RecordingError(
      RECORDING_ERROR_CODES.REPLACED,
      `recording ${where} was replaced while being read`,
      {
        retryable: true,
        status,
      },
    );
  }
  if (status === 416) {
    return new RecordingError(RECORDING_ERROR_CODES.INVALID, `recording ${where} is empty or truncated`, {
      retryable: false,
      status,
    });
  }
  if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return new RecordingError(
      RECORDING_ERROR_CODES.ACCESS_DENIED,
      `the store refused to read ${where} (HTTP ${status}): ${message}`,
      { retryable: false, status },
    );
  }
  return new RecordingError(
    RECORDING_ERROR_CODES.UNAVAILABLE,
    `the store did not serve ${where}${status === undefined ? '' : ` (HTTP ${status})`}: ${message}`,
    { retryable: true, status },
  );
}

/**
 * A value made by `create` on the first call and shared by every later one: a bucket store's
 * SDK and client, imported and built only when a recording is first read or the store checked.
 * `made` tells whether it was ever asked for (a store that was never used has nothing to close).
 */
export interface FirstUse<T> {
  (): Promise<T>;
  readonly made: boolean;
}

export function onFirstUse<T>(create: () => Promise<T>): FirstUse<T> {
  let value: Promise<T> | undefined;
  const get = () => (value ??= create());
  return Object.defineProperty(get, 'made', { get: () => value !== undefined }) as FirstUse<T>;
}
