import { llm, voice } from '@livekit/agents';
import { describe, expect, it } from 'vitest';
import {
  endCallBodyOf,
  leadsOf,
  TRANSCRIPT_CONTENT_MAX_CHARS,
  transcriptItemOf,
} from '../../src/agent/session-events.ts';
import { transcriptBody } from '../../src/http/schemas.ts';
import { REFERENCE_MS } from '../helpers/agent-fixtures.ts';

function message(
  role: llm.ChatRole,
  content: string | llm.ChatContent[],
  extra: { transcriptConfidence?: number } = {},
) {
  return llm.ChatMessage.create({ role, content, id: `item_${role}`, createdAt: REFERENCE_MS, ...extra });
}

function toolsExecuted(
  calls: { name: string; args: unknown; callId: string }[],
  outputs: { callId: string; output: unknown; isError?: boolean }[],
): voice.FunctionToolsExecutedEvent {
  return voice.createFunctionToolsExecutedEvent({
    functionCalls: calls.map((call) =>
      llm.FunctionCall.create({ name: call.name, callId: call.callId, args: JSON.stringify(call.args) }),
    ),
    functionCallOutputs: outputs.map((output) =>
      llm.FunctionCallOutput.create({
        callId: output.callId,
        output: JSON.stringify(output.output),
        isError: output.isError ?? false,
      }),
    ),
  });
}

describe('transcriptItemOf', () => {
  it('maps a user turn with its STT confidence, and the supervisor accepts it', () => {
    const item = transcriptItemOf(message('user', 'I want solar panels', { transcriptConfidence: 0.87 }));
    expect(item).toEqual({
      id: 'item_user',
      role: 'user',
      content: 'I want solar panels',
      timestamp: '2025-10-29T10:00:00.000Z',
      transcriptConfidence: 0.87,
    });
    expect(transcriptBody.safeParse({ items: [item] }).success).toBe(true);
  });

  it('maps an assistant turn, confidence unknown', () => {
    expect(transcriptItemOf(message('assistant', ['Hello', 'there']))).toMatchObject({
      role: 'assistant',
      content: 'Hello\nthere',
      transcriptConfidence: null,
    });
  });

  it('skips what is not a user or assistant turn with text', () => {
    expect(transcriptItemOf(message('system', 'be nice'))).toBeUndefined();
    expect(transcriptItemOf(message('developer', 'be nice'))).toBeUndefined();
    expect(transcriptItemOf(message('user', '   '))).toBeUndefined();
    expect(
      transcriptItemOf(message('user', [llm.createImageContent({ image: 'https://x/y.png' })])),
    ).toBeUndefined();
    expect(transcriptItemOf(llm.AgentHandoffItem.create({ newAgentId: 'a' }))).toBeUndefined();
    expect(
      transcriptItemOf(llm.FunctionCall.create({ name: 'create_lead', callId: 'c', args: '{}' })),
    ).toBeUndefined();
  });

  it('clamps the confidence and cuts text past the supervisor limit', () => {
    expect(transcriptItemOf(message('user', 'hi', { transcriptConfidence: 1.4 }))?.transcriptConfidence).toBe(
      1,
    );
    const long = transcriptItemOf(message('user', 'a'.repeat(TRANSCRIPT_CONTENT_MAX_CHARS + 10)))!;
    expect(long.content).toHaveLength(TRANSCRIPT_CONTENT_MAX_CHARS);
    expect(long.content.endsWith('[cut]')).toBe(true);
    expect(transcriptBody.safeParse({ items: [long] }).success).toBe(true);
  });
});

describe('leadsOf', () => {
  it('reads { leadId } from create_lead and keeps its arguments as the lead data', () => {
    const event = toolsExecuted(
      [
        { name: 'lookup_price', args: {}, callId: 'c0' },
        { name: 'create_lead', args: { name: 'Bob', phone: '555-1234' }, callId: 'c1' },
      ],
      [
        { callId: 'c0', output: { price: 10 } },
        { callId: 'c1', output: { leadId: 'L-1' } },
      ],
    );
    expect(leadsOf(event)).toEqual({
      leads: [{ leadId: 'L-1', data: { name: 'Bob', phone: '555-1234' } }],
      unreadable: [],
    });
  });

  it('accepts a numeric id, ignores failed calls, and lists results without an id', () => {
    const event = toolsExecuted(
      [
        { name: 'create_lead', args: { name: 'A' }, callId: 'c1' },
        { name: 'create_lead', args: { name: 'B' }, callId: 'c2' },
        { name: 'create_lead', args: { name: 'C' }, callId: 'c3' },
      ],
      [
        { callId: 'c1', output: { leadId: 42 } },
        { callId: 'c2', output: 'CRM down', isError: true },
        { callId: 'c3', output: { ok: true } },
      ],
    );
    expect(leadsOf(event)).toEqual({ leads: [{ leadId: '42', data: { name: 'A' } }], unreadable: ['c3'] });
  });

  it('takes the tool name and readers from options', () => {
    const event = toolsExecuted(
      [{ name: 'save_contact', args: { n: 1 }, callId: 'c1' }],
      [{ callId: 'c1', output: { contact: { id: 'K-7' } } }],
    );
    expect(leadsOf(event).leads).toEqual([]);
    expect(
      leadsOf(event, {
        name: 'save_contact',
        readLeadId: (output) => (output as { contact: { id: string } }).contact.id,
        readLeadData: (_args, output) => output as Record<string, unknown>,
      }).leads,
    ).toEqual([{ leadId: 'K-7', data: { contact: { id: 'K-7' } } }]);
  });
});

describe('endCallBodyOf', () => {
  it('a hang-up is a completed call, ended when the session closed', () => {
    const event = voice.createCloseEvent(voice.CloseReason.PARTICIPANT_DISCONNECTED, null, REFERENCE_MS);
    expect(endCallBodyOf(event)).toEqual({
      endedAt: '2025-10-29T10:00:00.000Z',
      status: 'completed',
      reason: 'participant_disconnected',
    });
  });

  it('a session closed by an error is a failed call, with the error named', () => {
    const error: NonNullable<voice.CloseEvent['error']> = {
      type: 'llm_error',
      timestamp: REFERENCE_MS,
      label: 'fake',
      error: new Error('model overloaded'),
      recoverable: false,
    };
    expect(endCallBodyOf(voice.createCloseEvent(voice.CloseReason.ERROR, error, REFERENCE_MS))).toMatchObject(
      {
        status: 'failed',
        reason: 'error: model overloaded',
      },
    );
  });
});
