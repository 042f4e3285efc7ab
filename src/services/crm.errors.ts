/**
 * How a CRM request failed, decided once, here, at the boundary (the contract's rule): 2xx is
 * success; 408, 429, 5xx and network trouble (refused, reset, socket errors, our own deadline)
 * are worth retrying; any other 4xx is the CRM refusing the request and will not change on
 * retry. The retry policy and the call machine read only `code` and `retryable`.
 *
 * `Retry-After` (delay-seconds or an HTTP-date, RFC 9110 §10.2.3) becomes `retryAfterMs`.
 * `details.body` keeps the CRM's answer, cut to a few KiB, with the API key scrubbed in case the
 * CRM echoes request headers back; nothing else about the request (headers, key) is recorded.
 */
import { CallsyncError } from '../errors.ts';
import { parseRetryAfterMs } from './retry-after.ts';

export type CrmEndpoint = 'upload' | 'call_data';

export const CRM_ERROR_CODES = {
  /** HTTP 429. */
  RATE_LIMITED: 'CRM_RATE_LIMITED',
  /** HTTP 5xx. */
  SERVER_ERROR: 'CRM_SERVER_ERROR',
  /** HTTP 408: the CRM gave up waiting for our request. */
  REQUEST_TIMEOUT: 'CRM_REQUEST_TIMEOUT',
  /** No complete answer within our deadline (connect, send, headers or body). */
  TIMEOUT: 'CRM_TIMEOUT',
  /** Connection refused or reset, DNS failure, socket closed mid-exchange. */
  NETWORK_ERROR: 'CRM_NETWORK_ERROR',
  /** Any other 4xx: the CRM refuses this request as it is. */
  REJECTED: 'CRM_REJECTED',
  /** A 2xx (or 3xx) answer we cannot use, e.g. an upload answer without a file URL. */
  BAD_RESPONSE: 'CRM_BAD_RESPONSE',
  /**
   * The recording's stream broke while being sent (a store or disk read failed). Named for the
   * recording, not the CRM: the machines' recording policy bounds how long such errors may hold
   * back the call data (`RECORDING_*` and `STORAGE_*` codes).
   */
  SOURCE_READ_FAILED: 'RECORDING_READ_FAILED',
  /** The recording yielded another length than announced (still being written?); retryable. */
  FILE_CHANGED: 'RECORDING_LENGTH_CHANGED',
  /** The caller's AbortSignal fired (e.g. shutdown); the CRM may or may not have the request. */
  ABORTED: 'CRM_ABORTED',
  /** The client was closed. */
  CLIENT_CLOSED: 'CRM_CLIENT_CLOSED',
} as const;

export type CrmErrorCode = (typeof CRM_ERROR_CODES)[keyof typeof CRM_ERROR_CODES];

/** Kept of the CRM's answer body in `details.body`. */
export const CRM_ANSWER_DETAIL_MAX_BYTES = 4 * 1024;
const REDACTED = '[REDACTED]';

export interface CrmErrorOptions {
  endpoint: CrmEndpoint;
  retryable: boolean;
  status?: number | undefined;
  retryAfterMs?: number | undefined;
  details?: Record<string, unknown> | undefined;
  cause?: unknown;
}

export class CrmError extends CallsyncError {
  readonly endpoint: CrmEndpoint;

  constructor(code: CrmErrorCode, message: string, options: CrmErrorOptions) {
    super(code, message, {
      retryable: options.retryable,
      status: options.status,
      retryAfterMs: options.retryAfterMs,
      details: { endpoint: options.endpoint, ...options.details },
      cause: options.cause,
    });
    this.endpoint = options.endpoint;
  }
}

export { parseRetryAfterMs };

/** Replaces every occurrence of each secret (when non-empty) with `[REDACTED]`. */
export function redactSecrets(text: string, secrets: readonly (string | undefined)[]): string {
  let result = text;
  for (const secret of secrets) {
    if (secret !== undefined && secret !== '') result = result.split(secret).join(REDACTED);
  }
  return result;
}

