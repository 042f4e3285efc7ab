/**
 * Slow clients under a real 1,024-descriptor limit (before the connection cap, 1,100
 * connections trickling a body held 994 of 1,024 descriptors and CRM uploads failed with EMFILE). callsync runs as its own process, exactly as `npm start` runs it, started
 * with RLIMIT_NOFILE 1024:1024 (through `prlimit`), so its connection cap is the default it
 * derives from that limit, and is flooded with 1,100 connections: most
 * send a request's headers and then trickle its body a byte at a time, the others send nothing.
 *
 * What must hold, with the figures read from the README's Limits table (not restated here):
 * - connections beyond the cap are refused at once, so the process keeps descriptors to spare;
 * - a control call driven meanwhile (over a connection a load balancer would already hold:
 *   create, transcript, lead, end) reaches the CRM, its recording upload included, while the
 *   slow connections are still open, and no EMFILE appears;
 * - the server itself closes every slow connection: silent ones at the headers deadline,
 *   trickling ones at the whole-request deadline (with a 408);
 * - afterwards new clients are served again: a second call over fresh connections is delivered.
 *
 * No sleeps: every wait is on an event (a socket's close, the CRM sandbox's read-out, the
 * emulator's egress updates, a real HTTP answer) with a deadline that only a failure reaches.
 */
import { readFile, readdir, readlink } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { EgressStatus } from 'livekit-server-sdk';
import { Client } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { CHILD_WAIT_MS } from '../helpers/child-callsync.ts';
import {
  CALLER_NUMBER,
  CHILD_INGEST_TOKEN,
  PERSONA_CONFIG,
  egressIdOf,
  startChildPipeline,
  type ChildPipeline,
} from '../helpers/child-pipeline.ts';

const README = new URL('../../README.md', import.meta.url);

const DESCRIPTOR_LIMIT = 1024;
const SLOW_CONNECTIONS = 1_100;
/** Every this many connections, one sends nothing at all; the rest trickle a body. */
const SILENT_EVERY = 11;
const TRICKLE_INTERVAL_MS = 1_000;

let p: ChildPipeline | undefined;
afterEach(async () => {
  await p?.close();
  p = undefined;
});

/** The README's Limits table: headers deadline, whole-request deadline, connection cap. */
async function readmeLimits(): Promise<{
  headersSeconds: number;
  requestSeconds: number;
  maxConnections: number;
}> {
  const text = await readFile(README, 'utf8');
  const figure = (pattern: RegExp, what: string) => {
    const match = pattern.exec(text);
    if (!match) throw new Error(`README's Limits table has no figure for ${what}`);
    return Number(match[1]!.replace(/,/g, ''));
  };
  return {
    headersSeconds: figure(/first request headers\s*\|\s*within (\d+) s/, "a new connection's first headers"),
    requestSeconds: figure(/a whole request[^|]*\|\s*(\d+) s/, 'a whole request'),
    maxConnections: figure(/connections at once\s*\|[^|]*\(([\d,]+) of 1,024\)/, 'connections at once'),
  };
}

/** The process's open descriptors, and how many of them are sockets. */
async function descriptorsOf(pid: number): Promise<{ open: number; sockets: number }> {
  const entries = await readdir(`/proc/${pid}/fd`);
  let sockets = 0;
  for (const entry of entries) {
    const target = await readlink(`/proc/${pid}/fd/${entry}`).catch(() => '');
    if (target.startsWith('socket:')) sockets += 1;
  }
  return { open: entries.length, sockets };
}

interface SlowConnection {
  socket: Socket;
  silent: boolean;
  /** The first bytes the server sent, if any. */
  answer: string;
  closed: boolean;
}

/** Resolves once `count()` reaches `target`, re-checked on every close; rejects at the deadline. */
function whenCount(
  onChange: Set<() => void>,
  count: () => number,
  target: number,
  timeoutMs: number,
  what: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (count() < target) return;
      done();
      resolve();
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${what}: ${count()} of ${target} within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      onChange.delete(check);
    };
    onChange.add(check);
    check();
  });
}

