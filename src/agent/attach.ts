/**
 * Attaching callsync to a voice.AgentSession in a LiveKit job: one call, `attachCallsync(ctx,
 * session)`, after `ctx.connect()` and before `session.start()`.
 *
 * What it does, and why:
 * - Reads and validates the persona config from the job metadata first, so a mis-dispatched
 *   job fails before the caller hears anything (`AGENT_CONFIG_*`, field named).
 * - Waits for the caller (the first non-agent participant, or the one named), then queues
 *   `POST /v1/calls`: the job has connected and the caller is known.
 * - Reports transcript turns from `conversation_item_added`, leads from
 *   `function_tools_executed` (`session-events.ts` has the mapping), each at most once.
 * - On `close`: queues `end`, starts the flush (bounded by the reporter's deadline), then calls
 *   `ctx.shutdown()`, because agents-js 1.9 closes the session on a SIP hang-up but leaves the
 *   job in the room until the room empties (~20 s). A job shutdown callback awaits the same
 *   flush (and ends the call itself if the session never closed), so the process stays up for
 *   it when callbacks run; when they are cut short, the flush had already started at close.
 * - Nothing here throws into the session: listener errors are caught and logged.
 *
 * `attachToSession` is the same wiring over the small `CallJob` interface, for tests and for
 * agents that build their own reporter.
 */
import { log, voice, type llm } from '@livekit/agents';
import type { EndCallBody } from '../supervisor/call-api.ts';
import { createLogger } from '../logging/logger.ts';
import {
  callJobFromContext,
  createCallBodyFor,
  type CallFactsOptions,
  type CallJob,
  type JobContextLike,
  type ParticipantLike,
} from './call-job.ts';
import { AGENT_ERROR_CODES, CallsyncAgentError } from './errors.ts';
import { readPersonaConfig } from './job-config.ts';
import {
  createCallReporter,
  supervisorRoot,
  type CallReporter,
  type ReporterLogger,
  type ReporterOptions,
  type ReporterReport,
} from './reporter.ts';
import { endCallBodyOf, leadsOf, transcriptItemOf, type LeadToolOptions } from './session-events.ts';

/** The parts of an AgentSession the wiring uses; a real `voice.AgentSession` fits. */
export type ReportableSession = Pick<voice.AgentSession, 'on' | 'off' | 'history'>;

export interface CallsyncSessionOptions extends CallFactsOptions {
  /** Which tool creates leads and how to read them. Default: `create_lead` returning `{ leadId }`. */
  leadTool?: LeadToolOptions | undefined;
  /** Call `ctx.shutdown()` once the session closed. Default true. */
  shutdownOnClose?: boolean | undefined;
  logger?: ReporterLogger | undefined;
}

export interface AttachToSessionInput extends CallsyncSessionOptions {
  session: ReportableSession;
  job: CallJob;
  reporter: CallReporter;
}

export interface CallsyncAttachment {
  /** The call id proposed to the supervisor (it may answer another; see `reporter.callId`). */
  readonly proposedCallId: string;
  readonly reporter: CallReporter;
  /** The final report, once the call ended (session closed or job shut down) and the flush is over. Never rejects. */
  readonly done: Promise<ReporterReport>;
  /** Ends the call now: queues `end` and flushes. Idempotent; the session's `close` does it too. */
  finish(end?: EndCallBody): Promise<ReporterReport>;
}

const ITEM_ADDED = voice.AgentSessionEventTypes.ConversationItemAdded;
const TOOLS_EXECUTED = voice.AgentSessionEventTypes.FunctionToolsExecuted;
const CLOSED = voice.AgentSessionEventTypes.Close;

function defaultLogger(): ReporterLogger {
  return createLogger({ level: process.env.LOG_LEVEL ?? 'info' }).child({ component: 'callsync' });
}

