/**
 * A stand-in supervisor for the agent-side tests: the real HTTP layer (`buildHttpServer`, so the
 * real routes, zod schemas, bearer check, error bodies and 503 while draining) over an in-memory
 * call API that records what arrives, served by a plain `node:http` server on 127.0.0.1:0 that
 * can go down and come back on the same port, and answer faults before the API sees a request.
 *
 * Semantics kept from the contract: a repeated create for a room answers 200 with the same
 * callId; a transcript item id seen before is ignored; unknown calls are 404; events for an
 * ended call (and a second end) are 409 `CALL_ALREADY_ENDED`.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { ApiError } from '../../src/errors.ts';
import { buildHttpServer, type HttpServer } from '../../src/http/server.ts';
import type {
  CallApi,
  CreateCallBody,
  EndCallBody,
  LeadBody,
  TranscriptBody,
} from '../../src/supervisor/call-api.ts';
import type { CallDetailView, CallView } from '../../src/supervisor/call-view.ts';

export type StubFault =
  /** Answer this status with a JSON error body (and `Retry-After` when given). */
  | { status: number; code?: string; retryAfterSeconds?: number }
  /** Take the request and never answer (until the stub goes down or closes). */
  | { hang: true }
  /** Destroy the connection without an answer. */
  | { reset: true };

/** One request as it reached the socket (before faults and the API). */
export interface StubRequest {
  method: string;
  path: string;
  authorization: string | undefined;
  /** What the stub did with it: the fault applied, or `api`. */
  handledBy: 'api' | 'fault';
}

/** What the call API accepted, in arrival order. */
export type StubEvent =
  | { kind: 'create'; callId: string; created: boolean; body: CreateCallBody }
  | { kind: 'transcript'; callId: string; body: TranscriptBody }
  | { kind: 'lead'; callId: string; body: LeadBody }
  | { kind: 'end'; callId: string; body: EndCallBody };

export interface StubCall {
  callId: string;
  create: CreateCallBody;
  /** Unique items, in first-arrival order. */
  transcript: TranscriptBody['items'];
  /** Items that arrived again (ignored, as the real supervisor does). */
  duplicateItems: number;
  leads: LeadBody[];
  end: EndCallBody | undefined;
}

export interface AgentSupervisorStub {
  readonly url: string;
  readonly port: number;
  readonly requests: readonly StubRequest[];
  readonly events: readonly StubEvent[];
  call(callId: string): StubCall | undefined;
  callByRoom(roomName: string): StubCall | undefined;
  /** The next `count` requests get `fault` instead of reaching the API. */
  failNext(fault: StubFault, count?: number): void;
  /** While false, creates are refused with 503 DRAINING (the real server's rule). */
  setAccepting(accepting: boolean): void;
  /** Stops listening and drops every connection (refused from now on). */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  /** Resolves once `predicate` holds (checked now and after every request). */
  waitFor(predicate: (stub: AgentSupervisorStub) => boolean): Promise<void>;
  close(): Promise<void>;
}

export interface AgentSupervisorStubOptions {
  ingestToken?: string;
}

