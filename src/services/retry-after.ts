/**
 * HTTP `Retry-After` (RFC 9110 §10.2.3), read the same way by every client callsync has (the
 * CRM client and the agent's reporter): delay-seconds or an HTTP-date.
 */

/**
 * `Retry-After` in milliseconds from `nowMs`; undefined when absent or unparseable. A date in
 * the past means "now" (0).
 */
export function parseRetryAfterMs(
  value: string | null | undefined,
  nowMs: number = Date.now(),
): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  // An HTTP-date always names a weekday or month; this keeps bare numbers like "1.5" out of Date.parse.
  if (!/[A-Za-z]/.test(trimmed)) return undefined;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}
