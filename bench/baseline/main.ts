/**
 * The straight-line baseline as its own process, for the side-by-side bench
 * (bench/side-by-side/): the design note's flow (flow.ts) behind a tiny HTTP face standing in
 * for the voice agent's own process, which would call it in-process.
 *
 * `POST /calls` (CallStart) starts the egress and answers 201 once it is started;
 * `POST /calls/end` (CallEnd, the transcript the agent kept in memory) answers 202 at once and
 * runs the end-of-call steps; `GET /healthz`; `GET /stats` counts delivered and lost calls;
 * `GET /event-loop` is `perf_hooks.monitorEventLoopDelay` since the previous read (then reset).
 *
 * Environment: LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, CRM_BASE_URL, CRM_API_KEY,
 * BASELINE_PORT. Stops on SIGTERM/SIGINT.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createFlow, type CallEnd, type CallStart } from './flow.ts';
import { SANDBOX_LISTEN_BACKLOG } from '../../src/sandbox/listen-backlog.ts';

/** prom-client's default resolution, so both sides sample the loop alike. */
const EVENT_LOOP_RESOLUTION_MS = 10;
const NS_PER_MS = 1e6;

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`baseline: ${name} is not set`);
  return value;
}

const flow = createFlow({
  liveKitUrl: required('LIVEKIT_URL'),
  liveKitApiKey: required('LIVEKIT_API_KEY'),
  liveKitApiSecret: required('LIVEKIT_API_SECRET'),
  crmBaseUrl: required('CRM_BASE_URL'),
  crmApiKey: required('CRM_API_KEY'),
});
const loopDelay = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
loopDelay.enable();
const counts = { delivered: 0, lost: 0 };

async function readJson<T>(req: IncomingMessage): Promise<T> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const route = `${req.method ?? ''} ${req.url ?? ''}`;
  if (route === 'POST /calls') {
    await flow.start(await readJson<CallStart>(req));
    send(res, 201, {});
  } else if (route === 'POST /calls/end') {
    const call = await readJson<CallEnd>(req);
    send(res, 202, {});
    counts[(await flow.end(call)) ? 'delivered' : 'lost'] += 1;
  } else if (route === 'GET /healthz') {
    send(res, 200, { ok: true });
  } else if (route === 'GET /stats') {
    send(res, 200, counts);
  } else if (route === 'GET /event-loop') {
    send(res, 200, {
      p50Ms: loopDelay.percentile(50) / NS_PER_MS,
      p99Ms: loopDelay.percentile(99) / NS_PER_MS,
      maxMs: loopDelay.max / NS_PER_MS,
    });
    loopDelay.reset();
  } else {
    send(res, 404, { error: 'not_found' });
  }
}

const server = createServer((req, res) => {
  handle(req, res).catch((error: unknown) => {
    if (!res.headersSent) send(res, 500, { error: String(error) });
  });
});
// As callsync listens: a burst of ends must not lose SYNs.
server.listen(Number(required('BASELINE_PORT')), '127.0.0.1', SANDBOX_LISTEN_BACKLOG);
await once(server, 'listening');
console.log(`baseline listening on port ${required('BASELINE_PORT')}`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
