/**
 * How callsync opens its HTTP port: with several listening sockets where the platform lets them
 * share it, so a burst's new connections are taken in as fast as the old ones are served.
 *
 * Why: libuv accepts one new connection per listening socket and event-loop iteration
 * (`uv__server_io`). While the loop is busy, in a burst of hang-ups, each iteration lasts tens of
 * milliseconds, and every new connection waits its turn in the kernel's queue while requests on
 * open connections are served at once. New connections are common exactly then: LiveKit's
 * webhook sender (hashicorp/go-retryablehttp, which keeps GOMAXPROCS + 1 idle connections per
 * host) opens one for each webhook it sends at once beyond those, and an agent opens one for its
 * end after a silence longer than the keep-alive. Measured: 300 requests on new
 * connections to a process whose loop iterations take 20 ms, the last answered after 6.1 s with
 * one socket, 1.1 s with 8, 0.5 s with 32. In the side-by-side bench's 300-call burst, while
 * its agents shared one connection pool, their ends were answered strictly in the order they
 * connected, the last after 2.2 s.
 *
 * Policy:
 * - `HTTP_LISTEN_SOCKETS` sockets on the same address and port (SO_REUSEPORT; the kernel spreads
 *   new connections over them), where Node supports it (`reusePort`, Node ≥ 22.12, on Linux).
 *   Elsewhere one socket, as before.
 * - A port in use is still an error (EADDRINUSE), as with one socket: a second callsync started
 *   on the same port by mistake must not quietly take half its connections. So a fixed port is
 *   first bound once without sharing, which fails if anyone holds it, shared or not. (Linux lets
 *   only sockets of the same user share a port at all.)
 * - The extra sockets hand each connection to the one HTTP server (its `connection` event, as
 *   Node documents for injecting connections), so every connection gets the same timeouts,
 *   limits and handlers. The connection cap (`connection-cap.ts`) counts the connections of all
 *   sockets: beyond it a new one is refused at once, whichever socket took it.
 * - Closing closes every socket as the HTTP server closes, and waits for their connections.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../logging/logger.ts';
import type { HttpServer } from './server.ts';

/**
 * Listening sockets sharing the port, where the platform allows it: between the 8 and 32 of the
 * measurement above (1.1 and 0.5 s), at one descriptor each.
 */
export const HTTP_LISTEN_SOCKETS = 16;

/** Whether this Node and platform can open several sockets on one port (`reusePort`). */
export function canSharePort(
  version: string = process.versions.node,
  platform: NodeJS.Platform = process.platform,
): boolean {
  if (platform !== 'linux') return false;
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

export interface ListenOptions {
  host: string;
  port: number;
  backlog: number;
  /** Defaults to `HTTP_LISTEN_SOCKETS` where the port can be shared, else 1. */
  sockets?: number | undefined;
  logger: Logger;
}

/** Binds `host:port` without sharing and closes it: throws EADDRINUSE if anyone holds it. */
async function assertPortFree(host: string, port: number): Promise<void> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen({ host, port, exclusive: true }, resolve);
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

interface PortState {
  /** Connections the HTTP server holds, from every socket. */
  open: number;
  /** The sockets besides fastify's own. */
  extra: Server[];
  closing: boolean;
  closed: Promise<void>[];
}

const states = new WeakMap<HttpServer['server'], PortState>();

const closeListener = (listener: Server) => new Promise<void>((resolve) => listener.close(() => resolve()));

/**
 * Readies `app` for `listenOnPort`: counts its connections and closes the extra sockets with it.
 * Called while the app is built (fastify takes hooks only before it is ready).
 */
export function preparePort(app: HttpServer): void {
  const state: PortState = { open: 0, extra: [], closing: false, closed: [] };
  states.set(app.server, state);
  // The cap over every socket's connections, before any other handler sees one. (The main
  // socket's own `maxConnections` check sees only its share; the others have none.)
  app.server.prependListener('connection', (socket: Socket) => {
    state.open += 1;
    socket.once('close', () => {
      state.open -= 1;
    });
    const cap = app.server.maxConnections as number | undefined;
    if (cap !== undefined && state.open > cap) socket.destroy();
  });
  // Stop taking connections with the HTTP server; the close is done when theirs have ended.
  app.addHook('preClose', (done) => {
    state.closing = true;
    state.closed = state.extra.map(closeListener);
    done();
  });
  app.addHook('onClose', async () => {
    await Promise.all(state.closed);
  });
}

/**
 * Opens the HTTP port for `app` (built with `preparePort`), instead of `app.listen`, and returns
 * the address fastify reports. Call once per app; every socket closes with `app.close()`.
 */
export async function listenOnPort(app: HttpServer, options: ListenOptions): Promise<string> {
  const state = states.get(app.server);
  if (state === undefined) throw new Error('listenOnPort: the app was not built with preparePort');
  const wanted = Math.max(1, options.sockets ?? (canSharePort() ? HTTP_LISTEN_SOCKETS : 1));
  const server = app.server;

  if (wanted > 1 && options.port !== 0) await assertPortFree(options.host, options.port);
  const address = await app.listen({
    host: options.host,
    port: options.port,
    backlog: options.backlog,
    ...(wanted > 1 ? { reusePort: true } : {}),
  });
  const bound = server.address();
  if (wanted === 1 || bound === null || typeof bound === 'string') return address;

  for (let index = 1; index < wanted && !state.closing; index += 1) {
    // As `http.Server` makes its own: half-open allowed, no Nagle delay.
    const listener = createServer({ allowHalfOpen: true, noDelay: true }, (socket) =>
      server.emit('connection', socket),
    );
    // An accept that fails (out of descriptors) is the kernel's business, not a crash.
    listener.on('error', (error) => {
      if (listener.listening) options.logger.warn({ err: error }, 'a listening socket failed to accept');
    });
    try {
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen(
          { host: bound.address, port: bound.port, backlog: options.backlog, reusePort: true },
          () => {
            listener.off('error', reject);
            resolve();
          },
        );
      });
    } catch (error) {
      options.logger.warn(
        { err: error, sockets: state.extra.length + 1 },
        'could not open another listening socket on the port; going on with those open',
      );
      break;
    }
    if (state.closing) state.closed.push(closeListener(listener));
    else state.extra.push(listener);
  }
  return address;
}
