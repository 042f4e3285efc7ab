/**
 * The process lifecycle of the public contract: how callsync starts, refuses to start, drains
 * and stops, and what it never writes to its output.
 *
 * Where signals, exit codes and stdout matter, callsync runs as a child process started the way
 * `npm start` starts it, against the LiveKit emulator and the CRM sandbox in this process
 * (`child-pipeline.ts`). What needs no process (close twice, readiness before start) runs the
 * same production wiring in-process through `createCallsyncApp`.
 *
 * Synchronisation: the child's log lines (it says when it drains and how many deliveries it
 * waits for), the CRM sandbox's read-out, the exit itself, and the store read after the exit.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createCallsyncApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logging/logger.ts';
import { createCallStore } from '../../src/store/open-store.ts';
import type { CallRow } from '../../src/store/call-store.ts';
import { CHILD_WAIT_MS, spawnCallsync } from '../helpers/child-callsync.ts';
import { freePort } from '../helpers/free-port.ts';
import {
  CALLER_NUMBER,
  CHILD_API_SECRET,
  CHILD_CRM_API_KEY,
  CHILD_INGEST_TOKEN,
  PERSONA_CONFIG,
  startChildPipeline,
  type ChildPipeline,
} from '../helpers/child-pipeline.ts';

const WAIT = { timeoutMs: CHILD_WAIT_MS };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function pipeline(env?: Record<string, string>): Promise<ChildPipeline> {
  const p = await startChildPipeline(env === undefined ? {} : { env });
  cleanups.push(() => p.close());
  return p;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'callsync-lifecycle-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The calls as stored, read after the process is gone (what the next start would recover). */
async function storedCalls(storeUrl: string, callIds: string[]): Promise<CallRow[]> {
  const store = createCallStore(storeUrl);
  await store.open();
  try {
    return await Promise.all(callIds.map(async (callId) => (await store.getCall(callId))!));
  } finally {
    await store.close();
  }
}

const newCallBody = (roomName: string) => ({ roomName, callerNumber: CALLER_NUMBER, config: PERSONA_CONFIG });

describe('SIGTERM', () => {
  it('drains: refuses new calls with 503 DRAINING, finishes the deliveries in flight, exits 0', async () => {
    const p = await pipeline();
    const child = await p.start();
    const ending = await Promise.all(
      ['drain-0', 'drain-1', 'drain-2'].map((room) => p.openCall(room, { recordingSeconds: 2 })),
    );
    const talking = await p.openCall('drain-talking', { recordingSeconds: 2 });
    // Each call-data POST is held by the CRM, so the deliveries are in flight when the signal
    // comes (by a wide margin: the drain must find all three still delivering).
    p.crm.injectFaults(
      'call-data',
      ending.map(() => ({ delayMs: 4_000 })),
    );
    await Promise.all(ending.map((call) => p.endCall(call)));
    await p.crm.waitForRequests('call-data', ending.length, WAIT);

    child.signal('SIGTERM');
    // The supervisor's own line: it is draining, waiting for exactly the three deliveries.
    await child.waitForLog((line) => line.msg === 'draining' && line.delivering === ending.length);
    const refused = await child.api('POST', '/v1/calls', newCallBody('drain-late'));
    expect(refused).toMatchObject({ status: 503, body: { error: 'DRAINING' } });
    // Events for a call already accepted are still taken while draining.
    expect(
      (
        await child.api('POST', `/v1/calls/${talking.callId}/leads`, {
          leadId: 'lead-while-draining',
        })
      ).status,
    ).toBe(202);

    expect(await child.exited).toEqual({ code: 0, signal: null });
    // Acknowledged before the exit: the store has them delivered. The call in conversation
    // stays persisted as it was, for the next start.
    const rows = await storedCalls(
      p.storeUrl,
      [...ending, talking].map((call) => call.callId),
    );
    expect(rows.map((row) => [row.status, row.state])).toEqual([
      ['done', 'done'],
      ['done', 'done'],
      ['done', 'done'],
      ['active', 'inConversation'],
    ]);
    expect(
      p.crm
        .received()
        .callData.map((item) => item.callId)
        .sort(),
    ).toEqual(ending.map((call) => call.callId).sort());
    expect(child.stderr()).toBe('');
  }, 60_000);

  it('exits at once on a second signal during a long drain; the calls left resume on the next start', async () => {
    const p = await pipeline({ CALLSYNC_DRAIN_TIMEOUT_SECONDS: '60' });
    const first = await p.start();
    const calls = await Promise.all(
      ['second-0', 'second-1'].map((room) => p.openCall(room, { recordingSeconds: 2 })),
    );
    // Never answered: one not stored at all, one stored by the CRM with its answer lost.
    p.crm.injectFaults('call-data', [{ hang: true }, { hang: true, afterProcessing: true }]);
    await Promise.all(calls.map((call) => p.endCall(call)));
    await p.crm.waitForRequests('call-data', calls.length, WAIT);
    await p.crm.waitFor((received) => received.callData.length === 1, WAIT);

    first.signal('SIGTERM');
    await first.waitForLog((line) => line.msg === 'draining' && line.delivering === calls.length);
    first.signal('SIGTERM');
    expect(await first.exited).toEqual({ code: 0, signal: null });
    expect(first.logLines().some((line) => String(line.msg).startsWith('second signal'))).toBe(true);
    // It did not wait for the held deliveries: both calls are still posting their data.
    const left = await storedCalls(
      p.storeUrl,
      calls.map((call) => call.callId),
    );
    expect(left.map((row) => [row.status, row.state])).toEqual([
      ['active', 'postingData'],
      ['active', 'postingData'],
    ]);

    const next = await p.start();
    expect(await next.waitForLog((line) => line.msg === 'recovery done')).toMatchObject({ restored: 2 });
    await Promise.all(calls.map((call) => p.crm.waitForCallData(call.callId, WAIT)));
    for (const call of calls) {
      expect((await next.api('GET', `/v1/calls/${call.callId}`)).body).toMatchObject({
        state: 'done',
        outcome: 'delivered',
      });
    }
    const received = p.crm.received();
    expect(received.callData.map((item) => item.idempotencyKey).sort()).toEqual(
      calls.map((call) => `${call.callId}:call-data`).sort(),
    );
    // The one the CRM had stored was asked again and answered from its idempotency record.
    expect(received.duplicateRequests).toEqual([
      expect.objectContaining({ endpoint: 'call-data', idempotencyKey: received.faults[1]!.idempotencyKey }),
    ]);
  }, 60_000);
});

