/**
 * The CRM sandbox: a real HTTP server speaking the CRM side of the contract (`POST /upload`,
 * `POST /call-data`, `GET /files/<name>`), with idempotency keys, bearer auth, fault injection
 * and a read-out of everything it received. The demo delivers to it, users point
 * `CRM_BASE_URL` at it, and the CRM client's tests run against it.
 *
 * Order of handling for `/upload` and `/call-data`: count the request, apply the next queued
 * fault (see faults.ts), check auth, consult the idempotency ledger (see idempotency.ts), then
 * store. Control routes (`/_sandbox/*`) and `/files/*` need no key: they are the operator's and
 * the public's side, not the API's.
 *
 * Control routes: `POST /_sandbox/faults` `{endpoint, faults}` queues faults, `DELETE` clears
 * them, `GET` lists how many are pending; `GET /_sandbox/received` is the read-out;
 * `POST /_sandbox/reset` forgets everything received (stored files stay served).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { receiveCallData } from './call-data.route.ts';
import { FaultQueues, faultScriptSchema, type CrmFault } from './faults.ts';
import { BodyTooLargeError, drainRequest, headerValue, readBodyCapped, sendError, sendJson } from './http.ts';
import { IdempotencyLedger, type StoredAnswer } from './idempotency.ts';
import { ReceivedLog, type WaitOptions } from './recorder.ts';
import type { HandlerResult } from './results.ts';
import type {
  CrmSandboxEndpoint,
  CrmSandboxOptions,
  CrmSandboxReceived,
  ReceivedCallData,
  ReceivedUpload,
  UploadAnswerShape,
} from './types.ts';
import { receiveUpload } from './upload.route.ts';
import { SANDBOX_LISTEN_BACKLOG as LISTEN_BACKLOG } from '../listen-backlog.ts';

export const MAX_UPLOAD_BYTES_DEFAULT = 1024 * 1024 * 1024;
/** Room for the largest call data callsync builds (5,000 items, a million characters of text). */
export const MAX_JSON_BYTES_DEFAULT = 16 * 1024 * 1024;
/** Control-route bodies (fault scripts) are small. */
const MAX_CONTROL_BYTES = 256 * 1024;
const STORED_NAME_PATTERN = /^[A-Za-z0-9._-]+$/;

export interface CrmSandbox {
  /** Listens; resolves with the base URL (`http://127.0.0.1:<port>`). Calling it again returns the same promise. */
  start(): Promise<{ url: string }>;
  /** Stops listening and drops every connection (hanging ones too). Safe to call twice. */
  close(): Promise<void>;
  /** The base URL; throws before `start()` resolved. */
  readonly url: string;
  /** Queues faults for the next requests to `endpoint` (validated; throws on a malformed fault). */
  injectFaults(endpoint: CrmSandboxEndpoint, faults: readonly CrmFault[]): void;
  clearFaults(endpoint?: CrmSandboxEndpoint): void;
  pendingFaults(): Record<CrmSandboxEndpoint, number>;
  /** A copy of everything received so far. */
  received(): CrmSandboxReceived;
  /** Forgets what was received, the queued faults and the idempotency keys. */
  reset(): void;
  /** Resolves with the first `select(received)` that is not undefined/null/false, re-evaluated after every change. */
  waitFor<T>(
    select: (received: CrmSandboxReceived) => T | undefined | null | false,
    options?: WaitOptions,
  ): Promise<T>;
  /** Resolves when a valid call-data document for `callId` was stored. */
  waitForCallData(callId: string, options?: WaitOptions): Promise<ReceivedCallData>;
  /** Resolves when an upload with this idempotency key (e.g. `<callId>:recording`) was stored. */
  waitForUpload(idempotencyKey: string, options?: WaitOptions): Promise<ReceivedUpload>;
  /** Resolves when `endpoint` has seen at least `count` requests (faulted ones included). */
  waitForRequests(endpoint: CrmSandboxEndpoint, count: number, options?: WaitOptions): Promise<number>;
}