export async function startAgentSupervisorStub(
  options: AgentSupervisorStubOptions = {},
): Promise<AgentSupervisorStub> {
  const requests: StubRequest[] = [];
  const events: StubEvent[] = [];
  const calls = new Map<string, StubCall>();
  const faults: StubFault[] = [];
  const hung = new Set<ServerResponse>();
  const waiters = new Set<() => void>();
  let accepting = true;
  let listening = false;

  function notify() {
    for (const check of [...waiters]) check();
  }

  function knownCall(callId: string): StubCall {
    const call = calls.get(callId);
    if (!call) throw new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
    return call;
  }

  function openCall(callId: string): StubCall {
    const call = knownCall(callId);
    if (call.end) throw new ApiError('CALL_ALREADY_ENDED', `call ${callId} has ended`);
    return call;
  }

  const api: CallApi = {
    isReady: () => true,
    isAccepting: () => accepting,
    createCall(body) {
      const existing = [...calls.values()].find((call) => call.create.roomName === body.roomName);
      if (existing) {
        events.push({ kind: 'create', callId: existing.callId, created: false, body });
        return Promise.resolve({ created: false, callId: existing.callId, state: 'active' });
      }
      const callId = body.callId ?? `call_${calls.size + 1}`;
      calls.set(callId, {
        callId,
        create: body,
        transcript: [],
        duplicateItems: 0,
        leads: [],
        end: undefined,
      });
      events.push({ kind: 'create', callId, created: true, body });
      return Promise.resolve({ created: true, callId, state: 'active' });
    },
    addTranscript(callId, body) {
      const call = openCall(callId);
      events.push({ kind: 'transcript', callId, body });
      for (const item of body.items) {
        if (call.transcript.some((known) => known.id === item.id)) call.duplicateItems += 1;
        else call.transcript.push(item);
      }
      return Promise.resolve();
    },
    linkLead(callId, body) {
      const call = openCall(callId);
      events.push({ kind: 'lead', callId, body });
      call.leads.push(body);
      return Promise.resolve();
    },
    endCall(callId, body) {
      const call = openCall(callId);
      events.push({ kind: 'end', callId, body });
      call.end = body;
      return Promise.resolve();
    },
    retryCall: () => Promise.reject(new ApiError('CALL_NOT_RETRYABLE', 'not in the stub')),
    // Type-only: the agent never reads a call back, so the stub answers what it keeps.
    getCall: (callId) => Promise.resolve(knownCall(callId) as unknown as CallDetailView),
    listCalls: () =>
      Promise.resolve({ calls: [...calls.values()] as unknown as CallView[], nextCursor: null }),
    dismissCall: () => Promise.reject(new ApiError('CALL_NOT_DISMISSABLE', 'not in the stub')),
    status: () =>
      Promise.resolve({
        targetSeconds: 30,
        delivery: {
          lastHour: { finished: 0, withinTarget: 0, share: null, latencySeconds: null },
          lastDay: { finished: 0, withinTarget: 0, share: null, latencySeconds: null },
        },
        callsByState: {},
        failedWaiting: 0,
      }),
    handleWebhook: () => Promise.resolve(),
    metrics: () => Promise.resolve({ contentType: 'text/plain', body: '' }),
  };

  const app: HttpServer = buildHttpServer({
    api,
    logger: pino({ level: 'silent' }),
    ...(options.ingestToken === undefined ? {} : { ingestToken: options.ingestToken }),
  });
  await app.ready();

  function applyFault(fault: StubFault, res: ServerResponse) {
    if ('hang' in fault) {
      hung.add(res);
      res.once('close', () => hung.delete(res));
      return;
    }
    if ('reset' in fault) {
      res.socket?.destroy();
      return;
    }
    res.writeHead(fault.status, {
      'content-type': 'application/json',
      ...(fault.retryAfterSeconds === undefined ? {} : { 'retry-after': String(fault.retryAfterSeconds) }),
    });
    res.end(JSON.stringify({ error: fault.code ?? 'STUB_FAULT', message: `injected ${fault.status}` }));
  }

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const fault = faults.shift();
    requests.push({
      method: req.method ?? '',
      path: (req.url ?? '').split('?')[0] ?? '',
      authorization: req.headers.authorization,
      handledBy: fault ? 'fault' : 'api',
    });
    res.once('finish', notify);
    if (fault) {
      // Read the body first so the client is not cut off mid-send (except for a reset).
      req.resume();
      req.once('end', () => {
        applyFault(fault, res);
        notify();
      });
      return;
    }
    app.routing(req, res);
  });

  async function listen(port: number) {
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    listening = true;
  }

  await listen(0);
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;

  async function down() {
    if (!listening) return;
    listening = false;
    const closed = once(server, 'close');
    server.close();
    for (const res of hung) res.socket?.destroy();
    server.closeAllConnections();
    await closed;
  }

  const stub: AgentSupervisorStub = {
    url,
    port,
    requests,
    events,
    call: (callId) => calls.get(callId),
    callByRoom: (roomName) => [...calls.values()].find((call) => call.create.roomName === roomName),
    failNext(fault, count = 1) {
      for (let index = 0; index < count; index += 1) faults.push(fault);
    },
    setAccepting(value) {
      accepting = value;
    },
    down,
    up: () => listen(port),
    waitFor(predicate) {
      return new Promise((resolve) => {
        const check = () => {
          if (!predicate(stub)) return;
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
        check();
      });
    },
    async close() {
      await down();
      await app.close();
    },
  };
  return stub;
}
