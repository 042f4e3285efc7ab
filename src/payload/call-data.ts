/**
 * The call-data document posted to `${CRM_BASE_URL}/call-data`: exactly the "Expected CRM
 * Payload Format" of the design note (seed 000), plus a builder from what a call collected.
 *
 * Times are ISO-8601 UTC, durations whole seconds, sizes bytes. Without a usable recording
 * (egress failed, aborted or never started) the recording fields are `null` and the document
 * is still delivered. The CRM sandbox validates what it receives with this same schema.
 */
import { z } from 'zod';
import { campaignIdsOf, type PersonaConfig } from './persona-config.ts';

export const TRANSCRIPT_SOURCE = 'livekit-session';

const isoUtc = z.iso.datetime({ offset: false });
const seconds = z.number().int().nonnegative();
const callStatus = z.enum(['completed', 'failed', 'no-answer', 'busy']);
export type CallStatus = z.infer<typeof callStatus>;
export const callDirection = z.enum(['inbound', 'outbound']);
export type CallDirection = z.infer<typeof callDirection>;

export const conversationItemSchema = z.object({
  role: z.enum(['user', 'assistant']),
  content: z.string(),
  timestamp: isoUtc,
  source: z.string().min(1),
  transcript_confidence: z.number().min(0).max(1).nullable(),
});

export const callDataSchema = z.object({
  campaignId: z.string().min(1),
  voiceAgentId: z.string().min(1),
  client: z.string().min(1),
  callDetails: z.object({
    callId: z.string().min(1),
    direction: callDirection,
    startTime: isoUtc,
    endTime: isoUtc,
    duration: seconds,
    status: callStatus,
    callerNumber: z.string(),
    recordingUrl: z.string().url().nullable(),
    recordingDuration: seconds.nullable(),
    recordingSize: z.number().int().nonnegative().nullable(),
  }),
  caller: z.object({ phoneNumber: z.string() }),
  transcription: z.object({
    session_id: z.string().min(1),
    start_time: isoUtc,
    end_time: isoUtc,
    duration_seconds: seconds,
    total_items: z.number().int().nonnegative(),
    conversation_items: z.array(conversationItemSchema),
    lead_generated: z.boolean(),
    metadata: z.record(z.string(), z.unknown()),
  }),
  lead: z.record(z.string(), z.unknown()),
});

export type CallData = z.infer<typeof callDataSchema>;

/** One transcript turn as callsync keeps it (the agent reports it; `timestamp` is ISO-8601). */
export interface TranscriptItem {
  id: string;
  role: 'user' | 'assistant';
  content: string;
  timestamp: string;
  transcriptConfidence?: number | null | undefined;
}

/** A lead the bot created during the call. */
export interface LeadRecord {
  leadId: string;
  data: Record<string, unknown>;
}

/** The recording as delivered: the URL the CRM answered and facts read from the file itself. */
export interface DeliveredRecording {
  url: string;
  sizeBytes: number;
  durationSeconds: number;
}

/** Everything a call collected, in the JSON-safe form the call actor keeps. */
export interface CollectedCall {
  callId: string;
  sessionId: string;
  roomName: string;
  direction: CallDirection;
  callerNumber: string;
  config: PersonaConfig;
  /** ISO-8601. */
  startedAt: string;
  /** ISO-8601. */
  endedAt: string;
  status: CallStatus;
  transcript: readonly TranscriptItem[];
  leads: readonly LeadRecord[];
  recording: DeliveredRecording | null;
  /** Extra facts for `transcription.metadata` (egress id and outcome, end reason). */
  metadata?: Record<string, unknown>;
}

function toIsoUtc(value: string): string {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new TypeError(`not an ISO-8601 time: ${JSON.stringify(value)}`);
  return new Date(ms).toISOString();
}

function wholeSecondsBetween(startIso: string, endIso: string): number {
  return Math.max(0, Math.round((Date.parse(endIso) - Date.parse(startIso)) / 1000));
}

/**
 * Builds the CRM document. `lead` is the most recently linked lead (`{}` when the bot created
 * none); when the bot created several, all their ids are listed in `transcription.metadata.lead_ids`.
 */
export function buildCallData(call: CollectedCall): CallData {
  const { campaignId, voiceAgentId, client } = campaignIdsOf(call.config);
  const startTime = toIsoUtc(call.startedAt);
  const endTime = toIsoUtc(call.endedAt);
  const duration = wholeSecondsBetween(startTime, endTime);
  const lastLead = call.leads.at(-1);
  const conversationItems = call.transcript.map((item) => ({
    role: item.role,
    content: item.content,
    timestamp: toIsoUtc(item.timestamp),
    source: TRANSCRIPT_SOURCE,
    transcript_confidence: item.transcriptConfidence ?? null,
  }));
  const document: CallData = {
    campaignId,
    voiceAgentId,
    client,
    callDetails: {
      callId: call.callId,
      direction: call.direction,
      startTime,
      endTime,
      duration,
      status: call.status,
      callerNumber: call.callerNumber,
      recordingUrl: call.recording?.url ?? null,
      recordingDuration: call.recording ? Math.round(call.recording.durationSeconds) : null,
      recordingSize: call.recording?.sizeBytes ?? null,
    },
    caller: { phoneNumber: call.callerNumber },
    transcription: {
      session_id: call.sessionId,
      start_time: startTime,
      end_time: endTime,
      duration_seconds: duration,
      total_items: conversationItems.length,
      conversation_items: conversationItems,
      lead_generated: call.leads.length > 0,
      metadata: {
        auto_saved: true,
        room_name: call.roomName,
        ...(call.leads.length > 1 ? { lead_ids: call.leads.map((lead) => lead.leadId) } : {}),
        ...call.metadata,
      },
    },
    // leadId last, so a `leadId` key inside the bot's data cannot hide the real id.
    lead: lastLead ? { ...lastLead.data, leadId: lastLead.leadId } : {},
  };
  // Parsing our own output catches a builder bug here, not as a CRM 400 at 3 a.m.
  return callDataSchema.parse(document);
}
