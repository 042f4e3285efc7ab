/**
 * callsync as `npm start` runs it: `node dist/main.js` (run `npm run build` first), on SQLite in
 * the run's temp dir, the recordings on the volume it shares with the emulator, LiveKit's
 * webhooks pointed at it. The agent's side goes through its HTTP API as in the demo
 * (src/demo/simulate-call.ts); event-loop delay is prom-client's `nodejs_eventloop_lag_*` on
 * `/metrics`, whose histogram restarts at every scrape.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createCallsyncClient } from '../../src/demo/api-client.ts';
import { sampleValue } from '../../src/demo/prometheus-text.ts';
import { freePort } from '../../src/sandbox/free-port.ts';
import { REPO_ROOT, startChildProcess } from './child-process.ts';
import { BENCH_PERSONA_CONFIG, type Contender } from './contender.ts';
import type { BenchCall } from './plan.ts';
import { CRM_API_KEY, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, type BenchSandboxes } from './sandboxes.ts';

const READY_TIMEOUT_MS = 30_000;
const SECONDS_TO_MS = 1_000;

export async function startCallsyncContender(
  sandboxes: BenchSandboxes,
  options: { logLevel: string; cpuProfDir: string | null },
): Promise<Contender> {
  const entry = join(REPO_ROOT, 'dist', 'main.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\` first`);
  const port = await freePort();
  const profile = options.cpuProfDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir];
  const child = startChildProcess([...profile, 'dist/main.js'], {
    LIVEKIT_URL: sandboxes.liveKitUrl,
    LIVEKIT_API_KEY,
    LIVEKIT_API_SECRET,
    CRM_BASE_URL: sandboxes.crmUrl,
    CRM_API_KEY,
    CALLSYNC_EGRESS_STORAGE: 'local',
    CALLSYNC_RECORDINGS_DIR: sandboxes.recordingsDir,
    CALLSYNC_STORE: `sqlite:${join(sandboxes.dir, 'callsync.db')}`,
    CALLSYNC_HOST: '127.0.0.1',
    CALLSYNC_PORT: String(port),
    LOG_LEVEL: options.logLevel,
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await child.waitReady(`${url}/readyz`, READY_TIMEOUT_MS);
  } catch (error) {
    await child.stop();
    throw error;
  }
  sandboxes.emulator.addWebhookUrl(`${url}/livekit/webhook`);
  const api = createCallsyncClient({ baseUrl: url });
  const callIds = new Map<string, string>();
  const callIdOf = (call: BenchCall) => {
    const callId = callIds.get(call.roomName);
    if (callId === undefined) throw new Error(`no callsync call for ${call.roomName}`);
    return callId;
  };

  return {
    name: 'callsync',
    pid: child.pid,
    async startCall(call, startedAtMs) {
      const answer = (await api.post(
        '/v1/calls',
        {
          roomName: call.roomName,
          callerNumber: call.callerNumber,
          config: BENCH_PERSONA_CONFIG,
          direction: 'inbound',
          startedAt: new Date(startedAtMs).toISOString(),
        },
        [201],
      )) as { callId: string };
      callIds.set(call.roomName, answer.callId);
    },
    async reportTurns(call, startedAtMs) {
      for (const turn of call.turns) {
        await api.post(
          `/v1/calls/${callIdOf(call)}/transcript`,
          {
            items: [
              {
                id: turn.id,
                role: turn.role,
                content: turn.content,
                timestamp: new Date(startedAtMs + turn.offsetMs).toISOString(),
                transcriptConfidence: turn.transcriptConfidence,
              },
            ],
          },
          [202],
        );
      }
    },
    async endCall(call, _startedAtMs, endedAtMs) {
      await api.post(
        `/v1/calls/${callIdOf(call)}/end`,
        { endedAt: new Date(endedAtMs).toISOString(), status: 'completed', reason: 'agent said goodbye' },
        [202],
      );
    },
    crmCallIdOf: callIdOf,
    async eventLoopDelay() {
      const text = await api.getText('/metrics');
      return {
        p50Ms: sampleValue(text, 'nodejs_eventloop_lag_p50_seconds') * SECONDS_TO_MS,
        p99Ms: sampleValue(text, 'nodejs_eventloop_lag_p99_seconds') * SECONDS_TO_MS,
        maxMs: sampleValue(text, 'nodejs_eventloop_lag_max_seconds') * SECONDS_TO_MS,
      };
    },
    close: () => child.stop(),
  };
}
