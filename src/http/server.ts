/**
 * The HTTP API the README documents ("HTTP API"), on fastify. Builds the app and opens no port (the
 * caller listens), so tests drive it with `app.inject()` or a real socket alike.
 *
 * Policies:
 * - Errors are `{"error": "<CODE>", "message": "…", "details"?}`; invalid bodies are 400 and
 *   name the field; bodies over 1 MiB are 413; unknown calls 404.
 * - `/v1/*` requires `Authorization: Bearer <CALLSYNC_INGEST_TOKEN>` when a token is set
 *   (compared in constant time). Health, metrics and the LiveKit webhook do not: the webhook
 *   carries its own signature, verified over the raw body before anything changes.
 * - While draining, new calls are refused with 503 so the agent's reporter retries elsewhere
 *   or later; events for calls already accepted are still taken.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { LogController, type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { API_ERROR_STATUS, ApiError, CallsyncError } from '../errors.ts';
import type { CallApi } from '../supervisor/call-api.ts';
import {
  createCallBody,
  describeIssue,
  endCallBody,
  leadBody,
  dismissBody,
  listCallsQuery,
  transcriptBody,
} from './schemas.ts';
import { preparePort } from './listen.ts';
import { defaultConnectionCap } from './connection-cap.ts';
import { operatorSessionOr } from './operator-session.ts';
import { statusPage } from './status-page.ts';

export const BODY_LIMIT_BYTES = 1024 * 1024;

/**
 * Connection limits (README, "Limits"): slow or idle clients cannot hold the process's file
 * descriptors. Headers within 10 s, a whole request within 30 s, idle keep-alive sockets closed
 * after 65 s, and a cap on connections at once (`connection-cap.ts`).
 */
export const HTTP_HEADERS_TIMEOUT_MS = 10_000;
export const HTTP_REQUEST_TIMEOUT_MS = 30_000;
export const HTTP_KEEP_ALIVE_TIMEOUT_MS = 65_000;
export const HTTP_SOCKET_IDLE_TIMEOUT_MS = 70_000;
/**
 * Connections the kernel queues for accepting while the process is busy (Linux caps it at
 * `net.core.somaxconn`, 4,096 by default). Node's own default, 511, overflows in a burst of
 * hang-ups: LiveKit posts every room's and egress's webhooks at once and each agent sends its
 * end, and each dropped SYN is resent only after 1, 3, 7 s. In the side-by-side bench's
 * 1,000-call burst the kernel counted 4,104 overflows with 511, none with 4,096.
 */
export const HTTP_LISTEN_BACKLOG = 4_096;

/** A dependency `/readyz` reports on (the recording storage): `ok`, or what is wrong. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<{ ok: true } | { ok: false; message: string }>;
}

export interface HttpServerOptions {
  /** The supervisor (`src/supervisor.ts`), or a stand-in for it. */
  api: CallApi;
  logger: Logger;
  ingestToken?: string | undefined;
  /** Operator routes (listing and reading calls, retry, dismiss) need it when set, else the ingest token. */
  adminToken?: string | undefined;
  /** Tests shrink these: connections served at once, and the deadline for a request's headers. */
  connectionLimits?: { maxConnections?: number; headersTimeoutMs?: number } | undefined;
  /** Checked on every `/readyz` after the supervisor is ready; any failing one makes it 503. */
  readiness?: readonly ReadinessCheck[] | undefined;
}

function parse<T extends z.ZodType>(
  schema: T,
  value: unknown,
  code: 'INVALID_BODY' | 'INVALID_QUERY' = 'INVALID_BODY',
): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const { field, message } = describeIssue(result.error);
    throw new ApiError(code, message, { field, issues: result.error.issues.slice(0, 10) });
  }
  return result.data;
}

