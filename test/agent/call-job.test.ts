import { Job, Room } from '@livekit/protocol';
import { ParticipantKind } from '@livekit/rtc-node';
import { describe, expect, it } from 'vitest';
import {
  callJobFromContext,
  createCallBodyFor,
  proposeCallId,
  type CallJob,
  type JobContextLike,
  type ParticipantLike,
} from '../../src/agent/call-job.ts';
import { AGENT_ERROR_CODES, CallsyncAgentError } from '../../src/agent/errors.ts';
import { readPersonaConfig } from '../../src/agent/job-config.ts';
import { createCallBody } from '../../src/http/schemas.ts';
import { PERSONA_CONFIG, REFERENCE_MS } from '../helpers/agent-fixtures.ts';

const METADATA = JSON.stringify(PERSONA_CONFIG);

function thrownBy(run: () => unknown): CallsyncAgentError {
  try {
    run();
  } catch (error) {
    if (error instanceof CallsyncAgentError) return error;
    throw error;
  }
  throw new Error('expected a CallsyncAgentError');
}

describe('readPersonaConfig', () => {
  it('returns the config, extra fields kept', () => {
    expect(readPersonaConfig(METADATA)).toEqual(PERSONA_CONFIG);
  });

  it.each([undefined, '', '   '])('metadata %j → AGENT_CONFIG_MISSING', (metadata) => {
    const error = thrownBy(() => readPersonaConfig(metadata));
    expect(error).toMatchObject({ code: AGENT_ERROR_CODES.CONFIG_MISSING, retryable: false });
    expect(error.message).toContain('persona config');
  });

  it('metadata that is not JSON → AGENT_CONFIG_NOT_JSON', () => {
    expect(thrownBy(() => readPersonaConfig('{campaigns: nope')).code).toBe(
      AGENT_ERROR_CODES.CONFIG_NOT_JSON,
    );
  });

  it('a config the supervisor would refuse → AGENT_CONFIG_INVALID naming the field', () => {
    const broken = { campaigns: [{ _id: 'c', voiceAgents: [{ _id: 'v' }] }] };
    const error = thrownBy(() => readPersonaConfig(JSON.stringify(broken)));
    expect(error.code).toBe(AGENT_ERROR_CODES.CONFIG_INVALID);
    expect(error.details).toEqual({ field: 'campaigns.0.client' });
    expect(error.message).toContain('campaigns.0.client');
    expect(thrownBy(() => readPersonaConfig('{"campaigns":[]}')).details).toEqual({ field: 'campaigns' });
  });

  it('reads the config from where the dispatch put it', () => {
    const metadata = JSON.stringify({ persona: PERSONA_CONFIG, dial: '+15550002222' });
    expect(readPersonaConfig(metadata, (parsed) => (parsed as { persona: unknown }).persona)).toEqual(
      PERSONA_CONFIG,
    );
  });
});

describe('callJobFromContext (a real proto Job, objects shaped like rtc-node Room and RemoteParticipant)', () => {
  function context(job: Job, roomName: string | undefined = undefined) {
    const shutdowns: (string | undefined)[] = [];
    const callbacks: (() => Promise<void>)[] = [];
    const ctx: JobContextLike = {
      job,
      room: { name: roomName },
      shutdown: (reason) => shutdowns.push(reason),
      addShutdownCallback: (callback) => callbacks.push(callback),
    };
    return { ctx, shutdowns, callbacks };
  }

  const sipCaller: ParticipantLike = {
    identity: 'sip_+15550001111',
    kind: ParticipantKind.SIP,
    attributes: {
      'sip.phoneNumber': '+15550001111',
      'sip.trunkPhoneNumber': '+18005550100',
      'sip.ruleID': 'SDR_inbound',
      'sip.callID': 'SCL_1',
    },
  };

  it('maps the job, the room and the SIP caller', () => {
    const job = new Job({
      id: 'AJ_abc123',
      metadata: METADATA,
      room: new Room({ name: 'call-_+1555_x', sid: 'RM_42' }),
    });
    const { ctx, shutdowns, callbacks } = context(job);

    const callJob = callJobFromContext(ctx, sipCaller);
    callJob.shutdown('done');
    const callback = () => Promise.resolve();
    callJob.addShutdownCallback?.(callback);

    expect(callJob).toMatchObject({
      jobId: 'AJ_abc123',
      roomName: 'call-_+1555_x',
      roomSid: 'RM_42',
      metadata: METADATA,
      caller: { identity: 'sip_+15550001111', isSip: true, attributes: sipCaller.attributes },
    });
    expect(shutdowns).toEqual(['done']);
    expect(callbacks).toEqual([callback]);
  });

  it("falls back to the connected room's name, and has no session id without a room sid", () => {
    const { ctx } = context(new Job({ id: 'AJ_1', metadata: METADATA }), 'room-from-rtc');
    const callJob = callJobFromContext(ctx, {
      identity: 'web',
      kind: ParticipantKind.STANDARD,
      attributes: {},
    });
    expect(callJob).toMatchObject({
      roomName: 'room-from-rtc',
      roomSid: undefined,
      caller: { isSip: false },
    });
  });

  it('without any room name → AGENT_ROOM_UNKNOWN', () => {
    const { ctx } = context(new Job({ id: 'AJ_1', metadata: METADATA }));
    expect(thrownBy(() => callJobFromContext(ctx, sipCaller)).code).toBe(AGENT_ERROR_CODES.ROOM_UNKNOWN);
  });
});

