/**
 * The demo's batch of calls, decided up front and deterministically (a seeded PRNG, no
 * `Math.random`), so two runs push the same calls and a failure can be replayed.
 *
 * Every call is a complete inbound call, and some of them also carry a fault. Kinds follow a
 * 16-call cycle. Its first eight slots hold one of each kind, so any batch of 8 or more covers
 * them all: ended by the agent (`POST /end`), ended by the caller hanging up (LiveKit
 * `room_finished`, no `end`), an egress that fails (partial: call data without a recording), and
 * one CRM fault per call that callsync must retry through (upload 503, upload 429 with
 * `Retry-After: 1`, upload connection reset, call-data 503). Over 50 calls that makes 6 hang-ups,
 * 3 failed egresses and 13 CRM faults. Independently, 40 % of the calls create a lead.
 */
import { conversationFor, type Conversation } from './conversations.ts';

export type CallEnding = 'agent-end' | 'caller-hang-up';
export type CrmFaultKind = 'upload-503' | 'upload-429' | 'upload-reset' | 'call-data-503';
export type PlannedOutcome = 'delivered' | 'partial';

export interface PlannedTurn {
  id: string;
  role: 'user' | 'assistant';
  content: string;
  /** Where the turn falls in the call, in [0, 1): the timestamp is derived when the call starts. */
  position: number;
  /** Speech-to-text confidence of the caller's turns; null for the bot's. */
  transcriptConfidence: number | null;
}

export interface CallPlan {
  index: number;
  roomName: string;
  callerNumber: string;
  /** Length of the recorded audio, and of the call as the CRM sees it. */
  recordingSeconds: number;
  /** Emulated egress STARTING → ACTIVE delay for this room. */
  activateAfterMs: number;
  /** Emulated egress ENDING → final delay for this room. */
  finalizeAfterMs: number;
  ending: CallEnding;
  egressOutcome: 'complete' | 'failed';
  crmFault: CrmFaultKind | null;
  topic: string;
  turns: PlannedTurn[];
  /** Set when the bot creates a lead: posted after the caller gave their name. */
  lead: { leadId: string; data: Record<string, unknown>; afterTurn: number } | null;
  /** What callsync should report once the CRM has the call. */
  expectedOutcome: PlannedOutcome;
}

interface Slot {
  ending: CallEnding;
  egressOutcome: 'complete' | 'failed';
  crmFault: CrmFaultKind | null;
}

const NORMAL: Slot = { ending: 'agent-end', egressOutcome: 'complete', crmFault: null };
const CYCLE: readonly Slot[] = [
  NORMAL,
  { ...NORMAL, crmFault: 'upload-503' },
  { ...NORMAL, ending: 'caller-hang-up' },
  { ...NORMAL, egressOutcome: 'failed' },
  { ...NORMAL, crmFault: 'upload-429' },
  { ...NORMAL, crmFault: 'upload-reset' },
  { ...NORMAL, crmFault: 'call-data-503' },
  { ...NORMAL, ending: 'caller-hang-up' },
  ...Array.from({ length: 8 }, () => NORMAL),
];

export const RECORDING_SECONDS_MIN = 20;
export const RECORDING_SECONDS_MAX = 180;
export const EGRESS_DELAY_MS_MIN = 200;
export const EGRESS_DELAY_MS_MAX = 800;

/** mulberry32: a tiny, well-mixed 32-bit PRNG, enough for picking demo data. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function hex(random: () => number, length: number): string {
  return Array.from({ length }, () => Math.floor(random() * 16).toString(16)).join('');
}

export function planCalls(count: number, seed = 1): CallPlan[] {
  const random = seededRandom(seed);
  const between = (min: number, max: number) => min + random() * (max - min);
  return Array.from({ length: count }, (_, index): CallPlan => {
    const slot = CYCLE[index % CYCLE.length]!;
    const roomName = `demo-call-${String(index + 1).padStart(3, '0')}`;
    const conversation: Conversation = conversationFor({ script: random(), name: random(), city: random() });
    const turns = conversation.turns.map((turn, turnIndex): PlannedTurn => ({
      id: `${roomName}-item-${turnIndex + 1}`,
      role: turn.role,
      content: turn.content,
      position: (turnIndex + 0.5 + random() * 0.4) / (conversation.turns.length + 1),
      transcriptConfidence: turn.role === 'user' ? Math.round(between(0.82, 0.99) * 100) / 100 : null,
    }));
    // The caller says their name in the first user turn that contains it.
    const name = String(conversation.leadData.name);
    const nameTurn = Math.max(
      0,
      turns.findIndex((turn) => turn.role === 'user' && turn.content.includes(name)),
    );
    const withLead = index % 5 === 0 || index % 5 === 2;
    return {
      index,
      roomName,
      callerNumber: `+919${String(Math.floor(random() * 1_000_000_000)).padStart(9, '0')}`,
      recordingSeconds: Math.round(between(RECORDING_SECONDS_MIN, RECORDING_SECONDS_MAX) * 10) / 10,
      activateAfterMs: Math.round(between(EGRESS_DELAY_MS_MIN, EGRESS_DELAY_MS_MAX)),
      finalizeAfterMs: Math.round(between(EGRESS_DELAY_MS_MIN, EGRESS_DELAY_MS_MAX)),
      ...slot,
      topic: conversation.topic,
      turns,
      lead: withLead ? { leadId: hex(random, 24), data: conversation.leadData, afterTurn: nameTurn } : null,
      expectedOutcome: slot.egressOutcome === 'failed' ? 'partial' : 'delivered',
    };
  });
}
