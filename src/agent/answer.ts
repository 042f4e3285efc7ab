/**
 * What one attempt to deliver a report came to, decided here and nowhere else (the contract's
 * rule, the same as for the CRM): 2xx is delivered; 408, 429, 5xx (503 while the supervisor
 * drains) and transport trouble (refused, reset, our own deadline) are worth repeating, since
 * the supervisor ignores repeated item ids and creates; any other answer is the supervisor
 * refusing this request as it is, and repeating it would never change that.
 *
 * The supervisor's error body is `{"error": "<CODE>", "message": "…"}`; its code and message are
 * kept (cut short) so the final report can say why a request was refused.
 */
import { retryAfterToMs } from './backoff.ts';

/** Kept of the supervisor's message in a report. */
export const ANSWER_MESSAGE_MAX_CHARS = 300;

export type AttemptOutcome =
  | { type: 'delivered'; status: number; body: unknown }
  | { type: 'retry'; code: string; message: string; status?: number; retryAfterMs?: number }
  | { type: 'rejected'; code: string; message: string; status: number };

export interface SupervisorAnswer {
  status: number;
  /** The answer body as text (possibly cut short). */
  body: string;
  retryAfter: string | null;
}

function parseJson(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function clip(text: string): string {
  return text.length <= ANSWER_MESSAGE_MAX_CHARS ? text : `${text.slice(0, ANSWER_MESSAGE_MAX_CHARS)}…`;
}

function errorBodyOf(body: unknown, status: number): { code: string; message: string } {
  if (typeof body === 'object' && body !== null) {
    const { error, message } = body as { error?: unknown; message?: unknown };
    return {
      code: typeof error === 'string' && error !== '' ? error : `HTTP_${status}`,
      message: clip(typeof message === 'string' ? message : JSON.stringify(body)),
    };
  }
  return { code: `HTTP_${status}`, message: clip(typeof body === 'string' ? body : `HTTP ${status}`) };
}

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

export function outcomeOfAnswer(answer: SupervisorAnswer, nowMs: number = Date.now()): AttemptOutcome {
  const body = parseJson(answer.body);
  if (answer.status >= 200 && answer.status < 300) return { type: 'delivered', status: answer.status, body };
  const { code, message } = errorBodyOf(body, answer.status);
  if (isRetryableStatus(answer.status)) {
    const retryAfterMs = retryAfterToMs(answer.retryAfter, nowMs);
    return {
      type: 'retry',
      code,
      message,
      status: answer.status,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    };
  }
  return { type: 'rejected', code, message, status: answer.status };
}

/** Any failure without an answer: the supervisor is down, restarting, or too slow. */
export function outcomeOfTransportError(error: unknown, timedOut: boolean): AttemptOutcome {
  const cause = error as { code?: unknown; message?: unknown } | null;
  const detail = typeof cause?.code === 'string' ? cause.code : undefined;
  const message = typeof cause?.message === 'string' ? cause.message : String(error);
  return timedOut
    ? { type: 'retry', code: 'TIMEOUT', message: 'no answer within the request timeout' }
    : { type: 'retry', code: 'NETWORK_ERROR', message: clip(detail ? `${detail}: ${message}` : message) };
}
