/**
 * The straight-line baseline (bench/baseline/) as its own process, started with tsx (it is
 * bench code, not compiled; its start-up is outside the measured window). The agent's side
 * posts the call's start and, at the end, the transcript it kept in memory.
 */
import { request } from 'undici';
import { freePort } from '../../src/sandbox/free-port.ts';
import { agentConnections } from './agent-connections.ts';
import { startReadyChildProcess } from './child-process.ts';
import { BENCH_PERSONA_CONFIG, type Contender } from './contender.ts';
import type { BenchCall } from './plan.ts';
import type { LoopDelay } from './stats.ts';
import { CRM_API_KEY, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, type BenchSandboxes } from './sandboxes.ts';

const READY_TIMEOUT_MS = 30_000;

export async function startBaselineContender(sandboxes: BenchSandboxes): Promise<Contender> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = await startReadyChildProcess(
    ['--import', 'tsx', 'bench/baseline/main.ts'],
    {
      LIVEKIT_URL: sandboxes.liveKitUrl,
      LIVEKIT_API_KEY,
      LIVEKIT_API_SECRET,
      CRM_BASE_URL: sandboxes.crmUrl,
      CRM_API_KEY,
      BASELINE_PORT: String(port),
    },
    `${url}/healthz`,
    READY_TIMEOUT_MS,
  );

  // Each agent on its own connection, as each agent job is a process of its own.
  const agents = agentConnections(url);
  async function post(call: BenchCall, path: string, body: unknown, expected: number): Promise<void> {
    const answer = await request(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      dispatcher: agents.of(call.roomName),
    });
    const text = await answer.body.text();
    if (answer.statusCode !== expected) {
      throw new Error(`baseline ${path} answered ${answer.statusCode}: ${text}`);
    }
  }

  return {
    name: 'baseline',
    pids: [child.pid],
    startCall: (call, startedAtMs) =>
      post(
        call,
        '/calls',
        {
          roomName: call.roomName,
          callerNumber: call.callerNumber,
          startedAt: new Date(startedAtMs).toISOString(),
          config: BENCH_PERSONA_CONFIG,
        },
        201,
      ),
    // The agent keeps the conversation in its own memory: nothing to send until the end.
    reportTurns: () => Promise.resolve(),
    endCall: (call, startedAtMs, endedAtMs) =>
      post(
        call,
        '/calls/end',
        {
          roomName: call.roomName,
          endedAt: new Date(endedAtMs).toISOString(),
          status: 'completed',
          transcript: call.turns.map((turn) => ({
            role: turn.role,
            content: turn.content,
            timestamp: new Date(startedAtMs + turn.offsetMs).toISOString(),
            transcriptConfidence: turn.transcriptConfidence,
          })),
        },
        202,
      ),
    crmCallIdOf: (call: BenchCall) => call.roomName,
    async eventLoopDelay() {
      const answer = await fetch(`${url}/event-loop`);
      return (await answer.json()) as LoopDelay;
    },
    async close() {
      await agents.close();
      await child.stop();
    },
  };
}
