/**
 * One simulated call, played from both sides the way production sees it: LiveKit's side
 * through the emulator (the room, the SIP caller, the caller hanging up, the egress outcome)
 * and the voice-agent job's side through callsync's HTTP API only (`POST /v1/calls`, transcript
 * turns, the lead, `POST /end`). The CRM faults a call carries are queued on the sandbox just
 * before the call ends, so at least that call's own request meets them.
 *
 * The pacing gap between turns is simulation, not synchronisation: the only thing the call
 * waits for is the emulator's own event that its egress is recording, so the recording exists
 * before the call ends whatever the gap.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { EgressStatus } from '@livekit/protocol';
import { z } from 'zod';
import type { CrmFault, CrmSandbox, CrmSandboxEndpoint } from '../sandbox/crm/index.ts';
import type { LiveKitEmulator, RoomBehaviour } from '../sandbox/livekit/index.ts';
import type { CallsyncClient } from './api-client.ts';
import type { CallEnding, CallPlan, CrmFaultKind } from './call-plan.ts';

/** The persona config the CRM would hand the bot; callsync echoes its ids back in the call data. */
export const DEMO_PERSONA_CONFIG = {
  campaigns: [
    {
      _id: 'camp_demo_inbound_sales',
      client: 'client_demo',
      name: 'Inbound sales (demo)',
      voiceAgents: [{ _id: 'va_demo_asha', name: 'Asha' }],
    },
  ],
};

/** Our side of the SIP trunk, `sip.trunkPhoneNumber`. */
const DEMO_TRUNK_NUMBER = '+918035000100';
/** How long a call waits for its egress to record before ending anyway (and saying so). */
const EGRESS_ACTIVE_TIMEOUT_MS = 10_000;

export const CRM_FAULTS: Record<CrmFaultKind, { endpoint: CrmSandboxEndpoint; fault: CrmFault }> = {
  'upload-503': { endpoint: 'upload', fault: { status: 503 } },
  'upload-429': { endpoint: 'upload', fault: { status: 429, retryAfterSeconds: 1 } },
  'upload-reset': { endpoint: 'upload', fault: { reset: true } },
  'call-data-503': { endpoint: 'call-data', fault: { status: 503 } },
};

export interface CallRun {
  plan: CallPlan;
  /** Null when callsync never accepted the call. */
  callId: string | null;
  /** How the call actually ended; null when the simulation broke off before its end. */
  endedBy: CallEnding | null;
  /** What went wrong while driving the call (an API refusal, the emulator timing out). */
  error: string | null;
  warnings: string[];
}

export interface SimulateCallDeps {
  api: CallsyncClient;
  emulator: LiveKitEmulator;
  crm: CrmSandbox;
  /** Pause between transcript turns, in milliseconds. */
  turnGapMs: number;
  signal?: AbortSignal | undefined;
}

const createdAnswer = z.object({ callId: z.string().min(1) });

/** Resolves once the room's egress is recording (or has already gone past it). */
async function egressRecording(emulator: LiveKitEmulator, room: string, timeoutMs: number): Promise<void> {
  const deadlineMs = Date.now() + timeoutMs;
  // Checked and subscribed in the same tick, so an egress created in between is not missed.
  const [existing] = emulator.listEgress({ roomName: room });
  const egress =
    existing ??
    (await emulator.waitForEvent('egress:updated', ({ info }) => info.roomName === room, { timeoutMs })).info;
  await emulator.waitForEgress(egress.egressId, (info) => info.status !== EgressStatus.EGRESS_STARTING, {
    timeoutMs: Math.max(1, deadlineMs - Date.now()),
  });
}

function roomBehaviourOf(plan: CallPlan): RoomBehaviour {
  return {
    recordingSeconds: plan.recordingSeconds,
    activateAfterMs: plan.activateAfterMs,
    finalizeAfterMs: plan.finalizeAfterMs,
    ...(plan.egressOutcome === 'failed'
      ? { egressOutcome: 'failed' as const, failure: { error: 'demo: encoder pipeline frozen' } }
      : {}),
  };
}

export async function simulateCall(plan: CallPlan, deps: SimulateCallDeps): Promise<CallRun> {
  const { api, emulator, crm } = deps;
  const run: CallRun = { plan, callId: null, endedBy: null, error: null, warnings: [] };
  const room = plan.roomName;
  try {
    emulator.setRoomBehaviour(room, roomBehaviourOf(plan));
    // As a SIP dispatch rule would: the room, the caller, and the agent dispatched into it.
    emulator.createRoom({ name: room });
    emulator.startSipCall({
      room,
      callerNumber: plan.callerNumber,
      trunkNumber: DEMO_TRUNK_NUMBER,
      attributes: { 'sip.ruleID': 'SDR_demo_inbound' },
    });
    const answeredAtMs = Date.now();
    // The call "started" recordingSeconds ago, so its duration matches its recording.
    const startedAtMs = answeredAtMs - plan.recordingSeconds * 1000;
    const { callId } = createdAnswer.parse(
      await api.post(
        '/v1/calls',
        {
          roomName: room,
          callerNumber: plan.callerNumber,
          config: DEMO_PERSONA_CONFIG,
          direction: 'inbound',
          startedAt: new Date(startedAtMs).toISOString(),
        },
        // 200: the room's call already exists, when a request whose answer was lost (a fleet
        // instance killed under it) is sent again; each demo room is new, so never otherwise.
        [201, 200],
      ),
    );
    run.callId = callId;
    const recording = egressRecording(emulator, room, EGRESS_ACTIVE_TIMEOUT_MS).then(
      () => undefined,
      (error: unknown) => run.warnings.push(`egress not recording: ${String(error)}`),
    );

    for (const [turnIndex, turn] of plan.turns.entries()) {
      if (deps.turnGapMs > 0) await delay(deps.turnGapMs, undefined, { signal: deps.signal });
      const timestamp = new Date(startedAtMs + turn.position * plan.recordingSeconds * 1000).toISOString();
      await api.post(
        `/v1/calls/${callId}/transcript`,
        {
          items: [
            {
              id: turn.id,
              role: turn.role,
              content: turn.content,
              timestamp,
              transcriptConfidence: turn.transcriptConfidence,
            },
          ],
        },
        [202],
      );
      if (plan.lead?.afterTurn === turnIndex) {
        await api.post(
          `/v1/calls/${callId}/leads`,
          { leadId: plan.lead.leadId, data: plan.lead.data },
          [202],
        );
      }
    }
    await recording;

    if (plan.crmFault !== null) {
      const { endpoint, fault } = CRM_FAULTS[plan.crmFault];
      crm.injectFaults(endpoint, [fault]);
    }
    if (plan.ending === 'agent-end') {
      await api.post(
        `/v1/calls/${callId}/end`,
        { endedAt: new Date().toISOString(), status: 'completed', reason: 'agent said goodbye' },
        [202],
      );
    }
    // The agent hangs up the SIP leg after `end`; otherwise the caller does, and callsync
    // learns of the end only from LiveKit's room_finished, a departure timeout later.
    emulator.hangUp({ room });
    run.endedBy = plan.ending;
  } catch (error) {
    run.error = error instanceof Error ? error.message : String(error);
    if (emulator.getRoom(room)) emulator.hangUp({ room });
  }
  return run;
}
