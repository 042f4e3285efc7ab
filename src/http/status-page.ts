/**
 * The operator's status page (`GET /`): delivery within target, calls by state, the
 * failed calls with retry and dismiss, one call's timeline. One HTML page and two same-origin
 * assets (`status-page-assets.ts`); the page reads and acts through the operator JSON API
 * (`GET /v1/status`, `GET /v1/calls`, `GET /v1/calls/{id}`, retry, dismiss), nothing else.
 *
 * When an operator token is configured, `GET /` without a session is the login form; `POST
 * /login` with the token sets the session cookie (`operator-session.ts`), `POST /logout`
 * clears it. Without a token the page is open, as the API is.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { STATUS_PAGE_CSS, STATUS_PAGE_JS, loginPageHtml, statusPageHtml } from './status-page-assets.ts';
import {
  createSessionValue,
  hasOperatorSession,
  sessionCookieHeader,
  tokenEquals,
} from './operator-session.ts';

export const STATUS_PAGE_CSS_PATH = '/assets/status-page.css';
export const STATUS_PAGE_JS_PATH = '/assets/status-page.js';
const LOGIN_BODY_LIMIT_BYTES = 4096;

/** Same-origin everything; no framing (clickjacking), no referrer, no caching of the pages. */
function pageHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header(
      'content-security-policy',
      "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    .header('x-frame-options', 'DENY')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-store');
}

export interface StatusPageOptions {
  /** `CALLSYNC_ADMIN_TOKEN`, else `CALLSYNC_INGEST_TOKEN`; unset: the page is open. */
  operatorToken: string | undefined;
}

/** A fastify plugin (`app.register(statusPage({ operatorToken }))`): the page, its assets, login and logout. */
export function statusPage(options: StatusPageOptions) {
  const { operatorToken } = options;
  const signedIn = (request: FastifyRequest) => !operatorToken || hasOperatorSession(request, operatorToken);

  return (scope: FastifyInstance, _opts: unknown, done: (error?: Error) => void) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: LOGIN_BODY_LIMIT_BYTES },
      (_request, body, next) => next(null, Object.fromEntries(new URLSearchParams(String(body)))),
    );

    scope.get('/', async (request, reply) => {
      pageHeaders(reply).type('text/html; charset=utf-8');
      if (!signedIn(request)) return reply.send(loginPageHtml());
      return reply.send(statusPageHtml({ canLogOut: Boolean(operatorToken) }));
    });

    scope.post('/login', async (request, reply) => {
      if (!operatorToken) return reply.redirect('/', 303);
      const body = (request.body ?? {}) as Record<string, unknown>;
      const presented = typeof body.token === 'string' ? body.token : '';
      if (!tokenEquals(operatorToken, presented)) {
        return pageHeaders(reply)
          .code(401)
          .type('text/html; charset=utf-8')
          .send(loginPageHtml('That token is not the operator token.'));
      }
      return reply
        .header('set-cookie', sessionCookieHeader(request, createSessionValue(operatorToken)))
        .redirect('/', 303);
    });

    scope.post('/logout', async (request, reply) =>
      reply.header('set-cookie', sessionCookieHeader(request, null)).redirect('/', 303),
    );

    scope.get(STATUS_PAGE_CSS_PATH, async (_request, reply) =>
      reply.type('text/css; charset=utf-8').header('cache-control', 'no-cache').send(STATUS_PAGE_CSS),
    );
    scope.get(STATUS_PAGE_JS_PATH, async (_request, reply) =>
      reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(STATUS_PAGE_JS),
    );
    done();
  };
}
