/**
 * A real voice.AgentSession in text mode (FakeLLM, the example agent's `create_lead` tool)
 * attached through the callsync wiring to a live HTTP supervisor (the stub over the real HTTP
 * layer). The job is the small `CallJob` interface or a plain object shaped like a JobContext:
 * a real JobContext needs a LiveKit room.
 */
import { initializeLogger, voice } from '@livekit/agents';
import { ParticipantKind } from '@livekit/rtc-node';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { attachCallsync, attachToSession } from '../../src/agent/attach.ts';
import type { CallJob } from '../../src/agent/call-job.ts';
import { AGENT_ERROR_CODES, UNDELIVERED_REASONS } from '../../src/agent/errors.ts';
import { createExampleAgent, type LeadInput } from '../../src/agent/example-agent.ts';
import {
  BOB_SAYS,
  EXPECTED_TURNS,
  fakeLlm,
  LEAD_ID,
  talk,
  USER_GREETS,
} from '../helpers/agent-conversation.ts';
import { captureLogs } from '../helpers/agent-observers.ts';
import { PERSONA_CONFIG, testReporter, uniqueRoom } from '../helpers/agent-fixtures.ts';
import { startAgentSupervisorStub, type AgentSupervisorStub } from '../helpers/agent-supervisor-stub.ts';

const TOKEN = 'session-test-token';

interface JobRecorder {
  job: CallJob;
  shutdowns: string[];
  /** The reporter's queue length at the moment the job was told to shut down. */
  queuedAtShutdown: number[];
  callbacks: (() => Promise<void>)[];
}

function sipJob(roomName: string, queued: () => number): JobRecorder {
  const recorder: JobRecorder = {
    shutdowns: [],
    queuedAtShutdown: [],
    callbacks: [],
    job: {
      jobId: `AJ_${roomName}`,
      roomName,
      roomSid: 'RM_session_test',
      metadata: JSON.stringify(PERSONA_CONFIG),
      caller: {
        identity: 'sip_+15550001111',
        isSip: true,
        attributes: { 'sip.phoneNumber': '+15550001111', 'sip.ruleID': 'SDR_inbound' },
      },
      shutdown: (reason) => {
        recorder.shutdowns.push(reason);
        recorder.queuedAtShutdown.push(queued());
      },
      addShutdownCallback: (callback) => recorder.callbacks.push(callback),
    },
  };
  return recorder;
}

