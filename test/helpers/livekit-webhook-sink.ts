/**
 * A webhook receiver for LiveKit emulator tests: a real HTTP server on 127.0.0.1:0 that keeps
 * every delivery's raw body and headers, so tests verify signatures over the exact bytes with
 * the SDK's WebhookReceiver. `next()` hands deliveries out in arrival order and waits for one
 * if none is pending; `respond` scripts the answer (e.g. a 500 to provoke a retry).
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedWebhook {
  method: string;
  rawBody: string;
  authorization: string | undefined;
  contentType: string | undefined;
  userAgent: string | undefined;
}

export interface WebhookSink {
  url: string;
  /** Every delivery so far, in arrival order. */
  readonly received: readonly ReceivedWebhook[];
  /** The next delivery not yet handed out by `next()`. */
  next(options?: { timeoutMs?: number }): Promise<ReceivedWebhook>;
  close(): Promise<void>;
}

const NEXT_TIMEOUT_MS = 10_000;

export async function startWebhookSink(
  options: { respond?: (delivery: ReceivedWebhook, index: number) => number } = {},
): Promise<WebhookSink> {
  const received: ReceivedWebhook[] = [];
  let handedOut = 0;
  const waiters: (() => void)[] = [];

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const delivery: ReceivedWebhook = {
        method: req.method ?? '',
        rawBody: Buffer.concat(chunks).toString('utf8'),
        authorization: req.headers.authorization,
        contentType: req.headers['content-type'],
        userAgent: req.headers['user-agent'],
      };
      const index = received.length;
      received.push(delivery);
      res.writeHead(options.respond?.(delivery, index) ?? 200).end();
      for (const wake of waiters.splice(0)) wake();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/webhooks`,
    received,
    async next({ timeoutMs = NEXT_TIMEOUT_MS } = {}) {
      const deadline = Date.now() + timeoutMs;
      while (handedOut >= received.length) {
        const remainingMs = deadline - Date.now();
        if (remainingMs <= 0) throw new Error(`no webhook delivery within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, remainingMs);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return received[handedOut++]!;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
