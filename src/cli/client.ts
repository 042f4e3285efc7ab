/**
 * The operator API as the CLI calls it (`src/http/server.ts`, operator routes), over undici.
 * Configured by `CALLSYNC_URL` and `CALLSYNC_ADMIN_TOKEN` (else `CALLSYNC_INGEST_TOKEN`), as
 * the server picks its operator token.
 */
import { request } from 'undici';

export const CALLSYNC_URL_DEFAULT = 'http://127.0.0.1:8080';
/** A request to callsync that gets no answer in this long fails (the API answers in milliseconds). */
export const API_REQUEST_TIMEOUT_MS = 15_000;

/** An answer that is not 2xx, or no answer: printed as one line, `CODE: message`. */
export class CliApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number | undefined,
  ) {
    super(message);
  }

  get line(): string {
    return `${this.code}: ${this.message}`;
  }
}

export interface ApiClientSettings {
  baseUrl: string;
  token: string | undefined;
}

export function apiSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): ApiClientSettings {
  const token = env.CALLSYNC_ADMIN_TOKEN || env.CALLSYNC_INGEST_TOKEN || undefined;
  return { baseUrl: (env.CALLSYNC_URL || CALLSYNC_URL_DEFAULT).replace(/\/+$/, ''), token };
}

export class ApiClient {
  constructor(readonly settings: ApiClientSettings) {}

  get<T>(path: string, query: Record<string, string | number | undefined> = {}): Promise<T> {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) search.set(key, String(value));
    const suffix = search.size === 0 ? '' : `?${search.toString()}`;
    return this.#send<T>('GET', `${path}${suffix}`);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.#send<T>('POST', path, body);
  }

  async #send<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const url = `${this.settings.baseUrl}${path}`;
    const headers: Record<string, string> = {};
    if (this.settings.token) headers.authorization = `Bearer ${this.settings.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let answer;
    try {
      answer = await request(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: API_REQUEST_TIMEOUT_MS,
        bodyTimeout: API_REQUEST_TIMEOUT_MS,
      });
    } catch (error) {
      const reason = error instanceof Error ? error.message || error.name : String(error);
      throw new CliApiError('UNREACHABLE', `${method} ${url}: ${reason} (is CALLSYNC_URL right?)`, undefined);
    }
    const text = await answer.body.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (answer.statusCode >= 200 && answer.statusCode < 300) return parsed as T;
    const error = parsed as { error?: unknown; message?: unknown } | undefined;
    throw new CliApiError(
      typeof error?.error === 'string' ? error.error : `HTTP_${answer.statusCode}`,
      typeof error?.message === 'string' ? error.message : `${method} ${path} answered ${answer.statusCode}`,
      answer.statusCode,
    );
  }
}
