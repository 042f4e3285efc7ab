/**
 * Text that PostgreSQL's jsonb cannot hold (NUL, unpaired UTF-16 surrogates), sent to the real
 * supervisor on a PostgreSQL store (the contract's "What an answer promises"): in every field a
 * caller controls, each such string is either refused with `400` naming the field, or stored and
 * delivered to the CRM exactly. Either way nothing sticks: the call the text arrived on still
 * finishes (delivered or partial), is `done` in the store after a restart (its row was written,
 * not stuck), reaches the CRM once, nothing is logged as an error on the way, and a control call
 * (transcript, lead, recording) is delivered afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallData } from '../../src/payload/call-data.ts';
import {
  PERSONA_CONFIG,
  startCallsyncHarness,
  type ApiAnswer,
  type CallsyncHarness,
} from '../helpers/callsync-harness.ts';
import { watchFinished, type FinishedCalls } from '../helpers/finished-calls.ts';
import { postgresSchemas } from '../helpers/postgres-schemas.ts';

const schemas = postgresSchemas('callsync_hardening');
afterAll(() => schemas.dropAll());

const BASE_MS = Math.floor(Date.now() / 1000) * 1000 - 60_000;
const at = (seconds: number) => new Date(BASE_MS + seconds * 1000).toISOString();
const item = (id: string, content: string, timestamp = at(2)) => ({ id, role: 'user', content, timestamp });

/** Strings a jsonb column refuses (the first) or cannot represent (the others). */
const VARIANTS = [
  ['a NUL', 'a\u0000b'],
  ['a lone high surrogate', 'x\ud800y'],
  ['a lone low surrogate', 'x\udc00y'],
] as const;

interface Sent {
  answer: ApiAnswer;
  /** The call the text went to (or created), when there is one. */
  callId: string | undefined;
}

interface TextCase {
  name: string;
  /** The field a refusal must name. */
  field: string | RegExp;
  /** Sends `value` in the field, creating the call it needs (room `room`). */
  send(h: CallsyncHarness, room: string, value: string): Promise<Sent>;
  /** When accepted: the CRM's document carries `value` exactly. */
  delivered(document: CallData, value: string): void;
}

async function createCall(h: CallsyncHarness, room: string, extra: Record<string, unknown> = {}) {
  h.startLiveKitCall(room);
  return h.api('POST', '/v1/calls', {
    roomName: room,
    callerNumber: '+918655066243',
    config: PERSONA_CONFIG,
    startedAt: at(0),
    ...extra,
  });
}

/** A call created normally, then `event` sent to it. */
function onCall(route: 'transcript' | 'leads' | 'end', body: (value: string) => unknown) {
  return async (h: CallsyncHarness, room: string, value: string): Promise<Sent> => {
    const created = await createCall(h, room);
    expect(created.status).toBe(201);
    const callId = created.body.callId as string;
    if (route === 'end') await h.recordingStarted(room);
    return { answer: await h.api('POST', `/v1/calls/${callId}/${route}`, body(value)), callId };
  };
}

/** A call created with `extra` in its body. */
function creating(extra: (room: string, value: string) => Record<string, unknown>) {
  return async (h: CallsyncHarness, room: string, value: string): Promise<Sent> => {
    const answer = await createCall(h, room, extra(room, value));
    return { answer, callId: answer.status === 201 ? (answer.body.callId as string) : undefined };
  };
}

const config = (campaign: Record<string, unknown>, top: Record<string, unknown> = {}) => ({
  ...top,
  campaigns: [{ _id: 'camp_pg', client: 'client_pg', voiceAgents: [{ _id: 'va_pg' }], ...campaign }],
});

const CASES: TextCase[] = [
  {
    name: 'transcript content',
    field: 'items.0.content',
    send: onCall('transcript', (value) => ({ items: [item('t1', value)] })),
    delivered: (document, value) =>
      expect(document.transcription.conversation_items.map((entry) => entry.content)).toEqual([value]),
  },
  {
    name: 'a transcript item id',
    field: 'items.0.id',
    send: onCall('transcript', (value) => ({ items: [item(`id-${value}`, 'kept')] })),
    delivered: (document) =>
      expect(document.transcription.conversation_items.map((entry) => entry.content)).toEqual(['kept']),
  },
  {
    name: 'a lead data value',
    field: 'data.name',
    send: onCall('leads', (value) => ({ leadId: 'lead-v', data: { name: value } })),
    delivered: (document, value) => expect(document.lead).toMatchObject({ leadId: 'lead-v', name: value }),
  },
  {
    name: 'a nested lead data value',
    field: 'data.contact.notes.1',
    send: onCall('leads', (value) => ({ leadId: 'lead-n', data: { contact: { notes: ['ok', value] } } })),
    delivered: (document, value) =>
      expect(document.lead).toMatchObject({ leadId: 'lead-n', contact: { notes: ['ok', value] } }),
  },
  {
    name: 'a lead data key',
    field: /^data\.k/,
    send: onCall('leads', (value) => ({ leadId: 'lead-k', data: { [`k${value}`]: 'v' } })),
    delivered: (document, value) => expect(document.lead[`k${value}`]).toBe('v'),
  },
  {
    name: 'a leadId',
    field: 'leadId',
    send: onCall('leads', (value) => ({ leadId: `lead-${value}` })),
    delivered: (document, value) => expect(document.lead).toMatchObject({ leadId: `lead-${value}` }),
  },
  {
    name: 'an end reason',
    field: 'reason',
    send: onCall('end', (value) => ({ endedAt: at(5), reason: value })),
    delivered: (document, value) => expect(document.transcription.metadata.end_reason).toBe(value),
  },
  {
    name: 'roomName',
    field: 'roomName',
    send: creating((room, value) => ({ roomName: `${room}-${value}` })),
    delivered: (document, value) =>
      expect(String(document.transcription.metadata.room_name).endsWith(`-${value}`)).toBe(true),
  },
  {
    name: 'callerNumber',
    field: 'callerNumber',
    send: creating((_room, value) => ({ callerNumber: `+91${value}86` })),
    delivered: (document, value) => {
      expect(document.callDetails.callerNumber).toBe(`+91${value}86`);
      expect(document.caller.phoneNumber).toBe(`+91${value}86`);
    },
  },
  {
    name: 'sessionId',
    field: 'sessionId',
    send: creating((_room, value) => ({ sessionId: `session-${value}` })),
    delivered: (document, value) => expect(document.transcription.session_id).toBe(`session-${value}`),
  },
  {
    name: "the config's campaign id",
    field: 'config.campaigns.0._id',
    send: creating((_room, value) => ({ config: config({ _id: `camp-${value}` }) })),
    delivered: (document, value) => expect(document.campaignId).toBe(`camp-${value}`),
  },
  {
    name: "the config's voice agent id",
    field: 'config.campaigns.0.voiceAgents.0._id',
    send: creating((_room, value) => ({ config: config({ voiceAgents: [{ _id: `va-${value}` }] }) })),
    delivered: (document, value) => expect(document.voiceAgentId).toBe(`va-${value}`),
  },
  {
    name: 'a config field callsync does not read',
    field: /^config\.persona/,
    send: creating((_room, value) => ({ config: config({}, { persona: { greeting: value } }) })),
    delivered: () => undefined,
  },
];

