/**
 * What a CRM route handler concludes about one request, before the sandbox answers it: the
 * request was stored (with the answer to send and to replay), refused, or its client went away.
 */
import type { StoredAnswer } from './idempotency.ts';

export type HandlerResult<TRecord> =
  | { kind: 'stored'; answer: StoredAnswer; record: TRecord }
  | { kind: 'refused'; status: number; error: string; message: string; extra?: Record<string, unknown> }
  | { kind: 'gone' };

export function refused(
  status: number,
  error: string,
  message: string,
  extra?: Record<string, unknown>,
): HandlerResult<never> {
  return extra === undefined
    ? { kind: 'refused', status, error, message }
    : { kind: 'refused', status, error, message, extra };
}
