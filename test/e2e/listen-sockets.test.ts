/**
 * How callsync opens its port (src/http/listen.ts): several listening sockets where Node can
 * share a port (Node ≥ 22.12 on Linux), so a burst's new connections are accepted several per
 * event-loop iteration; the connection cap over all of them; a port in use still refused; and
 * nothing left listening after a close. Sockets are counted from the kernel's own table
 * (/proc/net/tcp), not from callsync's objects.
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { Client } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { createCallsyncApp } from '../../src/app.ts';
import { canSharePort } from '../../src/http/listen.ts';
import { createLogger } from '../../src/logging/logger.ts';
import { startCallsyncHarness, type CallsyncHarness } from '../helpers/callsync-harness.ts';

/** The listening sockets the policy opens where the port can be shared (src/http/listen.ts). */
const SHARED_SOCKETS = 16;
const TCP_LISTEN = '0A';

let h: CallsyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Sockets in LISTEN on `port`, from the kernel's tables. */
function listeningSockets(port: number): number {
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      if (local === undefined || fields[3] !== TCP_LISTEN) continue;
      if (Number.parseInt(local.split(':')[1] ?? '', 16) === port) count += 1;
    }
  }
  return count;
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/** Resolves when the socket is connected, or with its error. */
function connected(socket: Socket): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    socket.once('connect', () => resolve(null));
    socket.once('error', (error) => resolve(error));
  });
}

describe('the listening sockets', () => {
  it('opens 16 sockets on the port where Node can share it, else one', async () => {
    h = await startCallsyncHarness();
    expect(listeningSockets(portOf(h.url))).toBe(canSharePort() ? SHARED_SOCKETS : 1);
  });

  it('answers requests on many new connections at once, whichever socket took them', async () => {
    h = await startCallsyncHarness();
    const clients = Array.from({ length: 64 }, () => new Client(h!.url, { pipelining: 0 }));
    try {
      const answers = await Promise.all(
        clients.map(async (client) => {
          const answer = await client.request({ method: 'GET', path: '/healthz' });
          await answer.body.text();
          return answer.statusCode;
        }),
      );
      expect(answers).toEqual(Array.from({ length: 64 }, () => 200));
    } finally {
      await Promise.all(clients.map((client) => client.close()));
    }
  });

  it('caps connections over all its sockets: beyond the cap new ones are refused at once', async () => {
    const cap = 10;
    h = await startCallsyncHarness({ connectionLimits: { maxConnections: cap, headersTimeoutMs: 30_000 } });
    const port = portOf(h.url);
    const sockets: Socket[] = [];
    const closed = new Set<Socket>();
    try {
      // One at a time, so which ones are over the cap is certain: each sends a request, and its
      // answer (held) or its close (refused) comes before the next connects.
      for (let index = 0; index < cap + 20; index += 1) {
        const socket = connect({ host: '127.0.0.1', port });
        socket.on('error', () => undefined);
        socket.once('close', () => closed.add(socket));
        sockets.push(socket);
        const answeredOrClosed = new Promise((resolve) => {
          socket.once('data', resolve);
          socket.once('close', resolve);
        });
        expect(await connected(socket)).toBeNull();
        socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        await answeredOrClosed;
      }
      expect(closed.size).toBe(20);
      expect(sockets.slice(0, cap).filter((socket) => closed.has(socket))).toEqual([]);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });

  it('refuses a port a running callsync holds (EADDRINUSE), rather than share it', async () => {
    h = await startCallsyncHarness();
    const port = portOf(h.url);
    // A second callsync started on the same port by mistake, with a store of its own.
    const second = createCallsyncApp(
      loadConfig({
        ...h.env,
        CALLSYNC_PORT: String(port),
        CALLSYNC_STORE: h.env.CALLSYNC_STORE!.replace(/callsync\.db$/, 'second.db'),
      }),
      { logger: createLogger({ level: 'silent' }) },
    );
    try {
      await expect(second.start()).rejects.toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      await second.close();
    }
    expect(listeningSockets(port)).toBe(canSharePort() ? SHARED_SOCKETS : 1);
    expect((await h.api('GET', '/healthz')).status).toBe(200);
  });

  it('leaves nothing listening once closed: every socket is closed', async () => {
    h = await startCallsyncHarness();
    const port = portOf(h.url);
    await h.stopApp();
    expect(listeningSockets(port)).toBe(0);
    const attempts = await Promise.all(
      Array.from({ length: 32 }, () => connected(connect({ host: '127.0.0.1', port }))),
    );
    expect(attempts.map((error) => error?.code)).toEqual(Array.from({ length: 32 }, () => 'ECONNREFUSED'));
  });
});
