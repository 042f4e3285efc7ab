/**
 * The side-by-side call plan: N plain inbound calls, each with a short conversation (the demo's
 * seeded conversations, src/demo/call-plan.ts, cut to a few turns), an egress that completes and
 * no lead, all ended together. Both contenders get the very same plan.
 */
import { planCalls } from '../../src/demo/call-plan.ts';

/** Turns per conversation: short calls, so the burst measures delivery, not ingest. */
const TURNS_PER_CALL = 4;
/** Length of each emulated recording (the emulator writes a file of that length). */
const RECORDING_SECONDS = 10;

export interface BenchTurn {
  id: string;
  role: 'user' | 'assistant';
  content: string;
  transcriptConfidence: number | null;
  /** Offset from the call's start, in milliseconds. */
  offsetMs: number;
}

export interface BenchCall {
  roomName: string;
  callerNumber: string;
  recordingSeconds: number;
  /** Emulated egress STARTING → ACTIVE and ENDING → COMPLETE delays. */
  activateAfterMs: number;
  finalizeAfterMs: number;
  turns: BenchTurn[];
}

export function planBenchCalls(count: number, seed: number): BenchCall[] {
  return planCalls(count, seed).map((plan) => ({
    roomName: `bench-${seed}-${plan.roomName}`,
    callerNumber: plan.callerNumber,
    recordingSeconds: RECORDING_SECONDS,
    activateAfterMs: plan.activateAfterMs,
    finalizeAfterMs: plan.finalizeAfterMs,
    turns: plan.turns.slice(0, TURNS_PER_CALL).map((turn) => ({
      id: turn.id,
      role: turn.role,
      content: turn.content,
      transcriptConfidence: turn.transcriptConfidence,
      offsetMs: Math.round(turn.position * RECORDING_SECONDS * 1000),
    })),
  }));
}
