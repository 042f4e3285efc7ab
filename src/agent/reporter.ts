/**
 * The reporter: tells the callsync supervisor what happens in one call, as it happens, over the
 * HTTP API the README documents ("HTTP API") (`POST /v1/calls`, then `/transcript`, `/leads`, `/end`).
 *
 * Policy, and why:
 * - It never blocks or throws into the conversation. Every method returns at once; requests go
 *   to an in-memory FIFO that one sender delivers one request at a time, so the supervisor sees
 *   them in the order they happened. `startCall` puts the create at the head of the queue, so
 *   events queued before the caller was known still arrive after it, and every later path uses
 *   the `callId` the supervisor answered (which may differ from the one proposed, if the room was
 *   already known to it).
 * - At-least-once. No answer, 408, 429 and 5xx (503 while the supervisor drains) are repeated
 *   with backoff (`backoff.ts`) for as long as the reporter is open: the supervisor ignores
 *   repeated transcript ids and repeated creates for a room, so repeating is safe. Any other 4xx
 *   is final for that request: logged, listed as undelivered, and the sender moves on. If the
 *   create itself is refused nothing else of the call can be delivered, and the report says so.
 *   A 409 `CALL_ALREADY_ENDED` to our own `end` means the call is ended, which is what we asked.
 * - Bounded memory. Transcript items and leads waiting in the queue are capped by count
 *   (`MAX_QUEUED_REQUESTS`) and bytes (`MAX_QUEUED_BYTES`); the create and the end are exempt
 *   (one each). When the cap is hit the new request is refused on arrival (tail drop, so the
 *   supervisor keeps a gap-free beginning of the conversation), logged once, counted, and listed
 *   in the final report. At a few hundred bytes a turn the default cap holds hours of talk.
 *   The report itself lists the first `MAX_UNDELIVERED_DETAILS` undelivered requests and
 *   counts the rest.
 * - `close()` flushes with a deadline and then gives up: `FLUSH_DEADLINE_MS` (20 s) fits inside
 *   the job's shutdown window, since agents-js SIGKILLs a job process 60 s after it is told to
 *   close, and up to 15 s of that may go to waiting for the entry function. What is still
 *   queued at the deadline (and the request in flight, which may or may not have arrived) is
 *   listed in the report, with the last failure seen. The supervisor still ends such a call from
 *   LiveKit's `room_finished` webhook and delivers what it has.
 * - Consecutive transcript items waiting behind an outage go as one request (up to
 *   `TRANSCRIPT_BATCH_MAX_ITEMS`), so a backlog drains in a few requests once the supervisor is back.
 * - The ingest token is sent as `Authorization: Bearer …` and appears in no log line or report.
 */
import { Agent, request, type Dispatcher } from 'undici';
import type { CreateCallBody, EndCallBody, LeadBody, TranscriptBody } from '../supervisor/call-api.ts';
import { createLogger } from '../logging/logger.ts';
import { outcomeOfAnswer, outcomeOfTransportError, type AttemptOutcome } from './answer.ts';
import { reporterRetryDelayMs } from './backoff.ts';
import {
  AGENT_ERROR_CODES,
  CallsyncAgentError,
  UNDELIVERED_REASONS,
  type UndeliveredReason,
} from './errors.ts';

export const FLUSH_DEADLINE_MS = 20_000;
/** One request, connect to last byte of the answer. The supervisor answers from memory in milliseconds. */
export const REQUEST_TIMEOUT_MS = 5_000;
export const MAX_QUEUED_REQUESTS = 1_000;
export const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
export const TRANSCRIPT_BATCH_MAX_ITEMS = 50;
/** Well under the supervisor's 1 MiB body limit. */
export const TRANSCRIPT_BATCH_MAX_BYTES = 256 * 1024;
/** Of an answer we read at most this much (a callId or an error fits easily). */
export const ANSWER_READ_MAX_BYTES = 64 * 1024;
/** Undelivered requests listed one by one in the report; beyond this they are only counted. */
export const MAX_UNDELIVERED_DETAILS = 1_000;

export type TranscriptItemReport = TranscriptBody['items'][number];
export type RequestKind = 'create' | 'transcript' | 'lead' | 'end';