describe.each(VARIANTS)('%s on PostgreSQL', (_variant, value) => {
  let h: CallsyncHarness;
  beforeAll(async () => {
    h = await startCallsyncHarness({ env: { CALLSYNC_STORE: schemas.storeUrl() } });
  });
  afterAll(() => h?.close());

  it.each(CASES.map((textCase, index) => [textCase.name, index, textCase] as const))(
    'in %s: refused naming the field, or stored and delivered exactly',
    async (_name, index, textCase) => {
      const room = `room-pg-${index}`;
      const firstLine = h.logLines.length;
      const finished = watchFinished(h.app.supervisor);
      const { answer, callId } = await textCase.send(h, room, value);

      if (answer.status >= 400) {
        expect(answer.status).toBe(400);
        expect(answer.body.error).toBe('INVALID_BODY');
        const named = (answer.body.details as { field?: string } | undefined)?.field ?? '';
        if (typeof textCase.field === 'string') expect(named).toBe(textCase.field);
        else expect(named).toMatch(textCase.field);
      } else {
        expect(answer.status).toBeLessThan(300);
      }

      if (callId !== undefined) {
        // The call goes on to the CRM: with the text exactly, or without what was refused.
        const call = (await h.api('GET', `/v1/calls/${callId}`)).body;
        if (call.endedAt === null) {
          if (answer.status < 300) await h.recordingStarted(String(call.roomName));
          expect((await h.api('POST', `/v1/calls/${callId}/end`, { endedAt: at(5) })).status).toBe(202);
        }
        const { document } = await h.crm.waitForCallData(callId);
        if (answer.status < 300) textCase.delivered(document, value);
        expect(['delivered', 'partial']).toContain(await finished.outcome(callId));
      }

      // Nothing failed quietly on the way (a store write that PostgreSQL refused, say).
      const errors = h.logLines
        .slice(firstLine)
        .filter((line) => line.level === 'error' || line.level === 'fatal')
        .map((line) => `${String(line.msg)}: ${JSON.stringify(line.err ?? '')}`);
      expect(errors).toEqual([]);

      // What the store holds is what was answered: after a restart the call is still done (its
      // row was written, not stuck) and is not delivered again.
      finished.stop();
      await h.restartApp();
      expect(await h.api('GET', '/readyz')).toMatchObject({ status: 200 });
      if (callId !== undefined) {
        expect((await h.api('GET', `/v1/calls/${callId}`)).body).toMatchObject({ state: 'done' });
      }

      await deliverControlCall(h, `${room}-control`);
      if (callId !== undefined) {
        expect(h.crm.received().callData.filter((entry) => entry.callId === callId)).toHaveLength(1);
      }
    },
  );
});

/** A whole call, start to CRM, recording included: the service still delivers. */
async function deliverControlCall(h: CallsyncHarness, room: string): Promise<void> {
  const finished: FinishedCalls = watchFinished(h.app.supervisor);
  const created = await createCall(h, room);
  expect(created.status).toBe(201);
  const callId = created.body.callId as string;
  expect(
    (await h.api('POST', `/v1/calls/${callId}/transcript`, { items: [item('c1', 'control')] })).status,
  ).toBe(202);
  expect((await h.api('POST', `/v1/calls/${callId}/leads`, { leadId: 'lead-control' })).status).toBe(202);
  await h.recordingStarted(room);
  expect((await h.api('POST', `/v1/calls/${callId}/end`, { endedAt: at(5) })).status).toBe(202);
  const { document } = await h.crm.waitForCallData(callId);
  expect(document.transcription.conversation_items.map((entry) => entry.content)).toEqual(['control']);
  expect(document.lead).toMatchObject({ leadId: 'lead-control' });
  expect(document.callDetails.recordingSize).toBeGreaterThan(0);
  expect(await finished.outcome(callId)).toBe('delivered');
  finished.stop();
}
