/**
 * From AgentSession events to reporter requests, as pure functions (no session, no room, no I/O).
 *
 * - Transcript: `conversation_item_added` items that are messages with role `user` or
 *   `assistant` and some text. Handoff items, system/developer messages and content without
 *   text (audio, images) are not turns of the conversation. `createdAt` (ms) becomes ISO-8601
 *   UTC; STT's `transcriptConfidence` is kept when known (clamped to [0, 1]), else `null`.
 *   Text past the supervisor's 100 000 characters is cut (with a marker) rather than refused.
 * - Leads: `function_tools_executed` calls of the lead tool (`create_lead` by default) whose
 *   output is not an error. Tool results reach the event JSON-encoded (agents-js stringifies
 *   the return value), so the default reads `leadId` from a tool that returns `{ leadId }`
 *   (a string or a number); the lead's data is the tool's arguments (what the bot collected).
 *   Both readers are options, for tools with another shape.
 * - End: `close` becomes `end` at the event's time; a session that closed on an error is
 *   `failed`, any other close (hang-up, job shutdown, the agent ending the call) `completed`.
 */
import type { llm, voice } from '@livekit/agents';
import type { EndCallBody, LeadBody } from '../supervisor/call-api.ts';
import type { TranscriptItemReport } from './reporter.ts';

export const DEFAULT_LEAD_TOOL_NAME = 'create_lead';
/** The supervisor's limits (`src/http/schemas.ts`). */
export const TRANSCRIPT_CONTENT_MAX_CHARS = 100_000;
export const END_REASON_MAX_CHARS = 1_000;
const LEAD_ID_MAX_CHARS = 200;
const CUT_MARKER = ' [cut]';

export interface LeadToolOptions {
  /** The tool whose results are leads. Default `create_lead`. */
  name?: string | undefined;
  /** The lead id from the tool's result (JSON-decoded when it is JSON). Default: its `leadId`. */
  readLeadId?: ((output: unknown) => string | undefined) | undefined;
  /** The lead's data from the tool's arguments and result. Default: the arguments, when an object. */
  readLeadData?: ((args: unknown, output: unknown) => Record<string, unknown> | undefined) | undefined;
}

function isoOf(ms: number): string {
  return new Date(Number.isFinite(ms) ? ms : Date.now()).toISOString();
}

function confidenceOf(value: number | undefined): number | null {
  if (value === undefined || !Number.isFinite(value)) return null;
  return Math.min(Math.max(value, 0), 1);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function decode(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** The transcript item for a chat item, or undefined when it is not a user/assistant turn with text. */
export function transcriptItemOf(item: llm.ChatItem): TranscriptItemReport | undefined {
  if (item.type !== 'message') return undefined;
  if (item.role !== 'user' && item.role !== 'assistant') return undefined;
  const text = item.textContent;
  if (text === undefined || text.trim() === '') return undefined;
  const content =
    text.length <= TRANSCRIPT_CONTENT_MAX_CHARS
      ? text
      : `${text.slice(0, TRANSCRIPT_CONTENT_MAX_CHARS - CUT_MARKER.length)}${CUT_MARKER}`;
  return {
    id: item.id,
    role: item.role,
    content,
    timestamp: isoOf(item.createdAt),
    transcriptConfidence: confidenceOf(item.transcriptConfidence),
  };
}

export function defaultReadLeadId(output: unknown): string | undefined {
  if (!isPlainObject(output)) return undefined;
  const { leadId } = output;
  if (typeof leadId === 'number' && Number.isFinite(leadId)) return String(leadId);
  if (typeof leadId === 'string' && leadId.trim() !== '') return leadId.trim();
  return undefined;
}

export function defaultReadLeadData(args: unknown): Record<string, unknown> | undefined {
  return isPlainObject(args) ? args : undefined;
}

export interface LeadsOfResult {
  leads: LeadBody[];
  /** Lead-tool calls that succeeded but whose result held no usable lead id (by call id). */
  unreadable: string[];
}

/** The leads created by the lead tool in one `function_tools_executed` event. */
export function leadsOf(
  event: voice.FunctionToolsExecutedEvent,
  options: LeadToolOptions = {},
): LeadsOfResult {
  const toolName = options.name ?? DEFAULT_LEAD_TOOL_NAME;
  const readLeadId = options.readLeadId ?? defaultReadLeadId;
  const readLeadData = options.readLeadData ?? defaultReadLeadData;
  const result: LeadsOfResult = { leads: [], unreadable: [] };
  event.functionCalls.forEach((call, index) => {
    if (call.name !== toolName) return;
    // The arrays are parallel; matching on callId also covers a producer that does not keep them so.
    const output =
      event.functionCallOutputs.find((candidate) => candidate.callId === call.callId) ??
      event.functionCallOutputs[index];
    if (output === undefined || output.isError) return;
    const decoded = decode(output.output);
    const leadId = readLeadId(decoded);
    if (leadId === undefined || leadId.trim() === '' || leadId.length > LEAD_ID_MAX_CHARS) {
      result.unreadable.push(call.callId);
      return;
    }
    const data = readLeadData(decode(call.args), decoded);
    result.leads.push({ leadId: leadId.trim(), ...(data === undefined ? {} : { data }) });
  });
  return result;
}

function describeCloseError(error: voice.CloseEvent['error']): string | undefined {
  if (error === null || error === undefined) return undefined;
  const inner = (error as { error?: unknown }).error;
  if (inner instanceof Error) return inner.message;
  const type = (error as { type?: unknown }).type;
  return typeof type === 'string' ? type : 'unknown error';
}

/** The `end` body for the session's `close` event. */
export function endCallBodyOf(event: voice.CloseEvent): EndCallBody {
  const detail = describeCloseError(event.error);
  const reason = String(event.reason || 'closed');
  return {
    endedAt: isoOf(event.createdAt),
    status: event.reason === 'error' ? 'failed' : 'completed',
    reason: (detail === undefined ? reason : `${reason}: ${detail}`).slice(0, END_REASON_MAX_CHARS),
  };
}
