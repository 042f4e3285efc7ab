/**
 * The CRM client: streams a recording to `${CRM_BASE_URL}/upload` and posts the call data to
 * `${CRM_BASE_URL}/call-data`, one attempt per call (retrying is the upload machine's job; the
 * idempotency keys `<callId>:recording` and `<callId>:call-data` make its retries safe).
 *
 * Streaming: the recording arrives as a single-use stream of known length (from the shared
 * volume or a bucket, see `storage/`) and is sent as multipart/form-data built by `form-data`
 * with that length, so the request carries an exact `Content-Length` (some CRMs refuse chunked
 * uploads) and memory stays flat whatever the file size (`npm run bench` checks). A stream that
 * breaks while sending fails as `CRM_SOURCE_READ_FAILED` (retryable: the next attempt reads
 * afresh); form-data does not end its source when a request fails, so we always destroy it.
 *
 * Deadlines cover the whole exchange (connect, send, answer, read) and fire `CRM_TIMEOUT`. The
 * defaults leave room for a retry inside the 30 s delivery target: a call-data POST is a few KiB
 * that a healthy CRM answers in well under a second, so 10 s; an upload also waits for the CRM
 * to store the file, so 20 s, plus one second per MiB (`uploadMinBytesPerSecond`), so a long
 * recording on a modest uplink is not cut off on every attempt and retried forever.
 *
 * Every answer body is consumed (or destroyed) so no connection is left hanging, and errors
 * carry the CRM's answer (capped, API key scrubbed) but never the request's headers.
 */
