/**
 * callsync's HTTP API as the end-to-end tests speak it, in-process (`callsync-harness.ts`) or
 * to a child process (`child-callsync.ts`): one request helper, the persona config calls are
 * created with together with what the CRM document must then say about it, the SIP caller's
 * number, and timestamps within a call.
 */
import { request } from 'undici';

export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
}

export interface ApiRequestOptions {
  /** Sent as `Authorization: Bearer …`. */
  token?: string | undefined;
  /** Over the helper's own (authorization, content type). */
  headers?: Record<string, string>;
  /** A fresh connection for this request: a kept-alive socket may belong to a killed process. */
  reset?: boolean;
}

/** `method url+path` with `body` (JSON, or a string sent as it is); the answer, its JSON parsed. */
export async function callsyncApi(
  url: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  options: ApiRequestOptions = {},
): Promise<ApiAnswer> {
  const answer = await request(`${url}${path}`, {
    method,
    ...(options.reset === true ? { reset: true } : {}),
    headers: {
      ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...options.headers,
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await answer.body.text();
  return { status: answer.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** The persona config (`POST /v1/calls` `config`) of the end-to-end calls. */
export const PERSONA_CONFIG = {
  campaigns: [{ _id: 'camp_e2e', client: 'client_e2e', voiceAgents: [{ _id: 'va_e2e' }] }],
};

/** The SIP caller the end-to-end calls come from. */
export const CALLER_NUMBER = '+918655066243';

/**
 * Timestamps within a call that started `startedSecondsAgo` before now (whole seconds, taken
 * once): `at(s)` is `s` seconds after its start, as ISO 8601. A minute back is recent enough for
 * the maximum call duration and leaves room for every item before now.
 */
export function callTimes(startedSecondsAgo = 60): { startMs: number; at: (seconds: number) => string } {
  const startMs = Math.floor(Date.now() / 1000) * 1000 - startedSecondsAgo * 1000;
  return { startMs, at: (seconds) => new Date(startMs + seconds * 1000).toISOString() };
}

/** What the CRM document of a call created with `PERSONA_CONFIG` says about its persona. */
export const PERSONA_DOCUMENT = {
  campaignId: 'camp_e2e',
  voiceAgentId: 'va_e2e',
  client: 'client_e2e',
};
