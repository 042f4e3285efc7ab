/**
 * End to end: a real voice.AgentSession (text mode, FakeLLM, the example agent's
 * `create_lead` tool) reports its call through the callsync wiring (`attachToSession`, the real
 * reporter over HTTP) to the real supervisor (`createCallsyncApp`, SQLite), which records the
 * call through the LiveKit emulator and delivers it to the CRM sandbox.
 *
 * What only this test can show: the facts the agent side takes from the job (SIP caller number,
 * direction from the dispatch rule, persona config from the metadata, room sid as session id)
 * and from the session (every turn, the lead from the tool) are what the real supervisor accepts
 * and what lands in the CRM document, next to the recording LiveKit made; and that the agent's
 * at-least-once reporting survives the supervisor restarting mid-call (its store and recovery
 * doing their part), and gives up cleanly, with a report, when the supervisor never comes back.
 */
import { initializeLogger, voice } from '@livekit/agents';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { attachToSession, type CallsyncAttachment } from '../../src/agent/attach.ts';
import type { CallJob } from '../../src/agent/call-job.ts';
import { UNDELIVERED_REASONS } from '../../src/agent/errors.ts';
import { createExampleAgent, type LeadInput } from '../../src/agent/example-agent.ts';
import {
  BOB_SAYS,
  EXPECTED_TURNS,
  fakeLlm,
  LEAD_DATA,
  LEAD_ID,
  talk,
  USER_GREETS,
} from '../helpers/agent-conversation.ts';
import { testReporter, uniqueRoom, type TestReporter } from '../helpers/agent-fixtures.ts';
import { captureLogs } from '../helpers/agent-observers.ts';
import {
  INGEST_TOKEN,
  PERSONA_CONFIG,
  PERSONA_DOCUMENT,
  startCallsyncHarness,
  type CallsyncHarness,
} from '../helpers/callsync-harness.ts';

const CALLER_NUMBER = '+15550001111';
const TRUNK_NUMBER = '+18005550100';

let h: CallsyncHarness | undefined;
let session: voice.AgentSession | undefined;

beforeAll(() => {
  // agents-js logs through a global logger that its CLI normally sets up.
  initializeLogger({ pretty: false, level: 'error' });
});

afterEach(async () => {
  await session?.close();
  await h?.close();
  session = undefined;
  h = undefined;
});

interface AgentCall {
  harness: CallsyncHarness;
  room: string;
  roomSid: string;
  session: voice.AgentSession;
  reporter: TestReporter;
  attachment: CallsyncAttachment;
  /** Reasons `job.shutdown` was called with. */
  shutdowns: string[];
  /** What the `create_lead` tool was asked to create. */
  createdLeads: LeadInput[];
}

/**
 * What a LiveKit deployment does for an inbound call (a SIP caller dialled in, a dispatch rule
 * put the agent in the room), then the agent's job: a session with the callsync wiring, started.
 */
async function startAgentCall(
  harness: CallsyncHarness,
  reporterOptions: { flushDeadlineMs?: number } = {},
): Promise<AgentCall> {
  const room = uniqueRoom('agent');
  harness.emulator.createRoom({ name: room });
  const sip = harness.emulator.startSipCall({
    room,
    callerNumber: CALLER_NUMBER,
    trunkNumber: TRUNK_NUMBER,
    attributes: { 'sip.ruleID': 'SDR_e2e' },
  });
  const shutdowns: string[] = [];
  const job: CallJob = {
    jobId: `AJ_${room}`,
    roomName: room,
    roomSid: sip.room.sid,
    metadata: JSON.stringify(PERSONA_CONFIG),
    caller: { identity: sip.caller.identity, isSip: true, attributes: { ...sip.caller.attributes } },
    shutdown: (reason) => {
      shutdowns.push(reason);
    },
  };
  const reporter = testReporter({ baseUrl: harness.url, token: INGEST_TOKEN, ...reporterOptions });
  const createdLeads: LeadInput[] = [];
  session = new voice.AgentSession({ llm: fakeLlm() });
  const attachment = attachToSession({ session, job, reporter: reporter.reporter, logger: captureLogs() });
  await session.start({
    agent: createExampleAgent((lead) => {
      createdLeads.push(lead);
      return Promise.resolve(LEAD_ID);
    }),
  });
  return {
    harness,
    room,
    roomSid: sip.room.sid,
    session,
    reporter,
    attachment,
    shutdowns,
    createdLeads,
  };
}

