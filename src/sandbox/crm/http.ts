/**
 * Small `node:http` helpers for the CRM sandbox: JSON answers, draining and capped reading of
 * request bodies. A refused request's body is still read before answering, as real servers do,
 * so the client sees the answer rather than a connection torn down mid-upload.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type':
      typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/** `{"error": code, "message": …}`, the shape of every sandbox refusal. */
export function sendError(
  res: ServerResponse,
  status: number,
  error: string,
  message: string,
  extra?: object,
): void {
  sendJson(res, status, { error, message, ...extra });
}

/** Reads and discards the rest of the request body; resolves when it ended or the request died. */
export function drainRequest(req: IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    if (req.complete || req.destroyed) {
      resolve();
      return;
    }
    req.once('end', resolve);
    req.once('close', resolve);
    req.resume();
  });
}

export class BodyTooLargeError extends Error {
  constructor(readonly limitBytes: number) {
    super(`request body over ${limitBytes} bytes`);
  }
}

/**
 * Reads the whole body into memory, refusing more than `maxBytes`: past the cap the rest is read
 * and discarded, so the caller can still answer 413. Rejects if the client goes away.
 */
export function readBodyCapped(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (over) return;
      if (total > maxBytes) {
        over = true;
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () =>
      over ? reject(new BodyTooLargeError(maxBytes)) : resolve(Buffer.concat(chunks, total)),
    );
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new ClientGoneError());
    });
  });
}

/** The client disconnected before its request was complete: there is nobody left to answer. */
export class ClientGoneError extends Error {
  constructor() {
    super('the client went away before the request was complete');
  }
}

export function headerValue(req: IncomingMessage, name: string): string | null {
  const value = req.headers[name];
  if (Array.isArray(value)) return value[0] ?? null;
  return value ?? null;
}