describe('callsync attached to a real AgentSession', () => {
  let stub: AgentSupervisorStub;
  let session: voice.AgentSession;
  const createdLeads: LeadInput[] = [];
  const createLead = (lead: LeadInput) => {
    createdLeads.push(lead);
    return Promise.resolve(LEAD_ID);
  };

  beforeAll(() => {
    // agents-js logs through a global logger that its CLI normally sets up.
    initializeLogger({ pretty: false, level: 'error' });
  });

  beforeEach(async () => {
    createdLeads.length = 0;
    stub = await startAgentSupervisorStub({ ingestToken: TOKEN });
    session = new voice.AgentSession({ llm: fakeLlm() });
  });

  afterEach(async () => {
    await session.close();
    await stub.close();
  });

  it('delivers every turn in order, the lead linked, and the end; then shuts the job down', async () => {
    const room = uniqueRoom('call');
    const { reporter } = testReporter({ baseUrl: stub.url, token: TOKEN });
    const recorder = sipJob(room, () => reporter.stats().queued);
    const attachment = attachToSession({ session, job: recorder.job, reporter, logger: captureLogs() });

    await session.start({ agent: createExampleAgent(createLead) });
    await talk(session, USER_GREETS);
    await talk(session, BOB_SAYS);
    await session.close();
    const report = await attachment.done;

    expect(report.undelivered).toEqual([]);
    expect(createdLeads).toEqual([{ name: 'Bob', phone: '555-1234' }]);
    const call = stub.call(report.callId!)!;
    expect(call.callId).toBe(attachment.proposedCallId);
    expect(call.create).toMatchObject({
      roomName: room,
      callerNumber: '+15550001111',
      direction: 'inbound',
      config: PERSONA_CONFIG,
      sessionId: 'RM_session_test',
    });
    expect(call.transcript.map((item) => [item.role, item.content])).toEqual(EXPECTED_TURNS);
    const historyIds = session.history.items
      .filter((item) => item.type === 'message' && (item.role === 'user' || item.role === 'assistant'))
      .map((item) => item.id);
    expect(call.transcript.map((item) => item.id)).toEqual(historyIds);
    expect(call.transcript.every((item) => !Number.isNaN(Date.parse(item.timestamp)))).toBe(true);
    expect(call.leads).toEqual([{ leadId: LEAD_ID, data: { name: 'Bob', phone: '555-1234' } }]);
    expect(call.end).toMatchObject({ status: 'completed', reason: 'user_initiated' });
    // The lead is reported where it happened: after Bob's turn, before the bot's answer.
    const order = stub.events.flatMap((event) =>
      event.kind === 'transcript' ? event.body.items.map((item) => item.content) : [event.kind],
    );
    expect(order).toEqual([
      'create',
      USER_GREETS,
      'Hello! How can I help?',
      BOB_SAYS,
      'lead',
      EXPECTED_TURNS[3]![1],
      'end',
    ]);
    expect(recorder.shutdowns).toEqual(['callsync: agent session closed (user_initiated)']);
  });

  it('loses nothing when the supervisor is down for part of the conversation', async () => {
    const room = uniqueRoom('call');
    const { reporter, events } = testReporter({ baseUrl: stub.url, token: TOKEN });
    const recorder = sipJob(room, () => reporter.stats().queued);
    const attachment = attachToSession({ session, job: recorder.job, reporter, logger: captureLogs() });

    await session.start({ agent: createExampleAgent(createLead) });
    await talk(session, USER_GREETS);
    await reporter.idle();
    await stub.down();
    await talk(session, BOB_SAYS);
    await events.waitFor((seen) => seen.filter((event) => event.type === 'retrying').length >= 2);
    await stub.up();
    await session.close();
    const report = await attachment.done;

    expect(report.undelivered).toEqual([]);
    const call = stub.callByRoom(room)!;
    expect(call.transcript.map((item) => [item.role, item.content])).toEqual(EXPECTED_TURNS);
    expect(call.leads.map((lead) => lead.leadId)).toEqual([LEAD_ID]);
    expect(call.end).toBeDefined();
  });

  it('with the supervisor down for good, the session still closes and the job is shut down, and the report lists every undelivered request', async () => {
    const room = uniqueRoom('call');
    const { reporter, logs } = testReporter({ baseUrl: stub.url, token: TOKEN, flushDeadlineMs: 1_000 });
    const recorder = sipJob(room, () => reporter.stats().queued);
    await stub.down();
    const attachment = attachToSession({ session, job: recorder.job, reporter, logger: captureLogs() });

    await session.start({ agent: createExampleAgent(createLead) });
    await talk(session, USER_GREETS);
    await talk(session, BOB_SAYS);
    await session.close();

    // The job was told to shut down while the reports were still queued: nothing waited on them.
    expect(recorder.shutdowns).toHaveLength(1);
    expect(recorder.queuedAtShutdown[0]).toBe(7);
    const report = await attachment.done;
    expect(report.callId).toBeUndefined();
    expect(report.undelivered.map((entry) => [entry.kind, entry.reason])).toEqual([
      ['create', UNDELIVERED_REASONS.DEADLINE],
      ['transcript', UNDELIVERED_REASONS.DEADLINE],
      ['transcript', UNDELIVERED_REASONS.DEADLINE],
      ['transcript', UNDELIVERED_REASONS.DEADLINE],
      ['lead', UNDELIVERED_REASONS.DEADLINE],
      ['transcript', UNDELIVERED_REASONS.DEADLINE],
      ['end', UNDELIVERED_REASONS.DEADLINE],
    ]);
    expect(report.undelivered.find((entry) => entry.kind === 'lead')?.ref).toBe(LEAD_ID);
    expect(
      logs.lines.some(
        (line) => line.level === 'warn' && line.msg.includes('7 report(s) could not be delivered'),
      ),
    ).toBe(true);
  });
});

