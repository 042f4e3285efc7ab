/**
 * Closing the HTTP server while a request is in flight on a keep-alive connection: the answer
 * still goes out, says `Connection: close`, and the close finishes without waiting for the
 * client to drop its idle socket (undici would keep it for the whole keep-alive window).
 */
import pino from 'pino';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { buildHttpServer, type HttpServer } from '../../src/http/server.ts';
import type { CallApi, CreateCallBody } from '../../src/supervisor/call-api.ts';

const notUsed = () => Promise.reject(new Error('not used by this test'));

/** A call API whose `createCall` answers only when the test lets it. */
function heldCallApi() {
  let release!: () => void;
  let arrived!: () => void;
  const createArrived = new Promise<void>((resolve) => (arrived = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  const api: CallApi = {
    isReady: () => true,
    isAccepting: () => true,
    async createCall(body: CreateCallBody) {
      arrived();
      await released;
      return { callId: `call-${body.roomName}`, state: 'recording', created: true };
    },
    addTranscript: notUsed,
    linkLead: notUsed,
    endCall: notUsed,
    retryCall: notUsed,
    dismissCall: notUsed,
    getCall: notUsed,
    listCalls: notUsed,
    status: notUsed,
    handleWebhook: notUsed,
    metrics: notUsed,
  };
  return { api, createArrived, release };
}

let server: HttpServer | undefined;
let agent: Agent | undefined;
afterEach(async () => {
  await agent?.destroy();
  await server?.close();
  server = agent = undefined;
});

describe('closing the HTTP server', () => {
  it('answers the request in flight with Connection: close and finishes closing', async () => {
    const held = heldCallApi();
    server = buildHttpServer({ api: held.api, logger: pino({ level: 'silent' }) });
    // Registered after the server's own hooks, so it runs once the server knows it is closing.
    let closingStarted!: () => void;
    const closing = new Promise<void>((resolve) => (closingStarted = resolve));
    server.addHook('preClose', (done) => {
      closingStarted();
      done();
    });
    const address = await server.listen({ host: '127.0.0.1', port: 0 });
    // A client that would keep an idle socket far longer than this test's timeout.
    agent = new Agent({ keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 });

    const answer = request(`${address}/v1/calls`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        roomName: 'room-close',
        callerNumber: '+15550100',
        config: { campaigns: [{ _id: 'c1', client: 'cl1', voiceAgents: [{ _id: 'va1' }] }] },
      }),
    });
    await held.createArrived;
    const closed = server.close();
    await closing;
    held.release();

    const response = await answer;
    expect(response.statusCode).toBe(201);
    expect(response.headers.connection).toBe('close');
    await response.body.json();
    await closed;
  });
});