import type { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import FormData from 'form-data';
import { Agent, request, type Dispatcher } from 'undici';
import type { CallData } from '../payload/call-data.ts';
import {
  CRM_ANSWER_DETAIL_MAX_BYTES,
  CRM_ERROR_CODES,
  CrmError,
  errorForStatus,
  errorForTransport,
  redactSecrets,
  truncateUtf8,
  type CrmEndpoint,
} from './crm.errors.ts';

export const CALL_DATA_TIMEOUT_MS_DEFAULT = 10_000;
export const UPLOAD_TIMEOUT_MS_DEFAULT = 20_000;
export const UPLOAD_MIN_BYTES_PER_SECOND_DEFAULT = 1024 * 1024;
/** Of an answer, we read at most this much (a file URL or an error fits easily). */
export const CRM_ANSWER_READ_MAX_BYTES = 256 * 1024;
export const RECORDING_CONTENT_TYPE = 'audio/ogg';

export interface CrmRequestInfo {
  endpoint: CrmEndpoint;
  /** The HTTP status (`"201"`, `"503"`), or the error code when there was no answer (`"CRM_TIMEOUT"`). */
  code: string;
  durationSeconds: number;
}

export interface CrmClientOptions {
  /** CRM API root: recordings go to `${baseUrl}/upload`, call data to `${baseUrl}/call-data`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>` when set. Never logged or put in errors. */
  apiKey?: string | undefined;
  /**
   * Deadline of one request, ms, send to last byte of the answer. Unset: 10 s for call data,
   * 20 s (+ size allowance) for uploads.
   */
  requestTimeoutMs?: number | undefined;
  /** Base deadline of an upload, ms, before the size allowance; default `requestTimeoutMs` or 20 s. */
  uploadTimeoutMs?: number | undefined;
  /** The upload deadline grows by `size / uploadMinBytesPerSecond` seconds. Default 1 MiB/s. */
  uploadMinBytesPerSecond?: number | undefined;
  /** An undici dispatcher to send through; by default the client owns an `Agent` and closes it on `close()`. */
  dispatcher?: Dispatcher | undefined;
  /** Called once per CRM request that was attempted (the `callsync_crm_request_duration_seconds` hook). */
  onRequest?: ((info: CrmRequestInfo) => void) | undefined;
}

/** The recording to send: a single-use stream of exactly `sizeBytes` bytes. */
export interface RecordingBody {
  body: Readable;
  sizeBytes: number;
  /** The multipart filename: the recording's base name. */
  fileName: string;
}

export interface UploadRecordingInput {
  callId: string;
  recording: RecordingBody;
  /** Deadline of this upload, ms; default the client's base deadline plus its size allowance. */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

export interface UploadRecordingResult {
  /** The stored file's URL, as the CRM answered it (absolute http(s)). */
  url: string;
  status: number;
  sizeBytes: number;
}

export interface PostCallDataInput {
  callId: string;
  document: CallData;
  /** Deadline of this request, ms; default the client's. */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

export interface PostCallDataResult {
  status: number;
  /** The CRM's answer: parsed JSON when it is JSON, else the text (null when empty). */
  body: unknown;
}

export interface CrmClient {
  uploadRecording(input: UploadRecordingInput): Promise<UploadRecordingResult>;
  postCallData(input: PostCallDataInput): Promise<PostCallDataResult>;
  /** Closes an owned dispatcher (after in-flight requests). Safe to call twice. */
  close(): Promise<void>;
}

interface Answer {
  status: number;
  /** Capped to `CRM_ANSWER_READ_MAX_BYTES`, secrets scrubbed. */
  body: string;
  retryAfter: string | null;
}

const URL_FIELDS = ['url', 'fileUrl', 'location'] as const;

/** The file URL of an upload answer: `url`, `fileUrl` or `location`, top level or under `data`. */
export function fileUrlFromAnswer(body: string): string | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }
  const holders = [json, (json as { data?: unknown } | null)?.data];
  for (const holder of holders) {
    if (typeof holder !== 'object' || holder === null) continue;
    for (const field of URL_FIELDS) {
      const value = (holder as Record<string, unknown>)[field];
      if (typeof value === 'string' && isAbsoluteHttpUrl(value)) return value;
    }
  }
  return undefined;
}

function isAbsoluteHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

function parseMaybeJson(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function headerText(value: string | string[] | undefined): string | null {
  if (Array.isArray(value)) return value[0] ?? null;
  return value ?? null;
}

/** Reads up to `maxBytes` of the body as UTF-8 and destroys the rest (closing that connection). */
async function readCapped(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    total += chunk.length;
    if (total >= maxBytes) break; // leaving the loop destroys the body
  }
  return Buffer.concat(chunks, total).subarray(0, maxBytes).toString('utf8');
}

/** Destroys the stream (a no-op when it already ended) and waits until its file is closed. */
export function createCrmClient(options: CrmClientOptions): CrmClient {
  let base: URL;
  try {
    base = new URL(options.baseUrl);
  } catch {
    throw new TypeError('CRM baseUrl is not a valid URL');
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new TypeError(`CRM baseUrl must be http(s), got ${base.protocol}`);
  }
  const root = options.baseUrl.replace(/\/+$/, '');
  const endpoints: Record<CrmEndpoint, string> = { upload: `${root}/upload`, call_data: `${root}/call-data` };
  const secrets = [options.apiKey, base.password === '' ? undefined : decodeURIComponent(base.password)];
  const callDataTimeoutMs = options.requestTimeoutMs ?? CALL_DATA_TIMEOUT_MS_DEFAULT;
  const uploadTimeoutMs = options.uploadTimeoutMs ?? options.requestTimeoutMs ?? UPLOAD_TIMEOUT_MS_DEFAULT;
  const uploadMinBytesPerSecond = options.uploadMinBytesPerSecond ?? UPLOAD_MIN_BYTES_PER_SECOND_DEFAULT;
  const ownDispatcher = options.dispatcher === undefined ? new Agent() : undefined;
  const dispatcher: Dispatcher = options.dispatcher ?? ownDispatcher!;
  let closed = false;
  let closing: Promise<void> | undefined;

  function report(endpoint: CrmEndpoint, code: string, startedMs: number) {
    try {
      options.onRequest?.({ endpoint, code, durationSeconds: (performance.now() - startedMs) / 1000 });
    } catch {
      // A metrics hook must not turn a delivered request into a failed one.
    }
  }

  function baseHeaders(): Record<string, string> {
    return options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` };
  }

  function assertOpen(endpoint: CrmEndpoint) {
    if (closed) {
      throw new CrmError(CRM_ERROR_CODES.CLIENT_CLOSED, 'CRM client is closed', {
        endpoint,
        retryable: true,
      });
    }
  }

  /**
   * One exchange under one deadline. Resolves with any HTTP answer (2xx or not), read and
   * scrubbed; rejects with a `CrmError` when there was none. Reports to `onRequest` either way.
   */
  async function exchange(
    endpoint: CrmEndpoint,
    init: {
      headers: Record<string, string>;
      body: string | FormData;
      timeoutMs: number;
      signal: AbortSignal | undefined;
      /** A failure on our side (the file) that explains a transport error better than undici does. */
      localFailure?: () => CrmError | undefined;
    },
  ): Promise<Answer> {
    const startedMs = performance.now();
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Error('CRM request deadline')), init.timeoutMs);
    const signal =
      init.signal === undefined ? deadline.signal : AbortSignal.any([init.signal, deadline.signal]);
    let code: string = CRM_ERROR_CODES.NETWORK_ERROR;
    try {
      const response = await request(endpoints[endpoint], {
        method: 'POST',
        headers: init.headers,
        // form-data is a (legacy) stream, which undici pipes with backpressure.
        body: init.body,
        dispatcher,
        signal,
        headersTimeout: init.timeoutMs,
        bodyTimeout: init.timeoutMs,
      });
      let text: string;
      try {
        text = await readCapped(response.body, CRM_ANSWER_READ_MAX_BYTES);
      } finally {
        if (!response.body.destroyed) response.body.destroy();
      }
      code = String(response.statusCode);
      return {
        status: response.statusCode,
        body: redactSecrets(text, secrets),
        retryAfter: headerText(response.headers['retry-after']),
      };
    } catch (error) {
      const crmError =
        init.localFailure?.() ??
        errorForTransport(endpoint, error, {
          timedOut: deadline.signal.aborted,
          aborted: init.signal?.aborted === true,
          timeoutMs: init.timeoutMs,
          secrets,
        });
      code = crmError.code;
      throw crmError;
    } finally {
      clearTimeout(timer);
      report(endpoint, code, startedMs);
    }
  }

  function failIfNot2xx(endpoint: CrmEndpoint, answer: Answer): void {
    if (answer.status >= 200 && answer.status < 300) return;
    throw errorForStatus(endpoint, {
      ...answer,
      body: truncateUtf8(answer.body, CRM_ANSWER_DETAIL_MAX_BYTES),
    });
  }

  return {
    async uploadRecording({ callId, recording, timeoutMs, signal }) {
      assertOpen('upload');
      const { body, sizeBytes, fileName } = recording;
      let readError: unknown;
      const onReadError = (error: unknown) => (readError ??= error);
      body.once('error', onReadError);
      try {
        const form = new FormData();
        form.append('file', body, {
          filename: fileName,
          contentType: RECORDING_CONTENT_TYPE,
          knownLength: sizeBytes,
        });
        const answer = await exchange('upload', {
          headers: {
            ...form.getHeaders(),
            'content-length': String(form.getLengthSync()),
            'idempotency-key': `${callId}:recording`,
            ...baseHeaders(),
          },
          body: form,
          timeoutMs: timeoutMs ?? uploadTimeoutMs + Math.ceil((sizeBytes / uploadMinBytesPerSecond) * 1000),
          signal,
          localFailure: () =>
            readError === undefined
              ? undefined
              : new CrmError(
                  CRM_ERROR_CODES.SOURCE_READ_FAILED,
                  `the recording could not be read while sending: ${readError instanceof Error ? readError.message : 'unknown error'}`,
                  { endpoint: 'upload', retryable: true, details: { fileName }, cause: readError },
                ),
        });
        failIfNot2xx('upload', answer);
        const url = fileUrlFromAnswer(answer.body);
        if (url === undefined) {
          throw new CrmError(
            CRM_ERROR_CODES.BAD_RESPONSE,
            `CRM upload answered HTTP ${answer.status} without an absolute file URL (url, fileUrl or location)`,
            {
              endpoint: 'upload',
              retryable: false,
              status: answer.status,
              details: { body: truncateUtf8(answer.body) },
            },
          );
        }
        return { url, status: answer.status, sizeBytes };
      } finally {
        body.off('error', onReadError);
        // Never leave the source half-read: an unread store body holds its socket.
        if (!body.destroyed) body.destroy();
      }
    },

    async postCallData({ callId, document, timeoutMs, signal }) {
      assertOpen('call_data');
      const answer = await exchange('call_data', {
        headers: {
          'content-type': 'application/json',
          'idempotency-key': `${callId}:call-data`,
          ...baseHeaders(),
        },
        body: JSON.stringify(document),
        timeoutMs: timeoutMs ?? callDataTimeoutMs,
        signal,
      });
      failIfNot2xx('call_data', answer);
      return { status: answer.status, body: parseMaybeJson(answer.body) };
    },

    close() {
      closed = true;
      closing ??= ownDispatcher === undefined ? Promise.resolve() : ownDispatcher.close();
      return closing;
    },
  };
}

// Re-exported so callers need one import for the client and its errors.
export { CRM_ERROR_CODES, CrmError, type CrmEndpoint, type CrmErrorCode } from './crm.errors.ts';