function tokenMatches(expected: string, header: string | undefined): boolean {
  const presented = header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

function sendError(reply: FastifyReply, status: number, code: string, message: string, details?: unknown) {
  return reply
    .code(status)
    .type('application/json')
    .send({ error: code, message, ...(details === undefined ? {} : { details }) });
}

export function buildHttpServer(options: HttpServerOptions) {
  const { api, ingestToken } = options;
  const operatorToken = options.adminToken ?? ingestToken;
  const limits = {
    maxConnections: options.connectionLimits?.maxConnections ?? defaultConnectionCap(),
    headersTimeoutMs: options.connectionLimits?.headersTimeoutMs ?? HTTP_HEADERS_TIMEOUT_MS,
  };
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: BODY_LIMIT_BYTES,
    // Per-request lines would drown the per-call transition log; errors are logged below.
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request: with the redaction paths (src/logging/logger.ts) a child
    // costs about 15 µs, and a call makes about twenty requests. The error lines carry the
    // request's id themselves.
    childLoggerFactory: (logger) => logger,
    // Transcript batches come in quick succession from many agents; keep sockets reusable, a
    // little longer than a load balancer's usual 60 s idle timeout so it closes first.
    keepAliveTimeout: HTTP_KEEP_ALIVE_TIMEOUT_MS,
    // A slow client gets this long for a whole request (a 1 MiB body at 35 KiB/s), then 408.
    requestTimeout: HTTP_REQUEST_TIMEOUT_MS,
    // A socket idle this long (no request in flight) is closed.
    connectionTimeout: HTTP_SOCKET_IDLE_TIMEOUT_MS,
    http: {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: HTTP_REQUEST_TIMEOUT_MS,
      // How often Node checks those two deadlines (its default, 30 s, would triple them).
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
    },
  });
  // Beyond this many connections new ones are refused at once, so slow or idle clients cannot
  // take the descriptors the CRM, storage and store connections need.
  app.server.maxConnections = limits.maxConnections;
  // Its port may be opened with several sockets (`listen.ts`), the cap counting them all.
  preparePort(app);
  // Node enforces `headersTimeout` only once it has parsed a request line; a client that sends a
  // byte or two and stops would keep its socket. So every new connection must deliver its first
  // request's headers within the deadline, or it is closed.
  // Such sockets are not "idle" to Node either, so closing the server would wait for them: they
  // are destroyed on close.
  const awaitingFirstRequest = new Map<Socket, NodeJS.Timeout>();
  app.server.on('connection', (socket: Socket) => {
    const timer = setTimeout(() => socket.destroy(), limits.headersTimeoutMs);
    timer.unref();
    awaitingFirstRequest.set(socket, timer);
    socket.once('close', () => {
      clearTimeout(timer);
      awaitingFirstRequest.delete(socket);
    });
  });
  app.server.on('request', (request: IncomingMessage) => {
    clearTimeout(awaitingFirstRequest.get(request.socket));
    awaitingFirstRequest.delete(request.socket);
  });
  // Closing reaps the connections idle at that moment; one whose request was still in flight
  // would stay open after its answer until the client drops it (undici keeps it for the whole
  // keep-alive window, 64 s), holding up a drain. So once closing, each answer goes out with
  // `Connection: close` and its socket is reaped as soon as it is idle.
  let closing = false;
  app.server.on('request', (_request: IncomingMessage, response: ServerResponse) => {
    response.once('finish', () => {
      if (closing) setImmediate(() => app.server.closeIdleConnections());
    });
  });
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  app.addHook('preClose', (done) => {
    closing = true;
    for (const socket of awaitingFirstRequest.keys()) socket.destroy();
    done();
  });

  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof CallsyncError) {
      const status =
        error instanceof ApiError
          ? error.httpStatus
          : error.code === 'STORE_UNAVAILABLE'
            ? API_ERROR_STATUS.STORE_UNAVAILABLE
            : 500;
      if (status >= 500) request.log.error({ reqId: request.id, err: error }, 'request failed');
      return sendError(reply, status, error.code, error.message, error.details);
    }
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendError(reply, 413, 'BODY_TOO_LARGE', `request body is over ${BODY_LIMIT_BYTES} bytes`);
    }
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return sendError(reply, 415, 'UNSUPPORTED_MEDIA_TYPE', 'send JSON (Content-Type: application/json)');
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      // fastify's own 4xx: malformed JSON, empty JSON body…
      return sendError(reply, error.statusCode, 'INVALID_BODY', error.message);
    }
    request.log.error({ reqId: request.id, err: error }, 'request failed');
    return sendError(reply, 500, 'INTERNAL_ERROR', 'internal error; the request may be repeated');
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 404, 'ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`),
  );

  app.get('/healthz', () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    if (!api.isReady()) return sendError(reply, 503, 'NOT_READY', 'store not open or recovery not done');
    const results = await Promise.all(
      (options.readiness ?? []).map(async (probe) => ({ name: probe.name, ...(await probe.check()) })),
    );
    const failing = results.filter((result) => !result.ok);
    if (failing.length === 0)
      return { status: 'ready', checks: Object.fromEntries(results.map((r) => [r.name, 'ok'])) };
    return sendError(
      reply,
      503,
      'NOT_READY',
      failing
        .map((result) => `${result.name}: ${'message' in result ? result.message : 'failing'}`)
        .join('; '),
      { checks: Object.fromEntries(results.map((r) => [r.name, 'message' in r ? r.message : 'ok'])) },
    );
  });
  app.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await api.metrics();
    return reply.type(contentType).send(body);
  });

  // The webhook's signature covers the exact bytes, so this route gets the body as a string.
  void app.register((scope, _opts, done) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      '*',
      { parseAs: 'string', bodyLimit: BODY_LIMIT_BYTES },
      (_request, body, next) => next(null, body),
    );
    scope.post('/livekit/webhook', async (request, reply) => {
      const raw = typeof request.body === 'string' ? request.body : '';
      await api.handleWebhook(raw, request.headers.authorization);
      return reply.code(200).send({ status: 'ok' });
    });
    done();
  });

  /** Answers 401 unless the request carries `token` (no token configured: open). */
  const requireToken =
    (token: string | undefined) => async (request: FastifyRequest, reply: FastifyReply) => {
      if (token && !tokenMatches(token, request.headers.authorization)) {
        await sendError(reply, 401, 'UNAUTHORIZED', 'missing or wrong bearer token');
      }
    };

  // What the voice-agent jobs send: the ingest token.
  void app.register((scope, _opts, done) => {
    // JSON in and out: a text/plain body is 415, not a string that fails validation.
    scope.removeContentTypeParser('text/plain');
    scope.addHook('onRequest', requireToken(ingestToken));

    scope.post('/v1/calls', async (request, reply) => {
      const body = parse(createCallBody, request.body);
      if (!api.isAccepting()) {
        throw api.isReady()
          ? new ApiError('DRAINING', 'callsync is shutting down; retry shortly')
          : new ApiError('NOT_READY', 'callsync is starting; retry shortly');
      }
      const { created, callId, state } = await api.createCall(body);
      return reply.code(created ? 201 : 200).send({ callId, state });
    });

    scope.post<{ Params: { callId: string } }>('/v1/calls/:callId/transcript', async (request, reply) => {
      await api.addTranscript(request.params.callId, parse(transcriptBody, request.body));
      return reply.code(202).send({ status: 'accepted' });
    });

    scope.post<{ Params: { callId: string } }>('/v1/calls/:callId/leads', async (request, reply) => {
      await api.linkLead(request.params.callId, parse(leadBody, request.body));
      return reply.code(202).send({ status: 'accepted' });
    });

    scope.post<{ Params: { callId: string } }>('/v1/calls/:callId/end', async (request, reply) => {
      await api.endCall(request.params.callId, parse(endCallBody, request.body ?? {}));
      return reply.code(202).send({ status: 'accepted' });
    });
    done();
  });

  // What operators do: the admin token when one is set, else the ingest token.
  void app.register((scope, _opts, done) => {
    scope.removeContentTypeParser('text/plain');
    // The status page's session cookie (`operator-session.ts`) stands for the bearer token here.
    scope.addHook('onRequest', operatorSessionOr(operatorToken, requireToken(operatorToken)));

    scope.post<{ Params: { callId: string } }>('/v1/calls/:callId/retry', async (request, reply) => {
      await api.retryCall(request.params.callId);
      return reply.code(202).send({ status: 'accepted' });
    });

    scope.post<{ Params: { callId: string } }>('/v1/calls/:callId/dismiss', async (request, reply) => {
      await api.dismissCall(request.params.callId, parse(dismissBody, request.body));
      return reply.code(202).send({ status: 'accepted' });
    });

    scope.get<{ Params: { callId: string } }>('/v1/calls/:callId', async (request) =>
      api.getCall(request.params.callId),
    );

    scope.get('/v1/status', () => api.status());

    scope.get('/v1/calls', async (request) =>
      api.listCalls(parse(listCallsQuery, request.query, 'INVALID_QUERY')),
    );
    done();
  });

  // The operator's status page at `/`, its login and assets (`status-page.ts`).
  void app.register(statusPage({ operatorToken }));

  return app;
}

export type HttpServer = ReturnType<typeof buildHttpServer>;