/** The pino subset the reporter logs through (a pino logger fits). */
export interface ReporterLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface UndeliveredReport {
  kind: RequestKind;
  /** The transcript item id or lead id, when the request has one. */
  ref?: string;
  reason: UndeliveredReason;
  /** The supervisor's error code (`INVALID_BODY`, `UNAUTHORIZED`…) or the last failure (`NETWORK_ERROR`, `TIMEOUT`). */
  code?: string;
  status?: number;
  message: string;
  /** Attempts made (0 when it was never sent). */
  attempts: number;
}

export interface ReporterReport {
  /** The supervisor's id for the call; undefined when the create never succeeded. */
  callId: string | undefined;
  /** Requests the supervisor acknowledged (a batch of n transcript items counts n). */
  delivered: number;
  /** What could not be delivered, in order (the first `MAX_UNDELIVERED_DETAILS`). */
  undelivered: UndeliveredReport[];
  /** How many requests could not be delivered, listed or not. */
  undeliveredCount: number;
}

export type ReporterEvent =
  | { type: 'created'; callId: string; status: number }
  | { type: 'delivered'; kind: RequestKind; count: number; status: number; attempts: number }
  | { type: 'retrying'; kind: RequestKind; attempt: number; delayMs: number; code: string; status?: number }
  | { type: 'undelivered'; report: UndeliveredReport };

export interface ReporterStats {
  /** Requests waiting, including the one in flight. */
  queued: number;
  /** Bytes of transcript items and leads waiting (what the bound counts). */
  queuedBytes: number;
  delivered: number;
  undelivered: number;
}

export interface ReporterOptions {
  /** The supervisor's root URL (`CALLSYNC_URL`), e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** `CALLSYNC_INGEST_TOKEN`: sent as `Authorization: Bearer <token>` when set. Never logged. */
  token?: string | undefined;
  logger?: ReporterLogger | undefined;
  /** An undici dispatcher to send through; by default the reporter owns an `Agent` and closes it on `close()`. */
  dispatcher?: Dispatcher | undefined;
  /** Deadline of one request, ms. Default `REQUEST_TIMEOUT_MS`. */
  requestTimeoutMs?: number | undefined;
  /** First retry wait, ms, doubling up to `retryMaxDelayMs`. Defaults in `backoff.ts`. */
  retryBaseDelayMs?: number | undefined;
  retryMaxDelayMs?: number | undefined;
  /** Transcript items + leads waiting, at most. Default `MAX_QUEUED_REQUESTS`. */
  maxQueuedRequests?: number | undefined;
  /** Their bytes (JSON), at most. Default `MAX_QUEUED_BYTES`. */
  maxQueuedBytes?: number | undefined;
  /** `close()`'s default deadline, ms. Default `FLUSH_DEADLINE_MS`. */
  flushDeadlineMs?: number | undefined;
  /** Observes what happens to each request (metrics, tests). Must not throw; errors are ignored. */
  onEvent?: ((event: ReporterEvent) => void) | undefined;
}

export interface CallReporter {
  /** The supervisor's id for the call, once the create was acknowledged. */
  readonly callId: string | undefined;
  /** Queues `POST /v1/calls`, ahead of anything queued so far. Only the first call counts. */
  startCall(body: CreateCallBody): void;
  addTranscriptItem(item: TranscriptItemReport): void;
  addLead(lead: LeadBody): void;
  /** Queues the end; later transcript items and leads are refused. Only the first call counts. */
  endCall(body?: EndCallBody): void;
  /** Resolves when nothing is waiting (everything so far delivered or given up on). */
  idle(): Promise<void>;
  stats(): ReporterStats;
  /**
   * Stops taking events, delivers what is queued until `deadlineMs` (default the reporter's
   * `flushDeadlineMs`), then gives up on the rest. Never rejects; safe to call twice (same promise).
   */
  close(options?: { deadlineMs?: number | undefined }): Promise<ReporterReport>;
}