/** The wiring over a `CallJob`. Throws `CallsyncAgentError` (before attaching anything) when the config is unusable. */
export function attachToSession(input: AttachToSessionInput): CallsyncAttachment {
  const { session, job, reporter } = input;
  const create = createCallBodyFor(job, input);
  const logger = input.logger ?? defaultLogger();
  const shutdownOnClose = input.shutdownOnClose ?? true;
  const reportedItems = new Set<string>();
  const reportedLeads = new Set<string>();
  let finishing: Promise<ReporterReport> | undefined;
  let resolveDone!: (report: ReporterReport) => void;
  const done = new Promise<ReporterReport>((resolve) => {
    resolveDone = resolve;
  });

  function guarded<E>(what: string, handler: (event: E) => void): (event: E) => void {
    return (event) => {
      try {
        handler(event);
      } catch (error) {
        logger.error({ err: error, event: what }, 'callsync: could not report a session event');
      }
    };
  }

  function reportItem(item: llm.ChatItem) {
    const transcriptItem = transcriptItemOf(item);
    if (transcriptItem === undefined || reportedItems.has(transcriptItem.id)) return;
    reportedItems.add(transcriptItem.id);
    reporter.addTranscriptItem(transcriptItem);
  }

  const onItemAdded = guarded<voice.ConversationItemAddedEvent>('conversation_item_added', (event) =>
    reportItem(event.item),
  );

  const onToolsExecuted = guarded<voice.FunctionToolsExecutedEvent>('function_tools_executed', (event) => {
    const { leads, unreadable } = leadsOf(event, input.leadTool);
    for (const lead of leads) {
      if (reportedLeads.has(lead.leadId)) continue;
      reportedLeads.add(lead.leadId);
      reporter.addLead(lead);
    }
    if (unreadable.length > 0) {
      logger.warn(
        { tool: input.leadTool?.name ?? 'create_lead', callIds: unreadable },
        'callsync: the lead tool succeeded but its result has no lead id; set leadTool.readLeadId',
      );
    }
  });

  function detach() {
    session.off(ITEM_ADDED, onItemAdded);
    session.off(TOOLS_EXECUTED, onToolsExecuted);
    session.off(CLOSED, onClose);
  }

  function finish(end: EndCallBody = { endedAt: new Date().toISOString(), status: 'completed' }) {
    if (finishing) return finishing;
    detach();
    reporter.endCall(end);
    finishing = reporter.close();
    void finishing.then(resolveDone);
    return finishing;
  }

  const onClose = guarded<voice.CloseEvent>('close', (event) => {
    void finish(endCallBodyOf(event));
    if (shutdownOnClose) job.shutdown(`callsync: agent session closed (${String(event.reason)})`);
  });

  reporter.startCall(create);
  // Turns the session already had (attached after start) are reported too, in order.
  for (const item of session.history.items) reportItem(item);
  session.on(ITEM_ADDED, onItemAdded);
  session.on(TOOLS_EXECUTED, onToolsExecuted);
  session.on(CLOSED, onClose);
  job.addShutdownCallback?.(async () => {
    await finish({ endedAt: new Date().toISOString(), status: 'completed', reason: 'job_shutdown' });
  });

  return { proposedCallId: create.callId ?? '', reporter, done, finish };
}

/** A real `JobContext` fits. */
export interface AttachableJobContext extends JobContextLike {
  waitForParticipant(identity?: string): Promise<ParticipantLike>;
}

export interface CallsyncAgentOptions extends CallsyncSessionOptions {
  /** The supervisor's root URL. Default `CALLSYNC_URL`. */
  supervisorUrl?: string | undefined;
  /** Default `CALLSYNC_INGEST_TOKEN`. */
  ingestToken?: string | undefined;
  /** The caller, when the agent already has it (e.g. an outbound call it dialled). */
  participant?: ParticipantLike | undefined;
  /** Otherwise wait for this participant, or the first non-agent one. */
  participantIdentity?: string | undefined;
  /** Reporter tuning (timeouts, bounds, flush deadline, `onEvent`). */
  reporter?: Omit<ReporterOptions, 'baseUrl' | 'token' | 'logger'> | undefined;
}

function agentsLogger(): ReporterLogger {
  try {
    return log().child({ component: 'callsync' });
  } catch {
    // Outside an agents-js worker the framework logger is not initialised.
    return defaultLogger();
  }
}

/**
 * Attaches callsync to a job's session: call after `ctx.connect()`, before `session.start()`.
 * Throws `CallsyncAgentError` when the job metadata is not a persona config or `CALLSYNC_URL`
 * is unset; never throws once attached.
 */
export async function attachCallsync(
  ctx: AttachableJobContext,
  session: ReportableSession,
  options: CallsyncAgentOptions = {},
): Promise<CallsyncAttachment> {
  const config = options.config ?? readPersonaConfig(ctx.job.metadata, options.configFromMetadata);
  const supervisorUrl = options.supervisorUrl ?? process.env.CALLSYNC_URL;
  if (supervisorUrl === undefined || supervisorUrl.trim() === '') {
    throw new CallsyncAgentError(
      AGENT_ERROR_CODES.SUPERVISOR_URL_INVALID,
      'CALLSYNC_URL is not set: the agent needs the callsync supervisor URL (e.g. http://127.0.0.1:8080)',
    );
  }
  supervisorRoot(supervisorUrl);
  const participant = options.participant ?? (await ctx.waitForParticipant(options.participantIdentity));
  const job = callJobFromContext(ctx, participant);
  const logger = options.logger ?? agentsLogger();
  const reporter = createCallReporter({
    ...options.reporter,
    baseUrl: supervisorUrl,
    token: options.ingestToken ?? process.env.CALLSYNC_INGEST_TOKEN,
    logger,
  });
  return attachToSession({ ...options, config, session, job, reporter, logger });
}
