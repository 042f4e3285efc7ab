/**
 * The TCP fault proxy the store-outage tests put in front of PostgreSQL, checked with the real
 * `pg` client against the machines' PostgreSQL: it forwards a session, refuses like a server that
 * is down, holds like a server that stopped answering, and serves again on the same port.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { POSTGRES_URL } from '../helpers/postgres-schemas.ts';
import { startTcpFaultProxy, type TcpFaultProxy } from '../helpers/tcp-fault-proxy.ts';

/** The machines' PostgreSQL (trust auth, database `test`). */
const POSTGRES = new URL(POSTGRES_URL);

let proxy: TcpFaultProxy;
const cleanups: (() => Promise<unknown> | undefined)[] = [];

beforeEach(async () => {
  proxy = await startTcpFaultProxy({
    targetHost: POSTGRES.hostname,
    targetPort: Number(POSTGRES.port || 5432),
  });
});
afterEach(async () => {
  // Back to `pass` first, so clients that still wait on the proxy can finish.
  await proxy.setMode('pass').catch(() => undefined);
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()?.catch(() => undefined);
  await proxy.close();
});

/** A `pg` client through the proxy; its errors (resets, timeouts) are the tests' to assert. */
function client(config: Partial<pg.ClientConfig> = {}): pg.Client {
  const url = new URL(POSTGRES_URL);
  url.hostname = proxy.host;
  url.port = String(proxy.port);
  const c = new pg.Client({ connectionString: url.toString(), ...config });
  c.on('error', () => undefined);
  cleanups.push(() => c.end());
  return c;
}

async function connected(config: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = client(config);
  await c.connect();
  return c;
}

async function selectOne(c: pg.Client): Promise<number> {
  const result = await c.query<{ one: number }>('SELECT 1 AS one');
  return result.rows[0]!.one;
}

/** Resolves when the client's connection ends, however (`once` would reject on its 'error'). */
function ending(c: pg.Client): Promise<void> {
  return new Promise((resolve) => c.once('end', () => resolve()));
}

/** A raw socket to the proxy, once the proxy has accepted it. */
async function rawSocket(): Promise<Socket> {
  const accepted = once(proxy.events, 'connection');
  const socket = connect({ host: proxy.host, port: proxy.port });
  socket.on('error', () => undefined);
  cleanups.push(() => {
    socket.destroy();
    return undefined;
  });
  await Promise.all([once(socket, 'connect'), accepted]);
  return socket;
}

/** PostgreSQL's SSLRequest: the server answers one byte, `S` or `N`. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

describe('the TCP fault proxy in front of PostgreSQL', () => {
  it('forwards a whole session, a large answer included, from an ephemeral port', async () => {
    expect(proxy.port).toBeGreaterThan(0);
    expect(proxy.port).not.toBe(Number(POSTGRES.port || 5432));
    expect(proxy.mode).toBe('pass');
    const c = await connected();
    expect(await selectOne(c)).toBe(1);
    // 8 MB back through the proxy: more than any socket buffer, so back-pressure is exercised.
    const big = await c.query<{ text: string }>(`SELECT repeat('x', 8000000) AS text`);
    expect(big.rows[0]!.text).toHaveLength(8_000_000);
    expect(proxy.openConnections).toBe(1);
    const gone = once(proxy.events, 'disconnection');
    await c.end();
    await gone;
    expect(proxy.openConnections).toBe(0);
  });

  it('refuse: resets open connections and refuses new ones, then serves again on the same port', async () => {
    const open = await connected();
    expect(await selectOne(open)).toBe(1);
    const failed = new Promise<unknown>((resolve) => open.once('error', resolve));
    const ended = ending(open);

    await proxy.setMode('refuse');
    expect(proxy.mode).toBe('refuse');
    expect(await failed).toMatchObject({ code: 'ECONNRESET' });
    await ended;
    await expect(selectOne(open)).rejects.toThrow();
    expect(proxy.openConnections).toBe(0);
    await expect(connected()).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    await proxy.setMode('pass');
    expect(await selectOne(await connected())).toBe(1);
  });

  it('blackhole: accepts and keeps connections but forwards nothing, until it passes again', async () => {
    // Connected while passing; its query in the blackhole gets no answer within the deadline.
    const held = await connected({ query_timeout: 300 });
    expect(await selectOne(held)).toBe(1);
    const accepted = proxy.acceptedConnections;

    await proxy.setMode('blackhole');
    const raw = await rawSocket();
    const received: Buffer[] = [];
    raw.on('data', (chunk: Buffer) => received.push(chunk));
    raw.write(SSL_REQUEST);

    await expect(selectOne(held)).rejects.toThrow(/timeout/i);
    // A new session is accepted (TCP), but its start-up gets no answer.
    await expect(connected({ connectionTimeoutMillis: 300 })).rejects.toThrow(/timeout/i);
    expect(proxy.acceptedConnections).toBe(accepted + 2);
    // PostgreSQL answers an SSLRequest at once; through the blackhole, nothing came back.
    expect(Buffer.concat(received)).toHaveLength(0);
    expect(raw.destroyed).toBe(false);

    await proxy.setMode('pass');
    // What waited is delivered: the SSLRequest's answer, and the held session goes on.
    const [answer] = (await once(raw, 'data')) as [Buffer];
    expect(['S', 'N']).toContain(String.fromCharCode(answer[0]!));
    expect(await selectOne(held)).toBe(1);
    expect(await selectOne(await connected())).toBe(1);
  });

  it('blackhole: what a client sent before giving up never reaches the server', async () => {
    const table = `tcp_fault_proxy_${randomBytes(6).toString('hex')}`;
    const direct = new pg.Client({ connectionString: POSTGRES_URL });
    await direct.connect();
    cleanups.push(async () => {
      await direct.query(`DROP TABLE IF EXISTS ${table}`);
      await direct.end();
    });
    await direct.query(`CREATE TABLE ${table} (id int)`);

    const gaveUp = await connected({ query_timeout: 300 });
    await proxy.setMode('blackhole');
    await expect(gaveUp.query(`INSERT INTO ${table} VALUES (1)`)).rejects.toThrow(/timeout/i);
    const gone = once(proxy.events, 'disconnection');
    await gaveUp.end();
    await gone;
    await proxy.setMode('pass');

    // Through the proxy again (so after anything it could still have forwarded), then directly.
    const after = await connected();
    await after.query(`INSERT INTO ${table} VALUES (2)`);
    const rows = await direct.query<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`);
    expect(rows.rows).toEqual([{ id: 2 }]);
  });

  it('goes from blackhole to refuse and back, and passes again', async () => {
    await proxy.setMode('blackhole');
    await rawSocket();
    expect(proxy.openConnections).toBe(1);
    await proxy.setMode('refuse');
    expect(proxy.openConnections).toBe(0);
    await expect(connected()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await proxy.setMode('blackhole');
    await expect(connected({ connectionTimeoutMillis: 300 })).rejects.toThrow(/timeout/i);
    await proxy.setMode('pass');
    expect(await selectOne(await connected())).toBe(1);
  });

  it('close() ends every connection, is safe twice, and nothing listens after it', async () => {
    const open = await connected();
    await proxy.setMode('blackhole');
    await rawSocket();
    const ended = ending(open);
    await Promise.all([proxy.close(), proxy.close()]);
    await proxy.close();
    await ended;
    expect(proxy.openConnections).toBe(0);
    await expect(connected()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(proxy.setMode('pass')).rejects.toThrow(/closed/);
  });
});