type Entry = (
  | { kind: 'create'; body: CreateCallBody }
  | { kind: 'transcript'; body: TranscriptItemReport }
  | { kind: 'lead'; body: LeadBody }
  | { kind: 'end'; body: EndCallBody }
) & {
  bytes: number;
  attempts: number;
  lastFailure?: { code: string; message: string; status?: number | undefined } | undefined;
};

function refOf(entry: Entry): string | undefined {
  if (entry.kind === 'transcript') return entry.body.id;
  if (entry.kind === 'lead') return entry.body.leadId;
  return undefined;
}

function isBounded(entry: Entry): boolean {
  return entry.kind === 'transcript' || entry.kind === 'lead';
}

function defaultLogger(): ReporterLogger {
  return createLogger({ level: process.env.LOG_LEVEL ?? 'info' }).child({ component: 'callsync-reporter' });
}

/** The supervisor's root URL without a trailing slash; throws `AGENT_SUPERVISOR_URL_INVALID`. */
export function supervisorRoot(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new CallsyncAgentError(
      AGENT_ERROR_CODES.SUPERVISOR_URL_INVALID,
      'the callsync supervisor URL is not a URL',
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CallsyncAgentError(
      AGENT_ERROR_CODES.SUPERVISOR_URL_INVALID,
      `the callsync supervisor URL must be http(s), got ${url.protocol}`,
    );
  }
  return baseUrl.replace(/\/+$/, '');
}

/** Reads up to `maxBytes` of the answer as UTF-8; leaving the loop early destroys the rest. */
async function readCapped(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    total += chunk.length;
    if (total >= maxBytes) break;
  }
  return Buffer.concat(chunks, total).subarray(0, maxBytes).toString('utf8');
}

function headerText(value: string | string[] | undefined): string | null {
  if (Array.isArray(value)) return value[0] ?? null;
  return value ?? null;
}