describe('start-up with a bad environment', () => {
  const valid = {
    LIVEKIT_URL: 'http://127.0.0.1:7880',
    LIVEKIT_API_KEY: 'APIkey',
    LIVEKIT_API_SECRET: CHILD_API_SECRET,
    CRM_BASE_URL: 'http://127.0.0.1:9/crm',
    CRM_API_KEY: CHILD_CRM_API_KEY,
    CALLSYNC_INGEST_TOKEN: CHILD_INGEST_TOKEN,
  };

  it.each([
    ['CALLSYNC_PORT', { CALLSYNC_PORT: 'eighty' }],
    ['LIVEKIT_API_SECRET', { LIVEKIT_API_SECRET: undefined }],
    ['CRM_BASE_URL', { CRM_BASE_URL: 'crm.example.com/api' }],
    ['CALLSYNC_STORE', { CALLSYNC_STORE: 'mysql://db/callsync' }],
  ])(
    'fails with exit code 1 and one stderr line naming %s, before anything listens',
    async (name, change) => {
      const dir = await tempDir();
      const port = await freePort();
      const env: Record<string, string> = {};
      for (const [key, value] of Object.entries({
        ...valid,
        CALLSYNC_PORT: String(port),
        CALLSYNC_STORE: `sqlite:${join(dir, 'callsync.db')}`,
        ...change,
      })) {
        if (value !== undefined) env[key] = value;
      }
      const child = spawnCallsync({ env });
      expect(await child.exited).toEqual({ code: 1, signal: null });
      const lines = child.stderr().split('\n').filter(Boolean);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^callsync: invalid configuration: ${name} `));
      for (const secret of [CHILD_API_SECRET, CHILD_CRM_API_KEY, CHILD_INGEST_TOKEN])
        expect(lines[0]).not.toContain(secret);
      // Nothing was opened or served: no log line, no store file.
      expect(child.stdout()).toBe('');
      expect(existsSync(join(dir, 'callsync.db'))).toBe(false);
    },
  );
});

describe('secrets in the output', () => {
  it('never writes the LiveKit secret, the CRM key or the ingest token, over a whole call with failures', async () => {
    const p = await pipeline({ LOG_LEVEL: 'trace' });
    const child = await p.start();
    // Something goes wrong at every step, so every error path logs: egress start, upload, post.
    p.emulator.setRoomBehaviour('secrets', {
      recordingSeconds: 2,
      failStarts: { error: 'no_response', count: 1 },
    });
    p.crm.injectFaults('upload', [{ status: 503 }]);
    p.crm.injectFaults('call-data', [{ status: 500, body: { error: 'boom' } }]);
    const call = await p.openCall('secrets');
    expect((await child.api('GET', '/v1/calls/nope')).status).toBe(404);
    await p.endCall(call);
    await p.crm.waitForCallData(call.callId, WAIT);
    child.signal('SIGTERM');
    expect((await child.exited).code).toBe(0);

    const output = child.stdout() + child.stderr();
    // The output is the real log of that call (so the check below is not vacuous)…
    expect(output).toContain(call.callId);
    expect(output).toContain('egress start failed');
    expect(output).toContain('recording attempt 1 failed');
    expect(output).toContain('call-data attempt 1 failed');
    // …and none of the secrets is in it, in any form it was given.
    for (const secret of [CHILD_API_SECRET, CHILD_CRM_API_KEY, CHILD_INGEST_TOKEN]) {
      expect(output).not.toContain(secret);
      expect(output).not.toContain(Buffer.from(secret).toString('base64'));
    }
  }, 60_000);
});

describe('in-process lifecycle', () => {
  async function app(store?: string, options: { recordingsDir?: boolean } = {}) {
    const dir = await tempDir();
    if (options.recordingsDir !== false) await mkdir(join(dir, 'recordings'));
    const config = loadConfig({
      LIVEKIT_URL: 'http://127.0.0.1:7880',
      LIVEKIT_API_KEY: 'APIkey',
      LIVEKIT_API_SECRET: CHILD_API_SECRET,
      CRM_BASE_URL: 'http://127.0.0.1:9',
      CALLSYNC_PORT: '0',
      CALLSYNC_STORE: store ?? `sqlite:${join(dir, 'callsync.db')}`,
      CALLSYNC_RECORDINGS_DIR: join(dir, 'recordings'),
    });
    return createCallsyncApp(config, { logger: createLogger({ level: 'silent' }) });
  }
  const readyz = async (a: Awaited<ReturnType<typeof app>>) => {
    const answer = await a.http.inject({ method: 'GET', url: '/readyz' });
    return { status: answer.statusCode, body: answer.json<Record<string, unknown>>() };
  };

  it('answers /readyz 503 until start() has finished, then 200', async () => {
    const a = await app();
    cleanups.push(() => a.close());
    expect(await readyz(a)).toMatchObject({ status: 503, body: { error: 'NOT_READY' } });
    const starting = a.start();
    expect(a.supervisor.isReady()).toBe(false); // what /readyz answers from, while start() runs
    await starting;
    expect(await readyz(a)).toEqual({
      status: 200,
      body: { status: 'ready', checks: { store: 'ok', storage: 'ok' } },
    });
  });

  it('drain and close are safe to call twice, concurrently or one after the other', async () => {
    const a = await app();
    await a.start();
    await Promise.all([a.drain(), a.drain()]);
    await a.drain();
    expect(await readyz(a)).toMatchObject({ status: 200 });
    await Promise.all([a.close(), a.close()]);
    await a.close();
    expect(a.supervisor.isReady()).toBe(false);
  });

  it('refuses to start without its recordings directory, naming the variable', async () => {
    const a = await app(undefined, { recordingsDir: false });
    cleanups.push(() => a.close());
    await expect(a.start()).rejects.toMatchObject({
      code: 'RECORDINGS_DIR_MISSING',
      message: expect.stringMatching(
        /^CALLSYNC_RECORDINGS_DIR .*recordings is not a readable directory/,
      ) as string,
    });
    expect(await readyz(a)).toMatchObject({ status: 503 });
  });

  it('stays not ready when the store cannot be opened, and still closes cleanly', async () => {
    const port = await freePort(); // nothing listens there: the store cannot connect
    const a = await app(`postgres://callsync@127.0.0.1:${port}/callsync`);
    await expect(a.start()).rejects.toThrow();
    expect(await readyz(a)).toMatchObject({ status: 503, body: { error: 'NOT_READY' } });
    await a.close();
    await a.close();
  });

  it('closes safely twice, in a row and at the same time', async () => {
    const a = await app();
    await a.start();
    await Promise.all([a.close(), a.close()]);
    await a.close();
    expect(a.supervisor.isReady()).toBe(false);
    expect(a.http.server.listening).toBe(false);
  });

  it('leaves nothing listening when close() is called while start() is still running', async () => {
    // What main.ts does when SIGTERM arrives during start-up (recovery): drain, then close.
    const a = await app();
    cleanups.push(async () => {
      // Only if the test failed: the port was opened after the close.
      if (a.http.server.listening) await new Promise((resolve) => a.http.server.close(resolve));
    });
    const starting = a.start();
    await a.close();
    await starting;
    expect(a.http.server.listening).toBe(false);
    expect(a.supervisor.isReady()).toBe(false);
  });

  it('closes safely twice without ever starting', async () => {
    const a = await app();
    await a.close();
    await a.close();
    expect(a.supervisor.isReady()).toBe(false);
  });
});