/** The CRM got the whole conversation of `call`, its lead, the caller and the recording. */
async function expectDeliveredToCrm(call: AgentCall, callId: string) {
  const { document } = await call.harness.crm.waitForCallData(callId);
  const upload = call.harness.crm
    .received()
    .uploads.find((item) => item.idempotencyKey === `${callId}:recording`);
  expect(upload, 'the recording was uploaded').toBeDefined();
  expect(document.transcription.conversation_items.map((item) => [item.role, item.content])).toEqual(
    EXPECTED_TURNS,
  );
  expect(document).toMatchObject({
    ...PERSONA_DOCUMENT,
    callDetails: {
      callId,
      direction: 'inbound',
      status: 'completed',
      callerNumber: CALLER_NUMBER,
      recordingUrl: upload!.url,
    },
    caller: { phoneNumber: CALLER_NUMBER },
    transcription: {
      session_id: call.roomSid,
      total_items: EXPECTED_TURNS.length,
      lead_generated: true,
      metadata: { room_name: call.room },
    },
  });
  expect(document.lead).toEqual({ ...LEAD_DATA, leadId: LEAD_ID });
  expect(call.createdLeads).toEqual([LEAD_DATA]);
  expect(call.harness.crm.received().callData.filter((item) => item.callId === callId)).toHaveLength(1);
  expect((await call.harness.api('GET', `/v1/calls/${callId}`)).body).toMatchObject({
    state: 'done',
    outcome: 'delivered',
    leads: [LEAD_ID],
  });
}

describe('a real AgentSession reporting to the real supervisor', () => {
  it('delivers every turn in order, the lead and the caller with the recording to the CRM, and shuts the job down once', async () => {
    h = await startCallsyncHarness();
    const call = await startAgentCall(h);

    await talk(call.session, USER_GREETS);
    await talk(call.session, BOB_SAYS);
    await h.recordingStarted(call.room);
    h.emulator.hangUp({ room: call.room });
    await call.session.close();
    const report = await call.attachment.done;

    expect(report.undelivered).toEqual([]);
    expect(report.callId).toBe(call.attachment.proposedCallId);
    await expectDeliveredToCrm(call, report.callId!);
    expect(call.shutdowns).toHaveLength(1);
  });

  it('loses nothing when the supervisor stops mid-call and restarts on its store', async () => {
    h = await startCallsyncHarness();
    const call = await startAgentCall(h);
    const { reporter, events } = call.reporter;

    await talk(call.session, USER_GREETS);
    await h.recordingStarted(call.room);
    await reporter.idle();
    await h.stopApp();
    await talk(call.session, BOB_SAYS);
    // The caller's details, the lead and the bot's answer wait in the reporter, which keeps trying.
    await events.waitFor((seen) => seen.filter((event) => event.type === 'retrying').length >= 2);
    expect(reporter.stats().queued).toBeGreaterThan(0);
    await h.restartApp();
    h.emulator.hangUp({ room: call.room });
    await call.session.close();
    const report = await call.attachment.done;

    expect(report.undelivered).toEqual([]);
    expect(report.callId).toBe(call.attachment.proposedCallId);
    // The new app resumed the call from the store rather than starting another.
    expect(h.logLines.filter((line) => line.msg === 'recovery done').map((line) => line.restored)).toEqual([
      0, 1,
    ]);
    await expectDeliveredToCrm(call, report.callId!);
    expect(call.shutdowns).toHaveLength(1);
  });

  it('with the supervisor down for good, the session still closes, the job is shut down once, and the report lists what was not delivered and why', async () => {
    h = await startCallsyncHarness();
    const call = await startAgentCall(h, { flushDeadlineMs: 500 });
    const { reporter } = call.reporter;

    await talk(call.session, USER_GREETS);
    await h.recordingStarted(call.room);
    await reporter.idle();
    await h.stopApp();
    await talk(call.session, BOB_SAYS);
    await call.session.close();
    // Shut down at close, while the reports still wait: nothing waits on the supervisor.
    expect(call.shutdowns).toHaveLength(1);
    const report = await call.attachment.done;

    expect(report.callId).toBe(call.attachment.proposedCallId);
    expect(report.undeliveredCount).toBe(4);
    expect(report.undelivered.map((entry) => [entry.kind, entry.ref, entry.reason])).toEqual([
      ['transcript', expect.any(String), UNDELIVERED_REASONS.DEADLINE],
      ['lead', LEAD_ID, UNDELIVERED_REASONS.DEADLINE],
      ['transcript', expect.any(String), UNDELIVERED_REASONS.DEADLINE],
      ['end', undefined, UNDELIVERED_REASONS.DEADLINE],
    ]);
    // The request at the head was tried and failed on the network; its message says so.
    expect(report.undelivered[0]).toMatchObject({ code: 'NETWORK_ERROR' });
    expect(report.undelivered[0]!.attempts).toBeGreaterThan(0);
    expect(report.undelivered[0]!.message).toContain('NETWORK_ERROR');
    expect(
      call.reporter.logs.lines.some((line) => line.msg.includes('4 report(s) could not be delivered')),
    ).toBe(true);
    // What did arrive is in the store: the call, its first two turns, not ended.
    await h.restartApp();
    expect((await h.api('GET', `/v1/calls/${report.callId!}`)).body).toMatchObject({
      status: 'active',
      endedAt: null,
      transcriptItems: 2,
      leads: [],
    });
  });
});
