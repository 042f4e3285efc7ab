/**
 * The demo's only way into callsync: its public HTTP API, over undici, as a voice-agent job
 * or an operator would call it. An unexpected status is an error that names the request and
 * keeps callsync's answer, so a failed simulated call says exactly what was refused.
 */
import { request } from 'undici';

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
}

export function createCallsyncClient(options: CallsyncClientOptions): CallsyncClient {
  const authorization: Record<string, string> =
    options.ingestToken === undefined ? {} : { authorization: `Bearer ${options.ingestToken}` };

  async function send(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    expected: readonly number[],
  ): Promise<string> {
    const answer = await request(`${options.baseUrl}${path}`, {
      method,
      headers: {
        ...authorization,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await answer.body.text();
    if (!expected.includes(answer.statusCode)) throw new DemoApiError(method, path, answer.statusCode, text);
    return text;
  }

  const parse = (text: string): unknown => (text === '' ? {} : JSON.parse(text));
  return {
    baseUrl: options.baseUrl,
    post: async (path, body, expected) => parse(await send('POST', path, body, expected)),
    get: async (path) => parse(await send('GET', path, undefined, [200])),
    getText: (path) => send('GET', path, undefined, [200]),
  };
}