describe('attachCallsync (a plain object shaped like a JobContext)', () => {
  let stub: AgentSupervisorStub;
  let session: voice.AgentSession;

  beforeAll(() => {
    initializeLogger({ pretty: false, level: 'error' });
  });

  beforeEach(async () => {
    stub = await startAgentSupervisorStub({ ingestToken: TOKEN });
    session = new voice.AgentSession({ llm: fakeLlm() });
  });

  afterEach(async () => {
    await session.close();
    await stub.close();
  });

  function jobContext(roomName: string, metadata: string) {
    const shutdownCallbacks: (() => Promise<void>)[] = [];
    const waitedFor: (string | undefined)[] = [];
    const ctx = {
      job: { id: `AJ_${roomName}`, metadata, room: { name: roomName, sid: 'RM_ctx' } },
      room: { name: roomName },
      shutdown: () => undefined,
      addShutdownCallback: (callback: () => Promise<void>) => shutdownCallbacks.push(callback),
      waitForParticipant: (identity?: string) => {
        waitedFor.push(identity);
        return Promise.resolve({
          identity: 'sip_+15550004444',
          kind: ParticipantKind.SIP,
          attributes: { 'sip.phoneNumber': '+15550004444' },
        });
      },
    };
    return { ctx, shutdownCallbacks, waitedFor };
  }

  it('reports turns the session had before attaching, and ends the call from the job shutdown callback', async () => {
    const room = uniqueRoom('ctx');
    const { ctx, shutdownCallbacks } = jobContext(room, JSON.stringify(PERSONA_CONFIG));
    await session.start({ agent: createExampleAgent(() => Promise.resolve(LEAD_ID)) });
    await talk(session, USER_GREETS);

    const attachment = await attachCallsync(ctx, session, {
      supervisorUrl: stub.url,
      ingestToken: TOKEN,
      logger: captureLogs(),
      reporter: { retryBaseDelayMs: 5, retryMaxDelayMs: 20 },
    });
    expect(shutdownCallbacks).toHaveLength(1);
    await shutdownCallbacks[0]!();
    const report = await attachment.done;

    expect(report.undelivered).toEqual([]);
    const call = stub.callByRoom(room)!;
    expect(call.create).toMatchObject({
      callerNumber: '+15550004444',
      direction: 'outbound',
      callId: `lk_AJ_${room}`,
    });
    expect(call.transcript.map((item) => item.content)).toEqual([USER_GREETS, 'Hello! How can I help?']);
    expect(call.end).toMatchObject({ status: 'completed', reason: 'job_shutdown' });
  });

  it('refuses a job without a persona config before waiting for the caller', async () => {
    const { ctx, waitedFor } = jobContext(uniqueRoom('ctx'), '');
    await expect(attachCallsync(ctx, session, { supervisorUrl: stub.url })).rejects.toMatchObject({
      code: AGENT_ERROR_CODES.CONFIG_MISSING,
    });
    expect(waitedFor).toEqual([]);
    expect(stub.requests).toHaveLength(0);
  });

  it('refuses to start without a supervisor URL', async () => {
    const { ctx } = jobContext(uniqueRoom('ctx'), JSON.stringify(PERSONA_CONFIG));
    const saved = process.env.CALLSYNC_URL;
    delete process.env.CALLSYNC_URL;
    try {
      await expect(attachCallsync(ctx, session)).rejects.toMatchObject({
        code: AGENT_ERROR_CODES.SUPERVISOR_URL_INVALID,
      });
      await expect(attachCallsync(ctx, session, { supervisorUrl: 'ftp://x' })).rejects.toMatchObject({
        code: AGENT_ERROR_CODES.SUPERVISOR_URL_INVALID,
      });
    } finally {
      if (saved !== undefined) process.env.CALLSYNC_URL = saved;
    }
  });
});
