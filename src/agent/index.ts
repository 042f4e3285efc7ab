/**
 * callsync for voice agents: report a LiveKit call to the callsync supervisor as it happens.
 * Most agents need only `attachCallsync(ctx, session)`; the rest is for tests and custom wiring.
 */
export {
  attachCallsync,
  attachToSession,
  type AttachableJobContext,
  type AttachToSessionInput,
  type CallsyncAgentOptions,
  type CallsyncAttachment,
  type CallsyncSessionOptions,
  type ReportableSession,
} from './attach.ts';
export {
  callJobFromContext,
  createCallBodyFor,
  directionOfCaller,
  proposeCallId,
  SIP_DISPATCH_RULE_ATTRIBUTE,
  SIP_PHONE_NUMBER_ATTRIBUTE,
  type CallerParticipant,
  type CallFactsOptions,
  type CallJob,
  type JobContextLike,
  type ParticipantLike,
} from './call-job.ts';
export {
  AGENT_ERROR_CODES,
  CallsyncAgentError,
  UNDELIVERED_REASONS,
  type AgentErrorCode,
  type UndeliveredReason,
} from './errors.ts';
export { readPersonaConfig, type ConfigFromMetadata } from './job-config.ts';
export {
  createCallReporter,
  FLUSH_DEADLINE_MS,
  MAX_QUEUED_BYTES,
  MAX_QUEUED_REQUESTS,
  REQUEST_TIMEOUT_MS,
  supervisorRoot,
  type CallReporter,
  type ReporterEvent,
  type ReporterLogger,
  type ReporterOptions,
  type ReporterReport,
  type ReporterStats,
  type RequestKind,
  type TranscriptItemReport,
  type UndeliveredReport,
} from './reporter.ts';
export {
  DEFAULT_LEAD_TOOL_NAME,
  defaultReadLeadData,
  defaultReadLeadId,
  endCallBodyOf,
  leadsOf,
  transcriptItemOf,
  type LeadToolOptions,
} from './session-events.ts';
