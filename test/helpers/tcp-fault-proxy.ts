/**
 * A real TCP proxy (node:net) in front of a server, PostgreSQL in the store-outage tests, that a
 * test switches between modes while clients stay connected through it:
 *
 * - `pass`: bytes are forwarded both ways (with back-pressure).
 * - `refuse`: the server is down. The proxy stops listening, so a new connection gets
 *   ECONNREFUSED, and every open connection is reset (the client sees ECONNRESET).
 * - `blackhole`: the server stopped answering (frozen, or the network between dropped it). New
 *   connections are accepted and kept, open ones stay open, and nothing is forwarded either
 *   way. What is sent meanwhile waits in the proxy; switching back to `pass` delivers it, as a
 *   partition that heals would. A client that gives up and closes its connection meanwhile
 *   takes what it sent with it: a query whose client timed out never reaches the server, so
 *   an answer given on that timeout is not contradicted later.
 *
 * The proxy listens on port 0 by default (the OS picks), and keeps that port across `refuse`,
 * so clients reconnect to the same address. `close()` is safe twice.
 */
import { EventEmitter } from 'node:events';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export type TcpFaultMode = 'pass' | 'refuse' | 'blackhole';

export interface TcpFaultProxyOptions {
  targetHost: string;
  targetPort: number;
  /** Where the proxy listens; default 127.0.0.1. */
  host?: string;
  /** Default 0 (an ephemeral port). */
  port?: number;
}

export interface TcpFaultProxyEvents {
  /** A client connected (in `pass` or `blackhole`). */
  connection: [];
  /** A client connection ended, whichever side closed it. */
  disconnection: [];
}

export interface TcpFaultProxy {
  readonly host: string;
  /** The port it listens on (the one the OS gave it, with port 0). */
  readonly port: number;
  readonly mode: TcpFaultMode;
  /** Client connections open now. */
  readonly openConnections: number;
  /** Client connections accepted since the start. */
  readonly acceptedConnections: number;
  readonly events: EventEmitter<TcpFaultProxyEvents>;
  /** Switches the mode; resolves once it holds (listening again, or every connection reset). */
  setMode(mode: TcpFaultMode): Promise<void>;
  /** Stops listening and destroys every connection. Safe twice. */
  close(): Promise<void>;
}

/** One direction of a link: what waits while the link is held. */
interface Direction {
  from: Socket;
  to: Socket;
  waiting: Buffer[];
  /** `from` ended while held: end `to` once what waits is written. */
  ended: boolean;
}

/** One client connection and its upstream connection. */
class Link {
  readonly #client: Socket;
  readonly #upstream: Socket;
  readonly #directions: [Direction, Direction];
  #flowing = true;
  #closed = false;

  constructor(client: Socket, target: { host: string; port: number }, flowing: boolean, onClose: () => void) {
    this.#client = client;
    this.#upstream = connect({ host: target.host, port: target.port });
    this.#flowing = flowing;
    // Errors (a reset, the server gone) end the link; they are not the test's failures.
    for (const socket of [this.#client, this.#upstream]) socket.on('error', () => this.destroy());
    this.#directions = [
      { from: this.#client, to: this.#upstream, waiting: [], ended: false },
      { from: this.#upstream, to: this.#client, waiting: [], ended: false },
    ];
    for (const direction of this.#directions) this.#forward(direction);
    this.#client.once('close', () => {
      this.destroy();
      onClose();
    });
    this.#upstream.once('close', () => this.destroy());
  }

  /**
   * Forwards `from` to `to`, pausing `from` while `to` cannot take more. Both sides are read
   * even while held, so a client that gives up (closes) is seen: its link is dropped with what
   * it sent, which never reaches the server.
   */
  #forward(direction: Direction): void {
    const { from, to } = direction;
    from.on('data', (chunk: Buffer) => {
      if (!this.#flowing) {
        direction.waiting.push(chunk);
        return;
      }
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.on('end', () => {
      if (this.#flowing) to.end();
      else if (from === this.#client) this.destroy();
      else direction.ended = true;
    });
  }

  /** Forwards nothing: what either side sends waits. */
  hold(): void {
    this.#flowing = false;
  }

  /** Forwards again, what waited first. */
  release(): void {
    if (this.#closed) return;
    this.#flowing = true;
    for (const direction of this.#directions) {
      for (const chunk of direction.waiting.splice(0)) direction.to.write(chunk);
      if (direction.ended) direction.to.end();
    }
  }

  /** What a server that went down does: the client sees a reset, not an orderly close. */
  reset(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.resetAndDestroy();
    this.#upstream.destroy();
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.destroy();
    this.#upstream.destroy();
  }
}

export async function startTcpFaultProxy(options: TcpFaultProxyOptions): Promise<TcpFaultProxy> {
  const host = options.host ?? '127.0.0.1';
  const target = { host: options.targetHost, port: options.targetPort };
  const events = new EventEmitter<TcpFaultProxyEvents>();
  const links = new Set<Link>();
  let mode: TcpFaultMode = 'pass';
  let accepted = 0;
  let closing: Promise<void> | undefined;
  /** Mode switches run one at a time, in call order. */
  let switching: Promise<void> = Promise.resolve();

  const server: Server = createServer((client) => {
    if (mode === 'refuse' || closing) {
      // Accepted just before the listener closed: a down server would not have taken it.
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    accepted += 1;
    const link = new Link(client, target, mode === 'pass', () => {
      links.delete(link);
      events.emit('disconnection');
    });
    links.add(link);
    events.emit('connection');
  });

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      server.once('error', onError);
      server.listen({ host, port }, () => {
        server.off('error', onError);
        resolve();
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) {
        resolve();
        return;
      }
      // Resolves once the listener is closed and every connection (destroyed before) is gone.
      server.close(() => resolve());
    });

  await listen(options.port ?? 0);
  const port = (server.address() as AddressInfo).port;

  async function apply(next: TcpFaultMode): Promise<void> {
    if (closing) throw new Error('the TCP fault proxy is closed');
    if (next === mode) return;
    const previous = mode;
    mode = next;
    if (next === 'refuse') {
      const stopped = stopListening();
      for (const link of links) link.reset();
      links.clear();
      await stopped;
      return;
    }
    if (previous === 'refuse') {
      try {
        await listen(port);
      } catch (error) {
        mode = previous;
        throw new Error(`the TCP fault proxy could not listen on ${host}:${port} again`, { cause: error });
      }
    }
    for (const link of links) {
      if (next === 'pass') link.release();
      else link.hold();
    }
  }

  return {
    host,
    port,
    events,
    get mode() {
      return mode;
    },
    get openConnections() {
      return links.size;
    },
    get acceptedConnections() {
      return accepted;
    },
    setMode(next) {
      const result = switching.then(() => apply(next));
      switching = result.catch(() => undefined);
      return result;
    },
    close() {
      closing ??= (async () => {
        await switching;
        const stopped = stopListening();
        for (const link of links) link.destroy();
        links.clear();
        await stopped;
      })();
      return closing;
    },
  };
}
