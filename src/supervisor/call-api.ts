/**
 * The supervisor's API: the requests it takes and what it answers, as `src/http/server.ts`
 * serves them. The HTTP layer validates each body first (`src/http/schemas.ts`, where every
 * schema is checked to produce the body type named here), so the supervisor sees only
 * well-formed input.
 *
 * These types live beside the supervisor, not in the HTTP layer, so that imports run one way:
 * machines ← services ← supervisor ← http and app.
 */
import type { CallDirection, CallStatus, LeadRecord, TranscriptItem } from '../payload/call-data.ts';
import type { PersonaConfig } from '../payload/persona-config.ts';
import type { CallsyncStatus } from './call-status.ts';
import type { CallDetailView, CallView } from './call-view.ts';

export type { CallsyncStatus } from './call-status.ts';

/** `POST /v1/calls`. */
export interface CreateCallBody {
  roomName: string;
  callerNumber: string;
  config: PersonaConfig;
  /** `inbound` when absent. */
  direction?: CallDirection | undefined;
  /** ISO-8601; the arrival time when absent. */
  startedAt?: string | undefined;
  /** The caller's own id for the call; one is made up when absent. */
  callId?: string | undefined;
  /** The room name when absent. */
  sessionId?: string | undefined;
}

/** `POST /v1/calls/{id}/transcript`: a batch; items whose id the call has seen are ignored. */
export interface TranscriptBody {
  items: TranscriptItem[];
}

/** `POST /v1/calls/{id}/leads`; linking a lead again replaces its data. */
export interface LeadBody {
  leadId: LeadRecord['leadId'];
  data?: LeadRecord['data'] | undefined;
}

/** `POST /v1/calls/{id}/end`; every field may be left out. */
export interface EndCallBody {
  /** ISO-8601; the arrival time when absent. */
  endedAt?: string | undefined;
  /** `completed` when absent. */
  status?: CallStatus | undefined;
  reason?: string | undefined;
}

/** `GET /v1/calls` answers this many calls a page unless asked (at most `CALL_LIST_PAGE_MAX`). */
export const CALL_LIST_PAGE_DEFAULT = 100;
export const CALL_LIST_PAGE_MAX = 1_000;

/** `GET /v1/calls?state=&since=&limit=&cursor=`: newest first, a page at a time. */
export interface CallListQuery {
  state?: string | undefined;
  /** ISO-8601: only calls created at or after it. */
  since?: string | undefined;
  limit?: number | undefined;
  /** The `nextCursor` of the previous page. */
  cursor?: string | undefined;
}

/** One page of `GET /v1/calls`; `nextCursor` is null on the last page. */
export interface CallPage {
  calls: CallView[];
  nextCursor: string | null;
}

/** `POST /v1/calls/{id}/dismiss`: an operator closes a failed call. */
export interface DismissBody {
  reason: string;
}

/** `created: false` when the room already has a live call (or the `callId` exists): that one. */
export interface CreatedCall {
  created: boolean;
  callId: string;
  state: string;
}

export interface CallApi {
  /** True once the store is open and recovery has run. */
  isReady(): boolean;
  /** False while draining: new calls are refused. */
  isAccepting(): boolean;
  createCall(body: CreateCallBody): Promise<CreatedCall>;
  addTranscript(callId: string, body: TranscriptBody): Promise<void>;
  linkLead(callId: string, body: LeadBody): Promise<void>;
  endCall(callId: string, body: EndCallBody): Promise<void>;
  retryCall(callId: string): Promise<void>;
  getCall(callId: string): Promise<CallDetailView>;
  listCalls(query: CallListQuery): Promise<CallPage>;
  /** Closes a `failed` call as `dismissed`: it no longer waits for an operator. */
  dismissCall(callId: string, body: DismissBody): Promise<void>;
  /** `GET /v1/status`: delivery within target over the last hour and day, calls by state. */
  status(): Promise<CallsyncStatus>;
  handleWebhook(rawBody: string, authorization: string | undefined): Promise<void>;
  metrics(): Promise<{ contentType: string; body: string }>;
}
