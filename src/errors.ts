/**
 * The one error vocabulary of callsync.
 *
 * Every error that crosses a module boundary is a `CallsyncError` with a stable `code`
 * (SCREAMING_SNAKE, safe to match on and to put in metrics labels) and a `retryable` flag
 * decided where the error arises: the machines' retry guards read only that flag, never
 * HTTP statuses or SDK classes.
 */

export interface CallsyncErrorOptions {
  /** True when repeating the same request later may succeed (timeouts, 429, 5xx, network). */
  retryable: boolean;
  /** Server-requested wait before the next attempt (HTTP `Retry-After`), in milliseconds. */
  retryAfterMs?: number | undefined;
  /** HTTP status of the answer that caused the error, when there was one. */
  status?: number | undefined;
  /** Extra, JSON-safe facts for logs and the call record (for example the CRM's answer). */
  details?: Record<string, unknown> | undefined;
  cause?: unknown;
}

export class CallsyncError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly status: number | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, options: CallsyncErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
    this.status = options.status;
    this.details = options.details;
  }
}

/**
 * A JSON-safe description of an error, the form errors take inside persisted actor
 * snapshots, call records and typed events (an `Error` instance would not survive JSON).
 */
export interface ErrorInfo {
  code: string;
  message: string;
  retryable: boolean;
  retryAfterMs?: number;
  status?: number;
  details?: Record<string, unknown>;
}

/** Describes any thrown value; unknown errors are treated as retryable (a bug should not drop a call). */
export function toErrorInfo(error: unknown): ErrorInfo {
  if (error instanceof CallsyncError) {
    return {
      code: error.code,
      message: error.message,
      retryable: error.retryable,
      ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
      ...(error.status === undefined ? {} : { status: error.status }),
      ...(error.details === undefined ? {} : { details: error.details }),
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'UNEXPECTED_ERROR', message, retryable: true };
}

/**
 * The HTTP API's error codes and the status each answers with (the contract's error shape is
 * `{"error": <code>, "message", "details"?}`). One table, so a code without a status is a type
 * error rather than a 500.
 */
export const API_ERROR_STATUS = {
  INVALID_BODY: 400,
  INVALID_QUERY: 400,
  UNAUTHORIZED: 401,
  WEBHOOK_UNAUTHORIZED: 401,
  CALL_NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  CALL_NOT_RETRYABLE: 409,
  /** Only a `failed` call can be dismissed. */
  CALL_NOT_DISMISSABLE: 409,
  CALL_ALREADY_ENDED: 409,
  /** The call data was built: later items and leads cannot reach the CRM any more. */
  CALL_DATA_SENT: 409,
  /** `POST /v1/calls` named a `callId` that belongs to another room. */
  CALL_ID_TAKEN: 409,
  /** A call reached a per-call limit (items, leads). */
  CALL_LIMIT_REACHED: 409,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  DRAINING: 503,
  NOT_READY: 503,
  /** The call store cannot take the write now; nothing was accepted, send again. */
  STORE_UNAVAILABLE: 503,
  /**
   * In a fleet: the event is logged, but the instance driving the call has not decided on it in
   * time (it is being taken over). Sending it again is safe: a repeated item or lead is ignored.
   */
  CALL_OWNER_UNAVAILABLE: 503,
} as const satisfies Record<string, number>;

export type ApiErrorCode = keyof typeof API_ERROR_STATUS;

/** An answer of the HTTP API other than success; `status` comes from `API_ERROR_STATUS`. */
export class ApiError extends CallsyncError {
  declare readonly code: ApiErrorCode;
  readonly httpStatus: number;

  constructor(code: ApiErrorCode, message: string, details?: Record<string, unknown>) {
    super(code, message, { retryable: API_ERROR_STATUS[code] >= 500, details });
    this.httpStatus = API_ERROR_STATUS[code];
  }
}
