/**
 * A round-robin HTTP load balancer in front of a fleet of supervisors, in the calling process
 * (the fleet demo, `npm run demo -- --fleet N`, and test/e2e/fleet.test.ts): each request goes to
 * the next backend in turn; a backend whose connection is refused (not listening: killed, not
 * started yet, closed after a drain) is skipped and the request goes to the one after it. Nothing
 * else is judged: a backend that accepts the connection and then says nothing (SIGSTOPped) keeps
 * the request until it answers, as a load balancer without health checks would.
 *
 * Bodies are streamed both ways. The request body is piped only once the backend's TCP
 * connection is up, so a refused connection has read nothing and the request can go to the next
 * backend intact. A new connection per request (no keep-alive to the backends): a kept-alive
 * socket to a killed process would fail the next request after it was sent, where it cannot be
 * moved any more.
 *
 * When no backend takes the connection, or one fails after taking it (reset by a SIGKILL), the
 * client gets `502 {"error": "PROXY_…"}` (or, once the answer has started, a destroyed socket):
 * the test's and the demo's clients tell these apart from callsync's own answers and treat them
 * as the network errors they stand for.
 */
import { once } from 'node:events';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { SANDBOX_LISTEN_BACKLOG } from '../sandbox/listen-backlog.ts';

export interface ProxyBackend {
  /** A name for the statistics (the instance id). */
  name: string;
  host: string;
  port: number;
}

export interface RoundRobinProxyStats {
  /** Requests sent on to each backend (connection made). */
  forwarded: Record<string, number>;
  /** Connections each backend refused (the request went to the next one). */
  refused: Record<string, number>;
  /** Requests answered 502 by the proxy itself, by error code. */
  proxyErrors: Record<string, number>;
}

export interface RoundRobinProxy {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  stats(): RoundRobinProxyStats;
  close(): Promise<void>;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const kept: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(name) && value !== undefined) kept[name] = value;
  }
  return kept;
}

export async function startRoundRobinProxy(backends: readonly ProxyBackend[]): Promise<RoundRobinProxy> {
  if (backends.length === 0) throw new Error('a proxy needs at least one backend');
  let next = 0;
  const stats: RoundRobinProxyStats = { forwarded: {}, refused: {}, proxyErrors: {} };
  const bump = (counts: Record<string, number>, key: string) => (counts[key] = (counts[key] ?? 0) + 1);
  const sockets = new Set<Socket>();

  const fail = (res: ServerResponse, code: string, message: string) => {
    bump(stats.proxyErrors, code);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({ error: code, message });
    res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

  /** Tries the backends in turn from `first` (each one once), the next one after a refusal. */
  const forward = (req: IncomingMessage, res: ServerResponse, first: number, tried: number) => {
    if (tried >= backends.length) {
      fail(res, 'PROXY_NO_BACKEND', `all ${backends.length} backends refused the connection`);
      return;
    }
    const backend = backends[(first + tried) % backends.length]!;
    let connected = false;
    const upstream = httpRequest({
      host: backend.host,
      port: backend.port,
      method: req.method,
      path: req.url,
      headers: { ...endToEnd(req.headers), host: `${backend.host}:${backend.port}` },
      agent: false,
    });
    upstream.once('socket', (socket: Socket) => {
      socket.once('connect', () => {
        connected = true;
        bump(stats.forwarded, backend.name);
        req.pipe(upstream);
      });
    });
    upstream.once('response', (answer) => {
      res.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers));
      answer.pipe(res);
      answer.once('error', () => res.destroy());
      // The backend died mid-answer: the client must see a broken answer, not a short one.
      answer.once('aborted', () => res.destroy());
    });
    upstream.once('error', (error: NodeJS.ErrnoException) => {
      if (!connected && error.code === 'ECONNREFUSED') {
        bump(stats.refused, backend.name);
        forward(req, res, first, tried + 1);
        return;
      }
      fail(res, `PROXY_${error.code ?? 'UPSTREAM_ERROR'}`, `${backend.name}: ${error.message}`);
    });
    // The client went away first: so does the request to the backend.
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
  };

  const server: Server = createServer((req, res) => forward(req, res, next++ % backends.length, 0));
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1', SANDBOX_LISTEN_BACKLOG);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    stats: () => structuredClone(stats),
    async close() {
      const closed = once(server, 'close');
      server.close();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