export function createCallReporter(options: ReporterOptions): CallReporter {
  const root = supervisorRoot(options.baseUrl);
  const token = options.token === '' ? undefined : options.token;
  const logger = options.logger ?? defaultLogger();
  const requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const maxQueuedRequests = options.maxQueuedRequests ?? MAX_QUEUED_REQUESTS;
  const maxQueuedBytes = options.maxQueuedBytes ?? MAX_QUEUED_BYTES;
  const flushDeadlineMs = options.flushDeadlineMs ?? FLUSH_DEADLINE_MS;
  const ownDispatcher =
    options.dispatcher === undefined ? new Agent({ keepAliveTimeout: 10_000 }) : undefined;
  const dispatcher: Dispatcher = options.dispatcher ?? ownDispatcher!;

  const queue: Entry[] = [];
  let boundedCount = 0;
  let boundedBytes = 0;
  let started = false;
  let ended = false;
  let closed = false;
  let stopped = false;
  let callId: string | undefined;
  let proposedCallId: string | undefined;
  let createRefusal: { code: string; message: string } | undefined;
  let delivered = 0;
  const undelivered: UndeliveredReport[] = [];
  let undeliveredCount = 0;
  const undeliveredByReason: Partial<Record<UndeliveredReason, number>> = {};
  let unreachableSince: number | undefined;
  let warnedQueueFull = false;
  let closing: Promise<ReporterReport> | undefined;
  const stopController = new AbortController();
  let wake: (() => void) | undefined;
  const idleWaiters: (() => void)[] = [];

  /** The answer text, with the token scrubbed in case a proxy echoes request headers back. */
  function scrub(text: string): string {
    return token === undefined ? text : text.split(token).join('[redacted]');
  }

  function emit(event: ReporterEvent) {
    try {
      options.onEvent?.(event);
    } catch {
      // An observer must not break delivery.
    }
  }

  function giveUp(entry: Entry, reason: UndeliveredReason, message: string, failure = entry.lastFailure) {
    const ref = refOf(entry);
    const report: UndeliveredReport = {
      kind: entry.kind,
      ...(ref === undefined ? {} : { ref }),
      reason,
      ...(failure?.code === undefined ? {} : { code: failure.code }),
      ...(failure?.status === undefined ? {} : { status: failure.status }),
      message,
      attempts: entry.attempts,
    };
    undeliveredCount += 1;
    undeliveredByReason[reason] = (undeliveredByReason[reason] ?? 0) + 1;
    if (undelivered.length < MAX_UNDELIVERED_DETAILS) undelivered.push(report);
    emit({ type: 'undelivered', report });
  }

  function notifyIdleIfIdle() {
    if (queue.length > 0) return;
    for (const resolve of idleWaiters.splice(0)) resolve();
  }

  function poke() {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  }

  function dequeue(count: number): Entry[] {
    const removed = queue.splice(0, count);
    for (const entry of removed) {
      if (isBounded(entry)) {
        boundedCount -= 1;
        boundedBytes -= entry.bytes;
      }
    }
    return removed;
  }

  function enqueue(entry: Entry) {
    if (closed || (ended && entry.kind !== 'end')) {
      logger.debug(
        { kind: entry.kind, ref: refOf(entry) },
        'callsync: report after the end or close, not sent',
      );
      giveUp(entry, UNDELIVERED_REASONS.AFTER_CLOSE, 'reported after the call ended or the reporter closed');
      return;
    }
    if (createRefusal) {
      giveUp(entry, UNDELIVERED_REASONS.CALL_NOT_CREATED, `the call was not created: ${createRefusal.code}`, {
        code: createRefusal.code,
        message: createRefusal.message,
      });
      return;
    }
    if (isBounded(entry)) {
      if (boundedCount + 1 > maxQueuedRequests || boundedBytes + entry.bytes > maxQueuedBytes) {
        const fields = {
          kind: entry.kind,
          ref: refOf(entry),
          queued: boundedCount,
          queuedBytes: boundedBytes,
        };
        if (!warnedQueueFull) {
          warnedQueueFull = true;
          logger.warn(
            { ...fields, maxQueuedRequests, maxQueuedBytes },
            'callsync: report queue full (supervisor unreachable for long?); refusing new reports until it drains',
          );
        } else {
          logger.debug(fields, 'callsync: report queue full; report refused');
        }
        giveUp(entry, UNDELIVERED_REASONS.QUEUE_FULL, 'refused on arrival: the report queue was full');
        return;
      }
      boundedCount += 1;
      boundedBytes += entry.bytes;
    }
    queue.push(entry);
    poke();
  }

  function makeEntry<E extends Entry['kind']>(kind: E, body: Extract<Entry, { kind: E }>['body']): Entry {
    return { kind, body, bytes: Buffer.byteLength(JSON.stringify(body)), attempts: 0 } as Entry;
  }

  /** The head, plus the transcript items right behind it when the head is one. */
  function headBatch(): Entry[] {
    const head = queue[0]!;
    if (head.kind !== 'transcript') return [head];
    const batch = [head];
    let bytes = head.bytes;
    for (let index = 1; index < queue.length && batch.length < TRANSCRIPT_BATCH_MAX_ITEMS; index += 1) {
      const next = queue[index]!;
      if (next.kind !== 'transcript' || bytes + next.bytes > TRANSCRIPT_BATCH_MAX_BYTES) break;
      batch.push(next);
      bytes += next.bytes;
    }
    return batch;
  }

  function requestFor(batch: Entry[]): { path: string; body: unknown } {
    const head = batch[0]!;
    if (head.kind === 'create') return { path: '/v1/calls', body: head.body };
    const base = `/v1/calls/${encodeURIComponent(callId ?? '')}`;
    switch (head.kind) {
      case 'transcript':
        return { path: `${base}/transcript`, body: { items: batch.map((entry) => entry.body) } };
      case 'lead':
        return { path: `${base}/leads`, body: head.body };
      case 'end':
        return { path: `${base}/end`, body: head.body };
    }
  }

  async function attempt(batch: Entry[]): Promise<AttemptOutcome> {
    const { path, body } = requestFor(batch);
    const deadline = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      deadline.abort(new Error('callsync request deadline'));
    }, requestTimeoutMs);
    try {
      const response = await request(`${root}${path}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
        body: JSON.stringify(body),
        dispatcher,
        signal: AbortSignal.any([deadline.signal, stopController.signal]),
        headersTimeout: requestTimeoutMs,
        bodyTimeout: requestTimeoutMs,
      });
      let text: string;
      try {
        text = await readCapped(response.body, ANSWER_READ_MAX_BYTES);
      } finally {
        if (!response.body.destroyed) response.body.destroy();
      }
      return outcomeOfAnswer({
        status: response.statusCode,
        body: scrub(text),
        retryAfter: headerText(response.headers['retry-after']),
      });
    } catch (error) {
      return outcomeOfTransportError(error, timedOut);
    } finally {
      clearTimeout(timer);
    }
  }

  function pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        stopController.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      stopController.signal.addEventListener('abort', done, { once: true });
    });
  }

  function markReachable() {
    if (unreachableSince === undefined) return;
    logger.info(
      { unreachableForMs: Date.now() - unreachableSince, queued: queue.length },
      'callsync: supervisor reachable again; delivering the backlog',
    );
    unreachableSince = undefined;
  }

  function onDelivered(batch: Entry[], outcome: Extract<AttemptOutcome, { type: 'delivered' }>) {
    const head = batch[0]!;
    if (head.kind === 'create') {
      const answered = (outcome.body as { callId?: unknown } | null)?.callId;
      callId = typeof answered === 'string' && answered !== '' ? answered : proposedCallId;
      if (callId === undefined) {
        onRejected(batch, {
          type: 'rejected',
          code: 'BAD_ANSWER',
          message: 'the supervisor acknowledged the call without a callId',
          status: outcome.status,
        });
        return;
      }
      emit({ type: 'created', callId, status: outcome.status });
    }
    dequeue(batch.length);
    delivered += batch.length;
    markReachable();
    emit({
      type: 'delivered',
      kind: head.kind,
      count: batch.length,
      status: outcome.status,
      attempts: head.attempts,
    });
  }

  function onRejected(batch: Entry[], outcome: Extract<AttemptOutcome, { type: 'rejected' }>) {
    const head = batch[0]!;
    const failure = { code: outcome.code, message: outcome.message, status: outcome.status };
    markReachable();
    logger.error(
      {
        kind: head.kind,
        count: batch.length,
        status: outcome.status,
        code: outcome.code,
        reason: outcome.message,
      },
      'callsync: the supervisor refused a report; it will not be repeated',
    );
    for (const entry of dequeue(batch.length)) {
      entry.lastFailure = failure;
      giveUp(
        entry,
        UNDELIVERED_REASONS.REJECTED,
        `the supervisor answered ${outcome.status} ${outcome.code}: ${outcome.message}`,
      );
    }
    if (head.kind === 'create') {
      createRefusal = { code: outcome.code, message: outcome.message };
      for (const entry of dequeue(queue.length)) {
        giveUp(
          entry,
          UNDELIVERED_REASONS.CALL_NOT_CREATED,
          `the call was not created: ${outcome.code}`,
          failure,
        );
      }
    }
  }

  async function onRetry(batch: Entry[], outcome: Extract<AttemptOutcome, { type: 'retry' }>) {
    const head = batch[0]!;
    for (const entry of batch) {
      entry.lastFailure = { code: outcome.code, message: outcome.message, status: outcome.status };
    }
    const delayMs = reporterRetryDelayMs({
      attempt: head.attempts,
      random: Math.random(),
      retryAfterMs: outcome.retryAfterMs,
      baseMs: options.retryBaseDelayMs,
      maxMs: options.retryMaxDelayMs,
    });
    const fields = {
      kind: head.kind,
      attempt: head.attempts,
      code: outcome.code,
      status: outcome.status,
      delayMs,
    };
    if (unreachableSince === undefined) {
      unreachableSince = Date.now();
      logger.warn(
        { ...fields, queued: queue.length },
        'callsync: supervisor unavailable; queuing reports and retrying',
      );
    } else {
      logger.debug(fields, 'callsync: supervisor still unavailable');
    }
    emit({
      type: 'retrying',
      kind: head.kind,
      attempt: head.attempts,
      delayMs,
      code: outcome.code,
      ...(outcome.status === undefined ? {} : { status: outcome.status }),
    });
    await pause(delayMs);
  }

  async function pump(): Promise<void> {
    while (!stopped) {
      if (queue.length === 0) {
        notifyIdleIfIdle();
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        continue;
      }
      const batch = headBatch();
      for (const entry of batch) entry.attempts += 1;
      let outcome = await attempt(batch);
      if (stopped) return;
      const head = batch[0]!;
      if (head.kind === 'end' && outcome.type === 'rejected' && outcome.code === 'CALL_ALREADY_ENDED') {
        // An earlier attempt (whose answer we lost) or LiveKit's room_finished ended the call: done.
        outcome = { type: 'delivered', status: outcome.status, body: null };
      }
      if (outcome.type === 'delivered') onDelivered(batch, outcome);
      else if (outcome.type === 'rejected') onRejected(batch, outcome);
      else await onRetry(batch, outcome);
    }
  }

  function stop() {
    if (stopped) return;
    stopped = true;
    stopController.abort(new Error('callsync reporter closed'));
    poke();
  }

  function idle(): Promise<void> {
    if (queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => idleWaiters.push(resolve));
  }

  function report(): ReporterReport {
    return { callId, delivered, undelivered: [...undelivered], undeliveredCount };
  }

  function logSummary(deadlineMs: number) {
    const summary = report();
    if (summary.undeliveredCount === 0) {
      logger.info({ callId, delivered }, 'callsync: every report delivered');
      return;
    }
    logger.warn(
      {
        callId,
        delivered,
        undelivered: summary.undeliveredCount,
        byReason: { ...undeliveredByReason },
        deadlineMs,
        first: summary.undelivered.slice(0, 20),
      },
      `callsync: ${summary.undeliveredCount} report(s) could not be delivered to the supervisor`,
    );
  }

  async function closeDispatcher() {
    if (!ownDispatcher) return;
    try {
      await ownDispatcher.destroy();
    } catch {
      // Already closed or destroyed.
    }
  }

  return {
    get callId() {
      return callId;
    },

    startCall(body) {
      if (started) {
        logger.debug({ roomName: body.roomName }, 'callsync: startCall repeated; ignored');
        return;
      }
      if (closed) {
        logger.warn({ roomName: body.roomName }, 'callsync: startCall after close; ignored');
        return;
      }
      started = true;
      proposedCallId = body.callId;
      queue.unshift(makeEntry('create', body));
      void pump().catch((error: unknown) => {
        // A bug here must not reach the conversation; what is queued shows up in the close report.
        logger.error({ err: error }, 'callsync: reporter stopped unexpectedly');
      });
    },

    addTranscriptItem(item) {
      enqueue(makeEntry('transcript', item));
    },

    addLead(lead) {
      enqueue(makeEntry('lead', lead));
    },

    endCall(body = {}) {
      if (ended) return;
      enqueue(makeEntry('end', body));
      ended = true;
    },

    idle,

    stats() {
      return { queued: queue.length, queuedBytes: boundedBytes, delivered, undelivered: undeliveredCount };
    },

    close(closeOptions = {}) {
      if (closing) return closing;
      closed = true;
      const deadlineMs = closeOptions.deadlineMs ?? flushDeadlineMs;
      closing = (async () => {
        if (started && queue.length > 0) {
          let timer: NodeJS.Timeout | undefined;
          const deadline = new Promise<void>((resolve) => {
            timer = setTimeout(resolve, deadlineMs);
          });
          await Promise.race([idle(), deadline]);
          clearTimeout(timer);
        }
        stop();
        const reason = started ? UNDELIVERED_REASONS.DEADLINE : UNDELIVERED_REASONS.NOT_STARTED;
        for (const entry of dequeue(queue.length)) {
          const last = entry.lastFailure ? `; last attempt: ${entry.lastFailure.code}` : '';
          giveUp(
            entry,
            reason,
            started
              ? `not delivered within the ${deadlineMs} ms flush deadline (${entry.attempts} attempt(s)${last})`
              : 'the call was never started (no caller known)',
          );
        }
        notifyIdleIfIdle();
        await closeDispatcher();
        logSummary(deadlineMs);
        return report();
      })();
      return closing;
    },
  };
}
