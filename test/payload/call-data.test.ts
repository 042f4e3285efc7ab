import { describe, expect, it } from 'vitest';
import { buildCallData, callDataSchema, type CollectedCall } from '../../src/payload/call-data.ts';
import { personaConfigSchema } from '../../src/payload/persona-config.ts';

const config = personaConfigSchema.parse({
  campaigns: [{ _id: 'camp_1', client: 'client_9', voiceAgents: [{ _id: 'va_7' }], name: 'Premium plan' }],
  persona: { voice: 'alloy' },
});

const call = (overrides: Partial<CollectedCall> = {}): CollectedCall => ({
  callId: 'CALL-20251029-12345678',
  sessionId: 'livekit-20251029-113920',
  roomName: 'sip-room-1',
  direction: 'inbound',
  callerNumber: '+918655066243',
  config,
  startedAt: '2025-10-29T10:00:00.000Z',
  endedAt: '2025-10-29T10:05:00.400Z',
  status: 'completed',
  transcript: [
    { id: 'item_1', role: 'assistant', content: 'Hello, how can I help?', timestamp: '2025-10-29T10:00:01Z' },
    {
      id: 'item_2',
      role: 'user',
      content: 'Tell me about pricing.',
      timestamp: '2025-10-29T15:30:05+05:30',
      transcriptConfidence: 0.92,
    },
  ],
  leads: [{ leadId: '6900ac26995436dc7dd9abaa', data: { name: 'Priya', leadId: 'spoofed' } }],
  recording: {
    url: 'https://crm.example/uploads/sip-room-1.ogg',
    sizeBytes: 1234567,
    durationSeconds: 299.6,
  },
  ...overrides,
});

describe('buildCallData', () => {
  it('produces the seed document, field for field', () => {
    expect(buildCallData(call())).toEqual({
      campaignId: 'camp_1',
      voiceAgentId: 'va_7',
      client: 'client_9',
      callDetails: {
        callId: 'CALL-20251029-12345678',
        direction: 'inbound',
        startTime: '2025-10-29T10:00:00.000Z',
        endTime: '2025-10-29T10:05:00.400Z',
        duration: 300,
        status: 'completed',
        callerNumber: '+918655066243',
        recordingUrl: 'https://crm.example/uploads/sip-room-1.ogg',
        recordingDuration: 300,
        recordingSize: 1234567,
      },
      caller: { phoneNumber: '+918655066243' },
      transcription: {
        session_id: 'livekit-20251029-113920',
        start_time: '2025-10-29T10:00:00.000Z',
        end_time: '2025-10-29T10:05:00.400Z',
        duration_seconds: 300,
        total_items: 2,
        conversation_items: [
          {
            role: 'assistant',
            content: 'Hello, how can I help?',
            timestamp: '2025-10-29T10:00:01.000Z',
            source: 'livekit-session',
            transcript_confidence: null,
          },
          {
            role: 'user',
            content: 'Tell me about pricing.',
            timestamp: '2025-10-29T10:00:05.000Z', // converted to UTC
            source: 'livekit-session',
            transcript_confidence: 0.92,
          },
        ],
        lead_generated: true,
        metadata: { auto_saved: true, room_name: 'sip-room-1' },
      },
      // The bot's data cannot overwrite the real lead id.
      lead: { name: 'Priya', leadId: '6900ac26995436dc7dd9abaa' },
    });
  });

  it('delivers a call without a recording with null recording fields and no lead as {}', () => {
    const document = buildCallData(call({ recording: null, leads: [] }));
    expect(document.callDetails).toMatchObject({
      recordingUrl: null,
      recordingDuration: null,
      recordingSize: null,
    });
    expect(document.lead).toEqual({});
    expect(document.transcription.lead_generated).toBe(false);
  });

  it('links the last lead and lists every lead id when the bot made several', () => {
    const document = buildCallData(
      call({
        leads: [
          { leadId: 'L1', data: {} },
          { leadId: 'L2', data: { stage: 'hot' } },
        ],
      }),
    );
    expect(document.lead).toEqual({ stage: 'hot', leadId: 'L2' });
    expect(document.transcription.metadata.lead_ids).toEqual(['L1', 'L2']);
  });

  it('refuses times that are not ISO-8601 instead of sending garbage', () => {
    expect(() => buildCallData(call({ endedAt: 'yesterday' }))).toThrow(/not an ISO-8601 time/);
  });
});

describe('callDataSchema', () => {
  it('names the field that is wrong', () => {
    const document = buildCallData(call()) as Record<string, unknown>;
    const result = callDataSchema.safeParse({
      ...document,
      callDetails: { ...(document.callDetails as object), direction: 'sideways' },
    });
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.path).toEqual(['callDetails', 'direction']);
  });
});

describe('personaConfigSchema', () => {
  it.each([
    [{}, 'campaigns'],
    [{ campaigns: [] }, 'campaigns'],
    [{ campaigns: [{ _id: 'c', client: 'k', voiceAgents: [] }] }, 'campaigns.0.voiceAgents'],
    [{ campaigns: [{ _id: '', client: 'k', voiceAgents: [{ _id: 'v' }] }] }, 'campaigns.0._id'],
  ])('refuses %j at %s', (value, path) => {
    const result = personaConfigSchema.safeParse(value);
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.path.join('.')).toBe(path);
  });
});