describe('createCallBodyFor', () => {
  function callJob(overrides: Partial<CallJob> = {}): CallJob {
    return {
      jobId: 'AJ_abc123',
      roomName: 'call-room-1',
      roomSid: 'RM_42',
      metadata: METADATA,
      caller: {
        identity: 'sip_caller',
        isSip: true,
        attributes: { 'sip.phoneNumber': '+15550001111', 'sip.ruleID': 'SDR_1' },
      },
      shutdown: () => undefined,
      ...overrides,
    };
  }
  const now = new Date(REFERENCE_MS);

  it('builds a body the supervisor accepts, for an inbound SIP call', () => {
    const body = createCallBodyFor(callJob(), {}, now);
    expect(body).toEqual({
      roomName: 'call-room-1',
      callerNumber: '+15550001111',
      config: PERSONA_CONFIG,
      direction: 'inbound',
      startedAt: '2025-10-29T10:00:00.000Z',
      callId: 'lk_AJ_abc123',
      sessionId: 'RM_42',
    });
    expect(createCallBody.safeParse(body).success).toBe(true);
  });

  it('a SIP participant without a dispatch rule is an outbound call', () => {
    const caller = { identity: 'sip_callee', isSip: true, attributes: { 'sip.phoneNumber': '+15550003333' } };
    expect(createCallBodyFor(callJob({ caller }), {}, now)).toMatchObject({
      direction: 'outbound',
      callerNumber: '+15550003333',
    });
  });

  it('the direction in the job metadata wins over the participant, and the option over both', () => {
    const metadata = JSON.stringify({ ...PERSONA_CONFIG, direction: 'outbound' });
    expect(createCallBodyFor(callJob({ metadata }), {}, now).direction).toBe('outbound');
    expect(createCallBodyFor(callJob({ metadata }), { direction: 'inbound' }, now).direction).toBe('inbound');
  });

  it('a non-SIP caller (or a hidden number) gives an empty number and no direction', () => {
    const body = createCallBodyFor(
      callJob({ caller: { identity: 'web', isSip: false, attributes: {} }, roomSid: undefined }),
      {},
      now,
    );
    expect(body.callerNumber).toBe('');
    expect(body).not.toHaveProperty('direction');
    expect(body).not.toHaveProperty('sessionId');
    expect(createCallBody.safeParse(body).success).toBe(true);
  });

  it('throws the config error before anything else', () => {
    expect(thrownBy(() => createCallBodyFor(callJob({ metadata: undefined }))).code).toBe(
      AGENT_ERROR_CODES.CONFIG_MISSING,
    );
  });

  it('proposes a call id the supervisor accepts', () => {
    expect(proposeCallId({ jobId: 'AJ_x/y z', roomName: 'r' })).toBe('lk_AJ_x_y_z');
    expect(proposeCallId({ jobId: '', roomName: 'call +1 (555)' })).toBe('lk_room_call__1__555_');
    const long = proposeCallId({ jobId: 'j'.repeat(500), roomName: 'r' });
    expect(createCallBody.shape.callId.safeParse(long).success).toBe(true);
  });
});
