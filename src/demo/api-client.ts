/**
 * The demo's only way into callsync: its public HTTP API, over undici, as a voice-agent job
 * or an operator would call it. An unexpected status is an error that names the request and
 * keeps callsync's answer, so a failed simulated call says exactly what was refused.
 *
 * With `retry` (the fleet demo), it sends again what an agent's reporter sends again: a `503`
 * (`CALL_OWNER_UNAVAILABLE` while a call is being taken over), the proxy's own
 * `502 {"error": "PROXY_…"}` and a broken connection (an instance killed under the request),
 * with the reporter's backoff (src/agent/backoff.ts, capped) until a deadline. Every request the
 * demo sends is safe to repeat (items and leads carry ids, a room has one call).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { request, type Dispatcher } from 'undici';
import { reporterRetryDelayMs, retryAfterToMs } from '../agent/backoff.ts';

export class DemoApiError extends Error {
  override readonly name = 'DemoApiError';
  readonly code = 'DEMO_API_STATUS';
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`${method} ${path} answered ${status}: ${body.slice(0, 300)}`);
  }
}

export interface CallsyncClient {
  readonly baseUrl: string;
  /** Attempts sent again, by why ("503 CALL_OWNER_UNAVAILABLE", "network UND_ERR_SOCKET"); with `retry`. */
  retried(): Record<string, number>;
  /** POSTs JSON; resolves with the parsed answer when the status is one of `expected`. */
  post(path: string, body: unknown, expected: readonly number[]): Promise<unknown>;
  /** GETs JSON; resolves with the parsed answer on 200. */
  get(path: string): Promise<unknown>;
  /** GETs text (the Prometheus exposition); resolves on 200. */
  getText(path: string): Promise<string>;
}

export interface CallsyncClientOptions {
  baseUrl: string;
  /** Sent as `Authorization: Bearer …` when callsync runs with `CALLSYNC_INGEST_TOKEN`. */
  ingestToken?: string | undefined;
  /** Send again what a reporter would (see above); absent: every answer is final. */
  retry?: { deadlineMs: number; maxDelayMs: number } | undefined;
  /** The connection(s) to send on; undici's global pool when absent. */
  dispatcher?: Dispatcher | undefined;
}

/** Why an answer or error is worth another attempt, or null when it is final. */
function retryReason(status: number, text: string): string | null {
  if (status !== 503 && status !== 502) return null;
  let code: unknown;
  try {
    code = (JSON.parse(text) as { error?: unknown }).error;
  } catch {
    code = undefined;
  }
  if (status === 503) return `503 ${typeof code === 'string' ? code : '(no code)'}`;
  // A 502 from callsync itself would be final; the proxy's own say a backend failed under it.
  return typeof code === 'string' && code.startsWith('PROXY_') ? `network ${code}` : null;
}

export function createCallsyncClient(options: CallsyncClientOptions): CallsyncClient {
  const authorization: Record<string, string> =
    options.ingestToken === undefined ? {} : { authorization: `Bearer ${options.ingestToken}` };

  const retried: Record<string, number> = {};

  async function sendOnce(method: 'GET' | 'POST', path: string, body: unknown) {
    const answer = await request(`${options.baseUrl}${path}`, {
      method,
      headers: {
        ...authorization,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      ...(options.dispatcher === undefined ? {} : { dispatcher: options.dispatcher }),
    });
    const retryAfter = answer.headers['retry-after'];
    const text = await answer.body.text();
    return {
      status: answer.statusCode,
      text,
      retryAfterMs: typeof retryAfter === 'string' ? retryAfterToMs(retryAfter) : undefined,
    };
  }

  async function send(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    expected: readonly number[],
  ): Promise<string> {
    const { retry } = options;
    if (retry === undefined) {
      const { status, text } = await sendOnce(method, path, body);
      if (!expected.includes(status)) throw new DemoApiError(method, path, status, text);
      return text;
    }
    const deadlineMs = Date.now() + retry.deadlineMs;
    for (let attempt = 1; ; attempt++) {
      let reason: string;
      let retryAfterMs: number | undefined;
      try {
        const answer = await sendOnce(method, path, body);
        const why = expected.includes(answer.status) ? null : retryReason(answer.status, answer.text);
        if (why === null || Date.now() >= deadlineMs) {
          if (!expected.includes(answer.status))
            throw new DemoApiError(method, path, answer.status, answer.text);
          return answer.text;
        }
        reason = why;
        retryAfterMs = answer.retryAfterMs;
      } catch (error) {
        if (error instanceof DemoApiError || Date.now() >= deadlineMs) throw error;
        const code = (error as { code?: unknown }).code;
        reason = `network ${typeof code === 'string' ? code : error instanceof Error ? error.name : 'error'}`;
      }
      retried[reason] = (retried[reason] ?? 0) + 1;
      await delay(
        reporterRetryDelayMs({ attempt, random: Math.random(), retryAfterMs, maxMs: retry.maxDelayMs }),
      );
    }
  }

  const parse = (text: string): unknown => (text === '' ? {} : JSON.parse(text));
  return {
    baseUrl: options.baseUrl,
    retried: () => ({ ...retried }),
    post: async (path, body, expected) => parse(await send('POST', path, body, expected)),
    get: async (path) => parse(await send('GET', path, undefined, [200])),
    getText: (path) => send('GET', path, undefined, [200]),
  };
}
