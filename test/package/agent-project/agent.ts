/**
 * A voice agent as a separate project writes it, against the installed `callsync/agent`
 * package (`test/package/agent-package.test.ts` installs the packed tarball next to
 * @livekit/agents in a scratch project, typechecks this file with `tsconfig.json` beside it and
 * runs the compiled output). Only the package's public API is used: `attachCallsync` on a job
 * context, `CALLSYNC_URL` and `CALLSYNC_INGEST_TOKEN` from the environment, a `create_lead` tool.
 *
 * There is no LiveKit server, so the job context is built from what the test's LiveKit emulator
 * set up (room, room sid, SIP caller, persona config as the job metadata: `AGENT_*` variables)
 * and the session runs in text mode with `voice.testing.FakeLLM`. The test and this process
 * talk over stdio, one JSON object a line: this agent prints `{"event":"talked"}` after its two
 * turns, waits for the test to say `hang-up` (once the recording runs and the caller left), then
 * closes the session and prints `{"event":"done", ...}` with the reporter's final report.
 */
import { createInterface } from 'node:readline';
import { initializeLogger, llm, voice } from '@livekit/agents';
import { ParticipantKind } from '@livekit/rtc-node';
import {
  AGENT_ERROR_CODES,
  attachCallsync,
  CallsyncAgentError,
  type AttachableJobContext,
  type CallsyncAgentOptions,
  type CallsyncAttachment,
  type ParticipantLike,
  type ReporterReport,
} from 'callsync/agent';
import { z } from 'zod';

// The package's types are real all the way down: a declaration that failed to resolve would make
// them `any` (which `skipLibCheck` does not report), and these directives unused.
// @ts-expect-error the persona config (src/payload) is typed
export const notAConfig: CallsyncAgentOptions = { config: 'not a persona config' };
// @ts-expect-error the report's reasons are typed
export const notAReason: ReporterReport['undelivered'][number]['reason'] = 'not a reason';
// @ts-expect-error the participant kind is @livekit/rtc-node's enum
export const notAKind: ParticipantLike['kind'] = 'SIP';

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is not set`);
  return value;
}

function say(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

// agents-js logs through a global logger that its CLI normally sets up.
initializeLogger({ pretty: false, level: 'error' });

const room = required('AGENT_ROOM_NAME');
const callerAttributes = JSON.parse(required('AGENT_CALLER_ATTRIBUTES')) as Record<string, string>;
const LEAD_ID = 'lead_package_1';

const shutdowns: string[] = [];
const ctx: AttachableJobContext = {
  job: {
    id: `AJ_${room}`,
    metadata: required('AGENT_JOB_METADATA'),
    room: { name: room, sid: required('AGENT_ROOM_SID') },
  },
  room: { name: room },
  shutdown: (reason) => {
    shutdowns.push(reason ?? '');
  },
  addShutdownCallback: () => {},
  waitForParticipant: () =>
    Promise.resolve({
      identity: required('AGENT_CALLER_IDENTITY'),
      kind: ParticipantKind.SIP,
      attributes: callerAttributes,
    }),
};

// A bad persona config is refused before anything is reported, with the package's error type.
const badConfig = await attachCallsync(
  { ...ctx, job: { ...ctx.job, metadata: '{}' } },
  new voice.AgentSession({}),
).then(
  () => undefined,
  (error: unknown) => (error instanceof CallsyncAgentError ? error.code : String(error)),
);
if (badConfig !== AGENT_ERROR_CODES.CONFIG_INVALID) throw new Error(`a bad config gave ${String(badConfig)}`);

const createLead = llm.tool({
  name: 'create_lead',
  description: 'Record the caller as a sales lead.',
  parameters: z.object({ name: z.string(), phone: z.string() }),
  execute: () => Promise.resolve({ leadId: LEAD_ID }),
});

const session = new voice.AgentSession({
  llm: new voice.testing.FakeLLM([
    { input: 'Hi', content: 'Hello! How can I help?' },
    {
      input: 'I am Ann, 555-0100',
      toolCalls: [{ name: 'create_lead', args: { name: 'Ann', phone: '555-0100' } }],
    },
    { input: JSON.stringify({ leadId: LEAD_ID }), content: "Thanks Ann, we'll call you back." },
  ]),
});
const attachment: CallsyncAttachment = await attachCallsync(ctx, session, {
  reporter: { retryBaseDelayMs: 5, retryMaxDelayMs: 20 },
});
await session.start({
  agent: new voice.Agent({ instructions: 'You are a receptionist.', tools: [createLead] }),
});
await session.run({ userInput: 'Hi' }).wait();
await session.run({ userInput: 'I am Ann, 555-0100' }).wait();
say({ event: 'talked', proposedCallId: attachment.proposedCallId });

const lines = createInterface({ input: process.stdin });
for await (const line of lines) if (line === 'hang-up') break;
lines.close();

await session.close();
const report: ReporterReport = await attachment.done;
say({ event: 'done', report, shutdowns });
