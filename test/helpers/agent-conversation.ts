/**
 * The scripted conversation the agent-side tests run through a real voice.AgentSession in text
 * mode: a greeting turn, then the caller gives their details and the bot calls the example
 * agent's `create_lead` tool and thanks them. One script, shared by the tests against the
 * supervisor stub (`test/agent/attach.session.test.ts`) and against the real supervisor
 * (`test/e2e/agent-to-crm.test.ts`), so both prove the same turns arrive.
 */
import { voice } from '@livekit/agents';

export const LEAD_ID = 'lead_bob_1';
/** The caller's turns. */
export const USER_GREETS = 'Hi';
export const BOB_SAYS = 'I am Bob, 555-1234';
/** What the bot passes to `create_lead`: the lead's data as callsync reports it. */
export const LEAD_DATA = { name: 'Bob', phone: '555-1234' };

/** The conversation: a greeting turn, then the caller gives their details and the bot creates a lead. */
export function fakeLlm(): voice.testing.FakeLLM {
  return new voice.testing.FakeLLM([
    { input: USER_GREETS, content: 'Hello! How can I help?' },
    { input: BOB_SAYS, toolCalls: [{ name: 'create_lead', args: LEAD_DATA }] },
    { input: JSON.stringify({ leadId: LEAD_ID }), content: "Thanks Bob, we'll call you back." },
  ]);
}

/** Every user and assistant turn of the conversation, `[role, content]`, in order. */
export const EXPECTED_TURNS = [
  ['user', USER_GREETS],
  ['assistant', 'Hello! How can I help?'],
  ['user', BOB_SAYS],
  ['assistant', "Thanks Bob, we'll call you back."],
];

/** One user turn, awaited until the bot's answer (and any tool call) is done. */
export async function talk(session: voice.AgentSession, userInput: string): Promise<void> {
  await session.run({ userInput }).wait();
}
