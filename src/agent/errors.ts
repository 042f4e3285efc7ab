/**
 * The agent side's error and outcome vocabulary.
 *
 * Two kinds of trouble, kept apart on purpose:
 * - Set-up errors (`AGENT_*`) are thrown by `attachCallsync` / `attachToSession` before the
 *   conversation starts: a job without a usable persona config or room is a deployment bug, and
 *   the agent developer must see it at once, with the field named.
 * - Reporting trouble (`REPORT_*`) is never thrown: the reporter must not disturb the
 *   conversation. Each request it could not deliver is listed in its final report with one of
 *   these codes, and logged.
 */
import { CallsyncError } from '../errors.ts';

export const AGENT_ERROR_CODES = {
  /** The job has no metadata, so no persona config. */
  CONFIG_MISSING: 'AGENT_CONFIG_MISSING',
  /** The job metadata is not JSON. */
  CONFIG_NOT_JSON: 'AGENT_CONFIG_NOT_JSON',
  /** The job metadata is JSON but not a persona config (the message names the field). */
  CONFIG_INVALID: 'AGENT_CONFIG_INVALID',
  /** Neither the job nor the room says which room this is. */
  ROOM_UNKNOWN: 'AGENT_ROOM_UNKNOWN',
  /** `supervisorUrl` (or `CALLSYNC_URL`) is missing or not an http(s) URL. */
  SUPERVISOR_URL_INVALID: 'AGENT_SUPERVISOR_URL_INVALID',
} as const;

export type AgentErrorCode = (typeof AGENT_ERROR_CODES)[keyof typeof AGENT_ERROR_CODES];

/** A set-up error of the agent side; never retryable (the job must be fixed, not repeated). */
export class CallsyncAgentError extends CallsyncError {
  constructor(code: AgentErrorCode, message: string, details?: Record<string, unknown>) {
    super(code, message, { retryable: false, details });
  }
}

/** Why a report did not reach the supervisor. */
export const UNDELIVERED_REASONS = {
  /** The supervisor answered 4xx (other than 408/429): it will not take this request as it is. */
  REJECTED: 'REPORT_REJECTED',
  /** The call was never created (its create was rejected), so nothing of it can be delivered. */
  CALL_NOT_CREATED: 'REPORT_CALL_NOT_CREATED',
  /** The flush deadline passed first (an in-flight request may or may not have arrived). */
  DEADLINE: 'REPORT_DEADLINE',
  /** The in-memory bound was reached; the request was refused on arrival. */
  QUEUE_FULL: 'REPORT_QUEUE_FULL',
  /** The event came after the call's end was reported or the reporter was closed. */
  AFTER_CLOSE: 'REPORT_AFTER_CLOSE',
  /** The reporter was closed before the call was started (no caller, no create). */
  NOT_STARTED: 'REPORT_NOT_STARTED',
} as const;

export type UndeliveredReason = (typeof UNDELIVERED_REASONS)[keyof typeof UNDELIVERED_REASONS];
