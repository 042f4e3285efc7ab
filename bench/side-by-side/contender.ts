/** What the bench needs of each side: a process to measure, and how the voice agent talks to it. */
import type { BenchCall } from './plan.ts';
import type { LoopDelay } from './stats.ts';

export type ContenderName = 'callsync' | 'baseline';

export interface Contender {
  readonly name: ContenderName;
  /** The operating-system processes whose CPU and memory are measured (summed). */
  readonly pids: readonly number[];
  /** The call exists in its room: the agent's job starts (callsync: `POST /v1/calls`). */
  startCall(call: BenchCall, startedAtMs: number): Promise<void>;
  /** The agent's side of the conversation (callsync: one `POST /transcript` per turn). */
  reportTurns(call: BenchCall, startedAtMs: number): Promise<void>;
  /** The agent says goodbye (callsync: `POST /end`); resolves once accepted. */
  endCall(call: BenchCall, startedAtMs: number, endedAtMs: number): Promise<void>;
  /** The `callDetails.callId` the CRM will see for this room; after `startCall`. */
  crmCallIdOf(call: BenchCall): string;
  /** Event-loop delay since the previous call of this (the first call starts the window). */
  eventLoopDelay(): Promise<LoopDelay>;
  /** Stops the process (SIGTERM) and waits for it. */
  close(): Promise<void>;
}

/** The persona config the agent gets from the CRM, as in the demo (src/demo/simulate-call.ts). */
export const BENCH_PERSONA_CONFIG = {
  campaigns: [
    {
      _id: 'camp_bench',
      client: 'client_bench',
      name: 'Bench',
      voiceAgents: [{ _id: 'va_bench', name: 'Asha' }],
    },
  ],
};
