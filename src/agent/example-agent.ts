/**
 * An example voice agent that reports its calls to callsync: a receptionist that records the
 * caller as a lead with a `create_lead` tool. It is built with `npm run build` like the rest of
 * `src/`, so CI typechecks and compiles it.
 *
 * Run it against a LiveKit deployment (README, "Add callsync to your agent"):
 *
 *   LIVEKIT_URL=wss://… LIVEKIT_API_KEY=… LIVEKIT_API_SECRET=… \
 *   CALLSYNC_URL=http://127.0.0.1:8080 CALLSYNC_INGEST_TOKEN=… \
 *   node --import tsx src/agent/example-agent.ts dev        # or: node dist/agent/example-agent.js start
 *
 * Dispatch it with the persona config (JSON) as the job metadata. Speech and the LLM go
 * through LiveKit Inference (LiveKit Cloud); `EXAMPLE_STT_MODEL`, `EXAMPLE_LLM_MODEL` and
 * `EXAMPLE_TTS_MODEL` pick other Inference models, and a self-hosted server needs provider
 * plugins instead (`@livekit/agents-plugin-*`), passed to the same `AgentSession`.
 */
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { cli, defineAgent, llm, ServerOptions, voice, type JobContext } from '@livekit/agents';
import { z } from 'zod';
import { attachCallsync } from './attach.ts';

export const EXAMPLE_INSTRUCTIONS =
  'You are the phone receptionist of a solar panel installer. Be brief and friendly. ' +
  "When the caller is interested, ask for their name and phone number, then call create_lead and tell them we'll call back.";

export interface LeadInput {
  name: string;
  phone: string;
}

/** Creates the lead in your CRM and answers its id. */
export type CreateLead = (lead: LeadInput) => Promise<string>;

/** The `create_lead` tool. It returns `{ leadId }`, which is what callsync reads by default. */
export function createLeadTool(createLead: CreateLead) {
  return llm.tool({
    name: 'create_lead',
    description: 'Record the caller as a sales lead once you know their name and phone number.',
    parameters: z.object({
      name: z.string().describe("The caller's full name"),
      phone: z.string().describe("The caller's phone number"),
    }),
    execute: async ({ name, phone }) => ({ leadId: await createLead({ name, phone }) }),
  });
}

export function createExampleAgent(createLead: CreateLead): voice.Agent {
  return new voice.Agent({ instructions: EXAMPLE_INSTRUCTIONS, tools: [createLeadTool(createLead)] });
}

/** Stands in for a CRM's lead API: replace with a call to yours. */
const createLeadLocally: CreateLead = async () => Promise.resolve(`lead_${randomUUID()}`);

export default defineAgent({
  entry: async (ctx: JobContext) => {
    await ctx.connect();
    const session = new voice.AgentSession({
      stt: process.env.EXAMPLE_STT_MODEL ?? 'deepgram/nova-3',
      llm: process.env.EXAMPLE_LLM_MODEL ?? 'openai/gpt-4.1-mini',
      tts: process.env.EXAMPLE_TTS_MODEL ?? 'cartesia/sonic-2',
    });
    // Validates the job metadata, waits for the caller, reports the call; closes the job on hang-up.
    await attachCallsync(ctx, session);
    await session.start({ agent: createExampleAgent(createLeadLocally), room: ctx.room });
    session.generateReply({ instructions: 'Greet the caller and ask how you can help.' });
  },
});

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  cli.runApp(new ServerOptions({ agent: fileURLToPath(import.meta.url) }));
}