/** The first `maxBytes` of `text` (UTF-8), marked when cut. */
export function truncateUtf8(text: string, maxBytes: number = CRM_ANSWER_DETAIL_MAX_BYTES): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  // A character cut in half decodes to U+FFFD, which we drop.
  const kept = bytes
    .subarray(0, maxBytes)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
  return `${kept}… [${bytes.length - Buffer.byteLength(kept)} more bytes]`;
}

export interface CrmAnswer {
  status: number;
  /** The answer body as text (already capped and scrubbed). */
  body: string;
  retryAfter: string | null;
}

/** The error for a non-2xx answer. */
export function errorForStatus(
  endpoint: CrmEndpoint,
  answer: CrmAnswer,
  nowMs: number = Date.now(),
): CrmError {
  const { status } = answer;
  const retryAfterMs = parseRetryAfterMs(answer.retryAfter, nowMs);
  const details = { body: answer.body };
  const what = `CRM ${endpoint} answered HTTP ${status}`;
  if (status === 429) {
    return new CrmError(CRM_ERROR_CODES.RATE_LIMITED, `${what} (rate limited)`, {
      endpoint,
      retryable: true,
      status,
      retryAfterMs,
      details,
    });
  }
  if (status === 408) {
    return new CrmError(CRM_ERROR_CODES.REQUEST_TIMEOUT, `${what} (request timeout)`, {
      endpoint,
      retryable: true,
      status,
      retryAfterMs,
      details,
    });
  }
  if (status >= 500) {
    return new CrmError(CRM_ERROR_CODES.SERVER_ERROR, `${what} (server error)`, {
      endpoint,
      retryable: true,
      status,
      retryAfterMs,
      details,
    });
  }
  if (status >= 400) {
    return new CrmError(CRM_ERROR_CODES.REJECTED, `${what} (rejected, not retried)`, {
      endpoint,
      retryable: false,
      status,
      details,
    });
  }
  // 1xx never reaches us; 3xx is not followed (a redirected POST would need re-sending the file).
  return new CrmError(CRM_ERROR_CODES.BAD_RESPONSE, `${what} (unexpected)`, {
    endpoint,
    retryable: false,
    status,
    details,
  });
}

const TIMEOUT_CAUSE_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

function causeCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * The error for a request that got no usable answer. `timedOut`/`aborted` say which of our own
 * signals fired, which is what really happened whatever undici reports (an aborted socket also
 * surfaces as a socket error).
 */
export function errorForTransport(
  endpoint: CrmEndpoint,
  error: unknown,
  context: {
    timedOut: boolean;
    aborted: boolean;
    timeoutMs: number;
    secrets: readonly (string | undefined)[];
  },
): CrmError {
  const code = causeCode(error);
  const causeMessage = redactSecrets(error instanceof Error ? error.message : String(error), context.secrets);
  const details = { cause: code === undefined ? causeMessage : `${code}: ${causeMessage}` };
  if (context.timedOut || (code !== undefined && TIMEOUT_CAUSE_CODES.has(code))) {
    return new CrmError(
      CRM_ERROR_CODES.TIMEOUT,
      `CRM ${endpoint}: no answer within ${context.timeoutMs} ms`,
      {
        endpoint,
        retryable: true,
        details,
      },
    );
  }
  if (context.aborted) {
    return new CrmError(CRM_ERROR_CODES.ABORTED, `CRM ${endpoint}: request aborted by the caller`, {
      endpoint,
      retryable: true,
      details,
    });
  }
  if (code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH') {
    return new CrmError(
      CRM_ERROR_CODES.FILE_CHANGED,
      `CRM ${endpoint}: the recording changed length while being sent`,
      {
        endpoint,
        retryable: true,
        details,
      },
    );
  }
  return new CrmError(
    CRM_ERROR_CODES.NETWORK_ERROR,
    `CRM ${endpoint}: network error (${code ?? causeMessage})`,
    {
      endpoint,
      retryable: true,
      details,
    },
  );
}