function sameSecret(given: string, expected: string): boolean {
  // Hashing first makes the comparison constant-time whatever the lengths.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function sendStored(res: ServerResponse, answer: StoredAnswer, replayed: boolean): void {
  sendJson(res, answer.status, answer.body, replayed ? { 'idempotent-replayed': 'true' } : {});
}

function sendStatusFault(res: ServerResponse, fault: Extract<CrmFault, { status: number }>): void {
  const headers: Record<string, string> = {};
  if (fault.retryAfterSeconds !== undefined) headers['retry-after'] = String(fault.retryAfterSeconds);
  Object.assign(headers, fault.headers);
  const body = fault.body ?? { error: 'injected_fault', message: `CRM sandbox fault: HTTP ${fault.status}` };
  sendJson(res, fault.status, body, headers);
}

export function createCrmSandbox(options: CrmSandboxOptions): CrmSandbox {
  const uploadsDir = join(options.storageDir, 'uploads');
  const callDataDir = join(options.storageDir, 'call-data');
  const maxUploadBytes = options.maxUploadBytes ?? MAX_UPLOAD_BYTES_DEFAULT;
  const maxJsonBytes = options.maxJsonBytes ?? MAX_JSON_BYTES_DEFAULT;
  const answerShape: Required<UploadAnswerShape> = {
    status: options.uploadAnswer?.status ?? 201,
    urlField: options.uploadAnswer?.urlField ?? 'url',
    underData: options.uploadAnswer?.underData ?? false,
  };
  const faults = new FaultQueues();
  const ledger = new IdempotencyLedger();
  const log = new ReceivedLog();
  /** Content types of stored files, for `GET /files/<name>`; kept across reset(). */
  const storedTypes = new Map<string, string>();
  /** Aborts `delayMs` faults on close; every delayed request in flight listens to it. */
  const lifetime = new AbortController();
  setMaxListeners(0, lifetime.signal);
  let baseUrl: string | undefined;
  let startPromise: Promise<{ url: string }> | undefined;
  let closePromise: Promise<void> | undefined;

  const publicBase = () => (options.publicBaseUrl ?? baseUrl ?? '').replace(/\/+$/, '');

  function applyTerminalFault(
    fault: Exclude<CrmFault, { delayMs: number }>,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> | void {
    if ('hang' in fault) return; // the request stays open until the client gives up or we close
    if ('reset' in fault) {
      req.socket.resetAndDestroy();
      return;
    }
    return drainRequest(req).then(() => sendStatusFault(res, fault));
  }

  async function handleCrmRoute(endpoint: CrmSandboxEndpoint, req: IncomingMessage, res: ServerResponse) {
    const idempotencyKey = headerValue(req, 'idempotency-key');
    log.update((state) => (state.requests[endpoint] += 1));

    const fault = faults.next(endpoint);
    if (fault !== undefined) {
      log.update((state) => state.faults.push({ endpoint, fault: structuredClone(fault), idempotencyKey }));
    }
    let lateFault: Exclude<CrmFault, { delayMs: number }> | undefined;
    if (fault !== undefined && 'delayMs' in fault) {
      if (fault.delayMs > 0) await delay(fault.delayMs, undefined, { signal: lifetime.signal });
    } else if (fault !== undefined && fault.afterProcessing === true) {
      lateFault = fault;
    } else if (fault !== undefined) {
      await applyTerminalFault(fault, req, res);
      return;
    }

    const reject = async (
      status: number,
      error: string,
      message: string,
      extra?: Record<string, unknown>,
    ) => {
      log.update((state) => state.rejected.push({ endpoint, status, error, message, idempotencyKey }));
      await drainRequest(req);
      sendError(res, status, error, message, extra);
    };
    const answer = async (stored: StoredAnswer, replayed: boolean) => {
      if (lateFault !== undefined) await applyTerminalFault(lateFault, req, res);
      else sendStored(res, stored, replayed);
    };

    if (options.apiKey !== undefined) {
      const authorization = headerValue(req, 'authorization') ?? '';
      if (!sameSecret(authorization, `Bearer ${options.apiKey}`)) {
        // Never echo what was sent: it may be a (wrong) secret.
        await reject(401, 'unauthorized', 'a valid "Authorization: Bearer <api key>" header is required');
        return;
      }
    }

    const entry = idempotencyKey === null ? undefined : await ledger.begin(endpoint, idempotencyKey);
    if (entry?.kind === 'replay' && idempotencyKey !== null) {
      await drainRequest(req);
      log.update((state) => {
        state.duplicates[endpoint] += 1;
        state.duplicateRequests.push({
          endpoint,
          idempotencyKey,
          concurrent: entry.concurrent,
          status: entry.answer.status,
        });
      });
      await answer(entry.answer, true);
      return;
    }
    const first = entry?.kind === 'first' ? entry : undefined;
    // The client may have left while this request waited (a `delayMs` fault, or another request
    // with its key): its body can no longer be read and its 'close' has already fired, so a route
    // would wait for it forever, holding the key against every retry.
    if (req.destroyed) {
      first?.finish(undefined);
      return;
    }

    let result: HandlerResult<ReceivedUpload> | HandlerResult<ReceivedCallData>;
    try {
      result =
        endpoint === 'upload'
          ? await receiveUpload(req, {
              uploadsDir,
              maxUploadBytes,
              answerShape,
              idempotencyKey,
              fileUrl: (name) => `${publicBase()}/files/${encodeURIComponent(name)}`,
            })
          : await receiveCallData(req, { callDataDir, maxJsonBytes, idempotencyKey });
    } catch (error) {
      first?.finish(undefined);
      throw error;
    }

    if (result.kind === 'gone') {
      first?.finish(undefined);
      return;
    }
    if (result.kind === 'refused') {
      first?.finish(undefined);
      log.update((state) =>
        state.rejected.push({
          endpoint,
          status: result.status,
          error: result.error,
          message: result.message,
          idempotencyKey,
        }),
      );
      sendError(res, result.status, result.error, result.message, result.extra);
      return;
    }
    // Record before settling the key, so a waiting duplicate is counted after the original.
    const { record } = result;
    if ('storedName' in record) {
      storedTypes.set(record.storedName, record.contentType);
      log.update((state) => state.uploads.push(record));
    } else {
      log.update((state) => state.callData.push(record));
    }
    first?.finish(result.answer);
    await answer(result.answer, false);
  }

  async function serveFile(name: string, req: IncomingMessage, res: ServerResponse) {
    if (!STORED_NAME_PATTERN.test(name) || !storedTypes.has(name)) {
      sendError(res, 404, 'not_found', 'no such file');
      return;
    }
    const path = join(uploadsDir, name);
    let sizeBytes: number;
    try {
      sizeBytes = (await stat(path)).size;
    } catch {
      sendError(res, 404, 'not_found', 'no such file');
      return;
    }
    res.writeHead(200, {
      'content-type': storedTypes.get(name) ?? 'application/octet-stream',
      'content-length': String(sizeBytes),
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    await pipeline(createReadStream(path), res);
  }

  async function handleControl(path: string, req: IncomingMessage, res: ServerResponse) {
    if (path === '/_sandbox/received' && req.method === 'GET') {
      sendJson(res, 200, log.snapshot());
    } else if (path === '/_sandbox/faults' && req.method === 'GET') {
      sendJson(res, 200, { pending: faults.pending() });
    } else if (path === '/_sandbox/faults' && req.method === 'DELETE') {
      faults.clear();
      sendJson(res, 200, { pending: faults.pending() });
    } else if (path === '/_sandbox/faults' && req.method === 'POST') {
      let script: z.infer<typeof faultScriptSchema>;
      try {
        script = faultScriptSchema.parse(
          JSON.parse((await readBodyCapped(req, MAX_CONTROL_BYTES)).toString('utf8')),
        );
      } catch (error) {
        if (error instanceof z.ZodError) {
          sendError(res, 400, 'invalid_fault_script', z.prettifyError(error));
        } else if (error instanceof BodyTooLargeError || error instanceof SyntaxError) {
          sendError(res, 400, 'invalid_fault_script', error.message);
        }
        return;
      }
      faults.push(script.endpoint, script.faults);
      sendJson(res, 200, { pending: faults.pending() });
    } else if (path === '/_sandbox/reset' && req.method === 'POST') {
      await drainRequest(req);
      resetState();
      sendJson(res, 200, { reset: true });
    } else {
      await drainRequest(req);
      sendError(res, 404, 'not_found', `no route ${req.method ?? ''} ${path}`);
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse) {
    const path = new URL(req.url ?? '/', 'http://sandbox').pathname;
    if (path === '/upload' || path === '/call-data') {
      if (req.method !== 'POST') {
        await drainRequest(req);
        sendError(res, 405, 'method_not_allowed', `use POST ${path}`);
        return;
      }
      await handleCrmRoute(path === '/upload' ? 'upload' : 'call-data', req, res);
    } else if (path.startsWith('/files/') && (req.method === 'GET' || req.method === 'HEAD')) {
      let name: string;
      try {
        name = decodeURIComponent(path.slice('/files/'.length));
      } catch {
        name = ''; // malformed %-escape: no such file
      }
      await serveFile(name, req, res);
    } else if (path.startsWith('/_sandbox/')) {
      await handleControl(path, req, res);
    } else {
      await drainRequest(req);
      sendError(res, 404, 'not_found', `no route ${req.method ?? ''} ${path}`);
    }
  }

  const server: Server = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      // Closing mid-delay, or a client gone mid-answer, ends here; anything else is a sandbox bug.
      if (lifetime.signal.aborted || req.destroyed) return;
      sendError(res, 500, 'sandbox_error', error instanceof Error ? error.message : String(error));
    });
  });

  function resetState() {
    log.reset();
    faults.clear();
    ledger.clear();
  }

  return {
    start() {
      startPromise ??= (async () => {
        await mkdir(uploadsDir, { recursive: true });
        await mkdir(callDataDir, { recursive: true });
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(options.port ?? 0, options.host ?? '127.0.0.1', LISTEN_BACKLOG, () => {
            server.off('error', reject);
            resolve();
          });
        });
        const address = server.address() as AddressInfo;
        const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
        baseUrl = `http://${host}:${address.port}`;
        return { url: baseUrl };
      })();
      return startPromise;
    },
    close() {
      closePromise ??= (async () => {
        lifetime.abort();
        log.close();
        if (!server.listening) return;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
      })();
      return closePromise;
    },
    get url() {
      if (baseUrl === undefined) throw new Error('CRM sandbox not started');
      return baseUrl;
    },
    injectFaults: (endpoint, list) => faults.push(endpoint, list),
    clearFaults: (endpoint) => faults.clear(endpoint),
    pendingFaults: () => faults.pending(),
    received: () => log.snapshot(),
    reset: resetState,
    waitFor: (select, waitOptions) => log.waitFor(select, waitOptions),
    waitForCallData: (callId, waitOptions) =>
      log.waitFor((received) => received.callData.find((item) => item.callId === callId), {
        description: `call data for ${callId}`,
        ...waitOptions,
      }),
    waitForUpload: (idempotencyKey, waitOptions) =>
      log.waitFor((received) => received.uploads.find((item) => item.idempotencyKey === idempotencyKey), {
        description: `an upload with Idempotency-Key ${idempotencyKey}`,
        ...waitOptions,
      }),
    waitForRequests: (endpoint, count, waitOptions) =>
      log.waitFor(
        (received) => (received.requests[endpoint] >= count ? received.requests[endpoint] : undefined),
        { description: `${count} request(s) to ${endpoint}`, ...waitOptions },
      ),
  };
}
