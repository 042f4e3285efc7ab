/**
 * The status page's browser session (`status-page.ts`): after `POST /login` with the operator
 * token (`CALLSYNC_ADMIN_TOKEN`, else `CALLSYNC_INGEST_TOKEN`), the browser holds a cookie
 * `v1.<expiryMs>.<mac>`, where `mac` is HMAC-SHA256 keyed by the operator token over
 * `v1.<expiryMs>`, base64url. Nothing is stored: every instance of a fleet that has the same
 * token accepts it, and changing the token ends every session.
 *
 * The operator routes of `server.ts` accept the cookie as well as `Authorization: Bearer`. A
 * cookie is sent by the browser on its own, so a request that changes something (anything but
 * GET/HEAD) authenticated by the cookie must also carry `X-Callsync-Page: 1`, which the page's
 * `fetch` sets and a cross-site form cannot (a cross-site script would need a CORS preflight
 * callsync never answers); together with `SameSite=Strict` that keeps other sites from acting.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyReply, FastifyRequest } from 'fastify';

export const SESSION_COOKIE_NAME = 'callsync_session';
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;
/** The header the page's requests carry; required on a cookie-authenticated POST. */
export const PAGE_HEADER = 'x-callsync-page';
const SESSION_VERSION = 'v1';

function macOf(operatorToken: string, payload: string): string {
  return createHmac('sha256', operatorToken).update(payload).digest('base64url');
}

/** A session value that is valid until `nowMs + SESSION_TTL_MS`. */
export function createSessionValue(operatorToken: string, nowMs: number = Date.now()): string {
  const payload = `${SESSION_VERSION}.${nowMs + SESSION_TTL_MS}`;
  return `${payload}.${macOf(operatorToken, payload)}`;
}

/** Whether `value` was made with `operatorToken` and has not expired (nor expires beyond a TTL from now). */
export function isValidSession(
  operatorToken: string,
  value: string | undefined,
  nowMs: number = Date.now(),
): boolean {
  if (value === undefined) return false;
  const match = /^v1\.(\d{1,16})\.([A-Za-z0-9_-]{1,100})$/.exec(value);
  if (!match) return false;
  const expiryMs = Number(match[1]);
  if (!(expiryMs > nowMs) || expiryMs > nowMs + SESSION_TTL_MS) return false;
  const expected = Buffer.from(macOf(operatorToken, `${SESSION_VERSION}.${match[1]}`));
  const presented = Buffer.from(match[2] ?? '');
  return expected.length === presented.length && timingSafeEqual(expected, presented);
}

/** Constant-time comparison of the token a login form presented with the operator token. */
export function tokenEquals(expected: string, presented: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The value of cookie `name` in a `Cookie` header. */
export function cookieOf(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const separator = part.indexOf('=');
    if (separator !== -1 && part.slice(0, separator).trim() === name) return part.slice(separator + 1).trim();
  }
  return undefined;
}

/** Whether the browser reached callsync over https: directly (TLS socket) or through a proxy that says so. */
export function cameOverHttps(request: FastifyRequest): boolean {
  const forwarded = request.headers['x-forwarded-proto'];
  const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim().toLowerCase();
  return first === 'https' || (request.raw.socket as Partial<TLSSocket>).encrypted === true;
}

/** `Set-Cookie` for a new session (or, with `value` null, one that clears it). */
export function sessionCookieHeader(request: FastifyRequest, value: string | null): string {
  const attributes = [
    `${SESSION_COOKIE_NAME}=${value ?? ''}`,
    'HttpOnly',
    'SameSite=Strict',
    'Path=/',
    value === null ? 'Max-Age=0' : `Max-Age=${SESSION_TTL_MS / 1000}`,
  ];
  if (cameOverHttps(request)) attributes.push('Secure');
  return attributes.join('; ');
}

/** Whether the request carries a valid session cookie for `operatorToken`. */
export function hasOperatorSession(request: FastifyRequest, operatorToken: string | undefined): boolean {
  if (!operatorToken) return false;
  return isValidSession(operatorToken, cookieOf(request.headers.cookie, SESSION_COOKIE_NAME));
}

type OnRequest = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/**
 * The operator scope's `onRequest` hook: a request without an `Authorization` header that holds
 * a valid session passes (a POST only with the page header: else 403 `PAGE_HEADER_REQUIRED`);
 * every other request goes to `bearerCheck` (`server.ts`'s token check).
 */
export function operatorSessionOr(operatorToken: string | undefined, bearerCheck: OnRequest): OnRequest {
  return async (request, reply) => {
    if (request.headers.authorization === undefined && hasOperatorSession(request, operatorToken)) {
      if (request.method === 'GET' || request.method === 'HEAD') return;
      if (request.headers[PAGE_HEADER] === '1') return;
      await reply
        .code(403)
        .type('application/json')
        .send({
          error: 'PAGE_HEADER_REQUIRED',
          message: `a request with the session cookie that changes something must carry ${PAGE_HEADER}: 1`,
        });
      return;
    }
    await bearerCheck(request, reply);
  };
}