describe('slow clients under a 1,024-descriptor limit', () => {
  it('cannot exhaust the process: a call is delivered with its recording meanwhile, and the server closes them all', async () => {
    const limits = await readmeLimits();
    p = await startChildPipeline({ openFilesLimit: DESCRIPTOR_LIMIT });
    const child = await p.start();

    // The process's descriptor limit, as a container or systemd unit would set it.
    const limitsFile = await readFile(`/proc/${child.pid}/limits`, 'utf8');
    expect(limitsFile).toMatch(new RegExp(`Max open files\\s+${DESCRIPTOR_LIMIT}\\s+${DESCRIPTOR_LIMIT}\\s`));

    // A connection a load balancer already holds to callsync, opened before the flood.
    const { hostname, port } = new URL(child.url);
    const held = new Client(child.url, {
      pipelining: 1,
      keepAliveTimeout: 120_000,
      keepAliveMaxTimeout: 120_000,
    });
    const api = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
      const answer = await held.request({
        method,
        path,
        headers: {
          authorization: `Bearer ${CHILD_INGEST_TOKEN}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: CHILD_WAIT_MS,
        bodyTimeout: CHILD_WAIT_MS,
      });
      const text = await answer.body.text();
      return { status: answer.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
    };
    expect((await api('GET', '/healthz')).status).toBe(200);

    // The flood.
    const onClose = new Set<() => void>();
    const slow: SlowConnection[] = [];
    for (let index = 0; index < SLOW_CONNECTIONS; index += 1) {
      const socket = connect({ host: hostname, port: Number(port) });
      const connection: SlowConnection = {
        socket,
        silent: index % SILENT_EVERY === SILENT_EVERY - 1,
        answer: '',
        closed: false,
      };
      socket.on('error', () => undefined);
      socket.on('data', (chunk: Buffer) => {
        if (connection.answer.length < 64) connection.answer += chunk.toString('latin1');
      });
      socket.once('close', () => {
        connection.closed = true;
        for (const wake of [...onClose]) wake();
      });
      if (!connection.silent) {
        socket.once('connect', () => {
          // Whole headers, then a body that never finishes.
          socket.write(
            `POST /v1/calls HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAuthorization: Bearer ${CHILD_INGEST_TOKEN}\r\n` +
              'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{',
          );
        });
      }
      slow.push(connection);
    }
    const trickle = setInterval(() => {
      for (const connection of slow) {
        if (!connection.silent && !connection.closed && !connection.socket.connecting)
          connection.socket.write(' ');
      }
    }, TRICKLE_INTERVAL_MS);
    const closedCount = () => slow.filter((connection) => connection.closed).length;

    try {
      // Beyond the cap (the held connection is one of them) connections are refused at once.
      const refused = SLOW_CONNECTIONS - (limits.maxConnections - 1);
      await whenCount(onClose, closedCount, refused, CHILD_WAIT_MS, 'slow connections refused over the cap');
      const atCap = await descriptorsOf(child.pid);
      expect(atCap.open).toBeLessThan(DESCRIPTOR_LIMIT);
      expect(atCap.sockets).toBeGreaterThan(limits.maxConnections / 2);

      // A whole call, meanwhile: its egress, its recording upload and its call data all need
      // descriptors of their own.
      const room = 'room-under-flood';
      p.emulator.createRoom({ name: room });
      p.emulator.startSipCall({
        room,
        callerNumber: CALLER_NUMBER,
        attributes: { 'sip.ruleID': 'SDR_child' },
      });
      const created = await api('POST', '/v1/calls', {
        roomName: room,
        callerNumber: CALLER_NUMBER,
        config: PERSONA_CONFIG,
      });
      expect(created.status).toBe(201);
      const callId = created.body.callId as string;
      const at = (seconds: number) => new Date(Date.now() - 60_000 + seconds * 1000).toISOString();
      expect(
        (
          await api('POST', `/v1/calls/${callId}/transcript`, {
            items: [
              { id: 'f1', role: 'assistant', content: 'Hello, how can I help?', timestamp: at(1) },
              { id: 'f2', role: 'user', content: 'Despite the flood, please.', timestamp: at(3) },
            ],
          })
        ).status,
      ).toBe(202);
      expect(
        (await api('POST', `/v1/calls/${callId}/leads`, { leadId: 'lead-flood', data: { room } })).status,
      ).toBe(202);
      const egressId = await egressIdOf(p.emulator, room);
      await p.emulator.waitForEgress(egressId, (info) => info.status === EgressStatus.EGRESS_ACTIVE, {
        timeoutMs: CHILD_WAIT_MS,
      });
      expect((await api('POST', `/v1/calls/${callId}/end`, { status: 'completed' })).status).toBe(202);

      const upload = await p.crm.waitForUpload(`${callId}:recording`, { timeoutMs: CHILD_WAIT_MS });
      const { document } = await p.crm.waitForCallData(callId, { timeoutMs: CHILD_WAIT_MS });
      const stillOpen = SLOW_CONNECTIONS - closedCount();
      const atDelivery = await descriptorsOf(child.pid);
      expect(upload.sizeBytes).toBeGreaterThan(0);
      expect(document.callDetails.recordingSize).toBe(upload.sizeBytes);
      expect(document.transcription.conversation_items.map((item) => item.content)).toEqual([
        'Hello, how can I help?',
        'Despite the flood, please.',
      ]);
      expect(document.lead).toMatchObject({ leadId: 'lead-flood' });
      // It was delivered while the slow connections were held, not after they went.
      expect(stillOpen).toBeGreaterThan(0);
      expect(atDelivery.open).toBeLessThan(DESCRIPTOR_LIMIT);
      expect(child.stdout() + child.stderr()).not.toContain('EMFILE');

      // The server closes every slow connection itself: the silent ones at the headers
      // deadline, the trickling ones at the whole-request deadline.
      const deadlineMs = (Math.max(limits.headersSeconds, limits.requestSeconds) + 30) * 1000;
      await whenCount(
        onClose,
        closedCount,
        SLOW_CONNECTIONS,
        deadlineMs,
        'slow connections closed by the server',
      );
      for (const connection of slow) {
        if (connection.silent) expect(connection.answer).toBe('');
        else expect(connection.answer === '' || connection.answer.startsWith('HTTP/1.1 408')).toBe(true);
      }
      expect(
        slow.filter((connection) => connection.answer.startsWith('HTTP/1.1 408')).length,
      ).toBeGreaterThan(0);
      console.info(
        `slow clients: ${refused}+ refused at once; at the cap ${atCap.open} descriptors (${atCap.sockets} sockets); ` +
          `call delivered with ${stillOpen} slow connections open, ${atDelivery.open} descriptors`,
      );
    } finally {
      clearInterval(trickle);
      for (const connection of slow) connection.socket.destroy();
      await held.close();
    }

    // New clients are served again: a call over fresh connections, recording and all.
    const after = await p.openCall('room-after-flood');
    await p.endCall(after);
    const { document } = await p.crm.waitForCallData(after.callId, { timeoutMs: CHILD_WAIT_MS });
    expect(document.callDetails.recordingSize).toBeGreaterThan(0);
    expect(document.lead).toMatchObject({ leadId: after.leadId });
  }, 150_000);
});
