/**
 * The supervisor: one durable XState actor per concurrent call, kept in a plain map.
 *
 * Why a map of root actors and not children of one parent machine: every spawn copies the
 * parent's children and every parent event costs O(children) (measured in the XState notes),
 * so nothing here does per-call work that grows with the number of calls: routing is by hash
 * map (call id, room name, egress id), and the per-state gauge is kept incrementally.
 *
 * Durability policy (the store's header says why):
 * - A call is written to the store before its actor starts. Every external event (transcript,
 *   lead, end, a webhook's effect, retry) is committed to the call's event log before the API
 *   answers, and applied to the actor after the commit, in log order (`StoreWriter`).
 * - A snapshot is written (group-committed, without transcript items) when a step changes or an
 *   effect's result changes the context; a change that only applied a logged event is not
 *   written again, the log has it. Each snapshot records the log position it has applied.
 * - On start every call that was not final is restored from its snapshot, its transcript
 *   rebuilt from the log, and the events after the snapshot's position applied again; the
 *   machines re-arm their timers from absolute times and re-run the effect that was in flight,
 *   which is idempotent (egress id reused, CRM `Idempotency-Key`).
 * - When the store cannot take a write, the API answers `503 STORE_UNAVAILABLE` for events (the
 *   client sends again) and the supervisor keeps its own writes queued until the store is back.
 * - A call's actor leaves memory when it reaches `done` or `failed`; a failed call is restored
 *   from the store when an operator re-drives it.
 *
 * Beside it: what operators see of a call (logs, metrics, journal) is `supervisor/call-observer.ts`,
 * the read model of `GET /v1/calls` is `supervisor/call-view.ts`, and the API it offers the HTTP
 * layer is `supervisor/call-api.ts`.
 *
 * Lifecycle: `start()` opens the store and recovers; `drain(timeoutMs)` refuses new calls and
 * lets calls that already ended finish delivering, up to the timeout; `close()` stops every
 * actor (their last snapshot is already stored) and closes the store. Both are safe twice.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createActor, type Actor, type Snapshot } from 'xstate';
import type { Logger } from './logging/logger.ts';
import type { CallLogic } from './machines/call.actors.ts';
import type { CallExternalEvent, CallStateName } from './machines/call.events.ts';
import { CALL_MACHINE_VERSION } from './machines/call.machine.ts';
import type { TranscriptItem } from './payload/call-data.ts';
import type { CallContext, CallLimits, CallMachineInput } from './machines/call.types.ts';
import type { TimeSource } from './machines/timer.actor.ts';
import type { MetricsRecorder } from './metrics/metrics.recorder.ts';
import { egressOutcomeOf } from './services/livekit-effects.ts';
import type { LiveKitWebhook } from './services/livekit-webhook.ts';
import { StoreUnavailableError, type CallRow, type CallStore, type StoredEvent } from './store/call-store.ts';
import type {
  CallApi,
  CallListQuery,
  CreateCallBody,
  CreatedCall,
  EndCallBody,
  LeadBody,
  TranscriptBody,
} from './supervisor/call-api.ts';
import { createCallObserver, type CallFinishedEvent, type CallObserver } from './supervisor/call-observer.ts';
import { CALL_STATE_NAMES, callStateOf, callStatusOf, contextOf } from './supervisor/call-state.ts';
import { callDetailViewOf, callViewOf, type CallDetailView, type CallView } from './supervisor/call-view.ts';
import { StoreWriter } from './supervisor/store-writer.ts';
import { mergeTranscript } from './machines/call.machine.ts';
import { ApiError, CallsyncError } from './errors.ts';

/**
 * Per call, so one call cannot hold unbounded memory nor build call data no CRM takes
 * (documented in the README): a two-hour call with a turn every two seconds is 3,600 items.
 */
export const CALL_TRANSCRIPT_MAX_ITEMS = 5_000;
/** Transcript text per call, in UTF-16 characters (about a million: some 150,000 spoken words). */
export const CALL_TRANSCRIPT_MAX_CHARS = 1_000_000;
export const CALL_MAX_LEADS = 20;
/**
 * Webhook ids remembered to drop a repeat (LiveKit retries a delivery it saw fail): about an
 * hour of a busy deployment's events. In memory: after a restart a repeat may pass once, and
 * every call event is idempotent in the machine anyway (an end after the end changes nothing).
 */
export const WEBHOOK_IDS_REMEMBERED = 50_000;

type CallActor = Actor<CallLogic>;
type CallSnapshot = ReturnType<CallActor['getSnapshot']>;

const MACHINE_VERSION = String(CALL_MACHINE_VERSION);

interface LiveCall {
  callId: string;
  roomName: string;
  actor: CallActor;
  log: Logger;
  state: CallStateName;
  enteredStateAt: number;
  egressId: string | null;
  lastSnapshot: CallSnapshot | undefined;
  /** The state value of the last written snapshot, as JSON (is a change a step?). */
  lastValue: string;
  /** The last event-log position applied to the actor. */
  appliedSeq: number;
  /** True while a logged event is being applied: its context change needs no snapshot write. */
  applying: boolean;
  /** Accepted, not yet committed: counted against the per-call limits. */
  pending: { items: number; chars: number; leads: Set<string> };
}

/** What one event-log entry holds: the actor's event, and the webhook's id when it came from one. */
interface LoggedEvent {
  event: CallExternalEvent;
  webhookId?: string;
}

export interface SupervisorEventMap {
  /** A call reached `done` or `failed`. */
  'call:finished': [CallFinishedEvent];
  /** The store became unavailable (writes are kept and retried) or available again. */
  'store:availability': [{ available: boolean; error: unknown }];
}

export interface WebhookVerifier {
  verify(rawBody: string, authorization: string | undefined): Promise<LiveKitWebhook>;
}

export interface SupervisorDeps {
  store: CallStore;
  /** The call machine with its effects provided (`createCallLogic`). */
  logic: CallLogic;
  webhooks: WebhookVerifier;
  logger: Logger;
  metrics: MetricsRecorder;
  /** Prometheus text of the registry the metrics live in. */
  renderMetrics: () => Promise<{ contentType: string; body: string }>;
  time: TimeSource;
  limits?: Partial<CallLimits> | undefined;
}

/** `CALL-20251029-12345678-1a2b3c`: the seed's shape, made unique with a random suffix. */
export function newCallId(callerNumber: string, nowMs: number): string {
  const day = new Date(nowMs).toISOString().slice(0, 10).replaceAll('-', '');
  const digits = callerNumber.replace(/\D/g, '').slice(-8) || 'unknown';
  return `CALL-${day}-${digits}-${randomBytes(3).toString('hex')}`;
}

function callDataSent(callId: string): ApiError {
  return new ApiError(
    'CALL_DATA_SENT',
    `call ${callId} has built its call data; later transcript items and leads cannot reach the CRM`,
  );
}

export class Supervisor implements CallApi {
  readonly events = new EventEmitter<SupervisorEventMap>();
  readonly #deps: SupervisorDeps;
  readonly #live = new Map<string, LiveCall>();
  readonly #byRoom = new Map<string, string>();
  readonly #byEgress = new Map<string, string>();
  /** Calls that ended and are being delivered: what a drain waits for. */
  readonly #delivering = new Set<string>();
  readonly #stateCounts = new Map<CallStateName, number>(CALL_STATE_NAMES.map((state) => [state, 0]));
  readonly #writer: StoreWriter;
  readonly #observer: CallObserver;
  /** The last answer of the failed-calls count, kept for scrapes while the store is away. */
  #failedWaiting = 0;
  #ready = false;
  readonly #seenWebhooks = new Set<string>();
  #draining: Promise<void> | undefined;
  #accepting = true;
  #started: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  constructor(deps: SupervisorDeps) {
    this.#deps = deps;
    this.#writer = new StoreWriter({
      store: deps.store,
      logger: deps.logger,
      time: deps.time,
      onAvailability: (available, error) => {
        deps.metrics.storeAvailability({ available });
        this.events.emit('store:availability', { available, error });
      },
    });
    this.#observer = createCallObserver({
      logger: deps.logger,
      metrics: deps.metrics,
      time: deps.time,
      journal: (callId, entry) => this.#writer.appendJournal(callId, entry),
      finished: (event) => this.events.emit('call:finished', event),
    });
  }

  // ---------------------------------------------------------------------------------------
  // Lifecycle

  /** Opens the store and resumes every unfinished call. Safe to call twice. */
  start(): Promise<void> {
    this.#started ??= this.#recover();
    return this.#started;
  }

  async #recover(): Promise<void> {
    const { store, logger, metrics } = this.#deps;
    await store.open();
    const rows = await store.listActive();
    let restored = 0;
    let skipped = 0;
    for (const row of rows) {
      if (row.machineVersion !== MACHINE_VERSION) {
        skipped += 1;
        logger.error(
          { callId: row.callId, machineVersion: row.machineVersion, expected: MACHINE_VERSION },
          'call left alone: stored by another machine version',
        );
        continue;
      }
      try {
        const events = await store.getEvents(row.callId);
        const call = this.#attach(row, this.#restoreActor(row, events));
        for (const { seq, event } of events) {
          const logged = event as LoggedEvent;
          if (logged.webhookId !== undefined) this.#rememberWebhook(logged.webhookId);
          if (seq > row.appliedSeq) this.#apply(call, seq, logged.event);
        }
        restored += 1;
      } catch (error) {
        skipped += 1;
        logger.error({ callId: row.callId, err: error }, 'call could not be restored');
      }
    }
    metrics.callsRestored({ restored, skipped });
    logger.info({ restored, skipped }, 'recovery done');
    this.#ready = true;
  }

  /**
   * Stops taking new calls and waits until every call that has ended is delivered (or failed),
   * at most `timeoutMs`. Calls still in conversation stay persisted and resume on the next start.
   */
  drain(timeoutMs: number): Promise<void> {
    this.#accepting = false;
    // Safe twice: a second call waits for the first drain (its timeout stands).
    this.#draining ??= (async () => {
      if (this.#delivering.size === 0) return;
      this.#deps.logger.info({ delivering: this.#delivering.size, timeoutMs }, 'draining');
      await new Promise<void>((resolve) => {
        const timer = this.#deps.time.setTimeout(resolve, timeoutMs);
        this.#drained = () => {
          this.#deps.time.clearTimeout(timer);
          resolve();
        };
      });
      this.#drained = undefined;
    })();
    return this.#draining;
  }

  /** Stops every actor (their snapshots are already stored) and closes the store. Safe twice. */
  close(): Promise<void> {
    // Every step runs even when one fails (each failure is logged); the first failure is thrown.
    this.#closing ??= (async () => {
      this.#accepting = false;
      this.#ready = false;
      this.#drained?.();
      const failures: unknown[] = [];
      const step = async (name: string, run: () => unknown) => {
        try {
          await run();
        } catch (error) {
          failures.push(error);
          this.#deps.logger.error({ err: error, step: name }, 'close step failed');
        }
      };
      await this.#started?.catch(() => undefined);
      for (const call of [...this.#live.values()]) {
        await step(`stop call ${call.callId}`, () => {
          this.#forget(call);
          call.actor.stop();
        });
      }
      await step('write what is queued', () => this.#writer.close());
      await step('close the store', () => this.#deps.store.close());
      if (failures.length > 0) throw failures[0];
    })();
    return this.#closing;
  }

  isReady(): boolean {
    return this.#ready;
  }

  /** Whether the store takes writes now; `/readyz` reports it. */
  storeStatus(): { ok: true } | { ok: false; message: string } {
    if (this.#writer.available) return { ok: true };
    const error = this.#writer.lastError;
    return { ok: false, message: error instanceof Error ? error.message : 'the call store is unavailable' };
  }

  isAccepting(): boolean {
    return this.#accepting && this.#ready;
  }

  /** Live call actors per card state, for `callsync_calls_active`. */
  activeCallsByState(): ReadonlyMap<string, number> {
    return this.#stateCounts;
  }

  /** Per card state, seconds the longest-waiting live call has been in it (read at scrape time). */
  oldestCallAgeSecondsByState(): ReadonlyMap<string, number> {
    const now = this.#deps.time.now();
    // Every state has a series (0 when no call is in it), so dashboards and alerts see data.
    const oldest = new Map<string, number>(CALL_STATE_NAMES.map((state) => [state, 0]));
    for (const call of this.#live.values()) {
      const age = (now - call.enteredStateAt) / 1000;
      if (age > (oldest.get(call.state) ?? 0)) oldest.set(call.state, age);
    }
    return oldest;
  }

  /** Failed calls waiting for an operator's retry (read at scrape time). */
  async failedCallsWaiting(): Promise<number> {
    if (!this.#ready) return 0;
    // While the store is away a scrape gets the last count, not an error (metrics matter most then).
    try {
      this.#failedWaiting = await this.#store((store) => store.countCalls('failed'));
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
    }
    return this.#failedWaiting;
  }

  get liveCallCount(): number {
    return this.#live.size;
  }

  // ---------------------------------------------------------------------------------------
  // HTTP API

  async createCall(body: CreateCallBody): Promise<CreatedCall> {
    this.#assertReady();
    const existingId = this.#byRoom.get(body.roomName);
    const existing = existingId === undefined ? undefined : this.#live.get(existingId);
    if (existing) return { created: false, callId: existing.callId, state: existing.state };

    const now = this.#deps.time.now();
    const callId = body.callId ?? newCallId(body.callerNumber, now);
    if (body.callId !== undefined) {
      const taken = await this.#store((store) => store.getCall(callId));
      if (taken && taken.roomName !== body.roomName) {
        throw new ApiError('CALL_ID_TAKEN', `callId ${callId} belongs to another room`, {
          field: 'callId',
        });
      }
      if (taken) return { created: false, callId: taken.callId, state: taken.state };
    }
    const input: CallMachineInput = {
      call: {
        callId,
        sessionId: body.sessionId ?? body.roomName,
        roomName: body.roomName,
        direction: body.direction ?? 'inbound',
        callerNumber: body.callerNumber,
        config: body.config,
        startedAt: new Date(body.startedAt === undefined ? now : Date.parse(body.startedAt)).toISOString(),
      },
      now,
      limits: this.#deps.limits,
    };
    const actor = createActor(this.#deps.logic, { input, id: callId });
    const snapshot = actor.getPersistedSnapshot();
    const create = () =>
      this.#store((store) =>
        store.createCall({
          callId,
          roomName: body.roomName,
          machineVersion: MACHINE_VERSION,
          state: 'recording',
          snapshot,
          createdAt: new Date(now).toISOString(),
        }),
      );
    let { created, call } = await create();
    // The room's previous call has finished here, and its final snapshot is still queued: once
    // it is committed the room is free.
    const queuedStatus = created ? undefined : this.#writer.pendingSnapshot(call.callId)?.status;
    if (queuedStatus !== undefined && queuedStatus !== 'active' && !this.#live.has(call.callId)) {
      await this.#writer.flush();
      ({ created, call } = await create());
    }
    // The store keeps one live call per room, so of two concurrent requests only one creates.
    if (!created) return { created: false, callId: call.callId, state: call.state };
    // Another request for the room may have attached it meanwhile (the store answered late).
    const attached = this.#byRoom.get(body.roomName);
    if (attached !== undefined && attached !== callId) {
      return { created: false, callId: attached, state: this.#live.get(attached)?.state ?? call.state };
    }

    this.#attach(call, actor);
    this.#deps.metrics.callStarted({ direction: input.call.direction });
    return { created: true, callId, state: this.#live.get(callId)?.state ?? 'recording' };
  }

  async addTranscript(callId: string, body: TranscriptBody): Promise<void> {
    const call = await this.#collectingCall(callId);
    const { transcript } = call.actor.getSnapshot().context;
    const known = new Set(transcript.map((item) => item.id));
    const fresh = new Map(body.items.filter((item) => !known.has(item.id)).map((item) => [item.id, item]));
    let freshChars = 0;
    for (const item of fresh.values()) freshChars += item.content.length;
    let heldChars = call.pending.chars;
    for (const item of transcript) heldChars += item.content.length;
    const totalChars = heldChars + freshChars;
    if (totalChars > CALL_TRANSCRIPT_MAX_CHARS) {
      throw new ApiError(
        'CALL_LIMIT_REACHED',
        `items: call ${callId} would hold ${totalChars} characters of transcript, over ${CALL_TRANSCRIPT_MAX_CHARS}`,
        { field: 'items', limit: CALL_TRANSCRIPT_MAX_CHARS },
      );
    }
    const totalItems = transcript.length + call.pending.items + fresh.size;
    if (totalItems > CALL_TRANSCRIPT_MAX_ITEMS) {
      throw new ApiError(
        'CALL_LIMIT_REACHED',
        `items: call ${callId} would hold ${totalItems} transcript items, over ${CALL_TRANSCRIPT_MAX_ITEMS}`,
        { field: 'items', limit: CALL_TRANSCRIPT_MAX_ITEMS },
      );
    }
    call.pending.items += fresh.size;
    call.pending.chars += freshChars;
    try {
      await this.#accept(
        call,
        { event: { type: 'call.transcript', items: body.items, at: this.#deps.time.now() } },
        'collecting',
      );
    } finally {
      call.pending.items -= fresh.size;
      call.pending.chars -= freshChars;
    }
  }

  async linkLead(callId: string, body: LeadBody): Promise<void> {
    const call = await this.#collectingCall(callId);
    const { leads } = call.actor.getSnapshot().context;
    const linked = new Set([...leads.map((lead) => lead.leadId), ...call.pending.leads]);
    if (!linked.has(body.leadId) && linked.size >= CALL_MAX_LEADS) {
      throw new ApiError(
        'CALL_LIMIT_REACHED',
        `leadId: call ${callId} already links ${CALL_MAX_LEADS} leads`,
        {
          field: 'leadId',
          limit: CALL_MAX_LEADS,
        },
      );
    }
    const fresh = !linked.has(body.leadId);
    if (fresh) call.pending.leads.add(body.leadId);
    try {
      await this.#accept(
        call,
        {
          event: { type: 'call.lead', leadId: body.leadId, data: body.data ?? {}, at: this.#deps.time.now() },
        },
        'collecting',
      );
    } finally {
      if (fresh) call.pending.leads.delete(body.leadId);
    }
  }

  async endCall(callId: string, body: EndCallBody): Promise<void> {
    const call = await this.#liveCall(callId);
    const at = this.#deps.time.now();
    const startedAt = Date.parse(call.actor.getSnapshot().context.call.startedAt);
    if (body.endedAt !== undefined && Date.parse(body.endedAt) < startedAt) {
      throw new ApiError('INVALID_BODY', `endedAt: ${body.endedAt} is before the call's start`, {
        field: 'endedAt',
      });
    }
    await this.#accept(call, {
      event: {
        type: 'call.end',
        endedAt: new Date(body.endedAt === undefined ? at : Date.parse(body.endedAt)).toISOString(),
        status: body.status ?? 'completed',
        reason: body.reason,
        at,
      },
    });
  }

  async retryCall(callId: string): Promise<void> {
    this.#assertReady();
    const live = this.#live.get(callId);
    if (live) {
      throw new ApiError('CALL_NOT_RETRYABLE', `call ${callId} is ${live.state}, not failed`);
    }
    const row = await this.#store((store) => store.getCall(callId));
    if (!row) throw new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
    if (row.status !== 'failed')
      throw new ApiError('CALL_NOT_RETRYABLE', `call ${callId} is ${row.state}, not failed`);
    if (row.machineVersion !== MACHINE_VERSION) {
      throw new ApiError(
        'CALL_NOT_RETRYABLE',
        `call ${callId} was stored by machine version ${row.machineVersion}`,
      );
    }
    const events = await this.#store((store) => store.getEvents(callId));
    const retry: LoggedEvent = { event: { type: 'call.retry', at: this.#deps.time.now() } };
    // Attached when the retry is committed, so a store that is away leaves the call as it was.
    const refused = await this.#writer
      .append(callId, retry, (seq) => {
        if (this.#live.has(callId))
          return new ApiError('CALL_NOT_RETRYABLE', `call ${callId} is being retried`);
        if (this.#byRoom.has(row.roomName)) {
          return new ApiError('CALL_NOT_RETRYABLE', `room ${row.roomName} has another live call`);
        }
        const call = this.#attach(row, this.#restoreActor(row, events));
        for (const logged of events)
          if (logged.seq > row.appliedSeq) this.#apply(call, logged.seq, (logged.event as LoggedEvent).event);
        this.#deps.metrics.callRedriven();
        this.#apply(call, seq, retry.event);
        return undefined;
      })
      .catch((error: unknown) => this.#storeFailed(error));
    if (refused) throw refused;
  }

  async getCall(callId: string): Promise<CallDetailView> {
    const storedRow = await this.#store((store) => store.getCall(callId));
    if (!storedRow) throw new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
    const row = this.#withPendingSnapshot(storedRow);
    const live = this.#live.get(callId);
    const snapshot = live?.actor.getPersistedSnapshot();
    const stored = await this.#store((store) => store.getJournal(callId));
    // Entries still queued follow the stored ones, numbered on (they will get these numbers).
    const last = stored.at(-1)?.seq ?? 0;
    const queued = this.#writer
      .pendingJournal(callId)
      .map((entry, index) => ({ ...entry, seq: last + index + 1 }));
    const journal = [...stored, ...queued];
    return callDetailViewOf(row, journal, live && { state: live.state, snapshot });
  }

  async listCalls(query: CallListQuery): Promise<CallView[]> {
    const rows = await this.#store((store) => store.listCalls(query));
    return rows.map((row) => callViewOf(this.#withPendingSnapshot(row)));
  }

  /** The row as it will be once the queued snapshot is committed: reads see their own writes. */
  #withPendingSnapshot(row: CallRow): CallRow {
    const pending = this.#writer.pendingSnapshot(row.callId);
    if (!pending) return row;
    return {
      ...row,
      state: pending.state,
      status: pending.status,
      snapshot: pending.snapshot,
      appliedSeq: pending.appliedSeq,
      transcriptItems: pending.transcriptItems,
      egressId: pending.egressId ?? row.egressId,
      updatedAt: pending.updatedAt,
    };
  }

  async handleWebhook(rawBody: string, authorization: string | undefined): Promise<void> {
    let webhook: LiveKitWebhook;
    try {
      webhook = await this.#deps.webhooks.verify(rawBody, authorization);
    } catch (error) {
      this.#deps.metrics.webhookReceived({ event: 'unknown', result: 'unauthorized' });
      if (error instanceof CallsyncError) throw new ApiError('WEBHOOK_UNAUTHORIZED', error.message);
      throw error;
    }
    // At most once: LiveKit (and proxies) may deliver an event again with the same id. The id is
    // remembered once the event is committed (a 503 must let LiveKit's resend through).
    const repeated = webhook.id !== '' && this.#seenWebhooks.has(webhook.id);
    const call = repeated ? undefined : this.#callForWebhook(webhook);
    const event = call ? this.#eventOfWebhook(webhook) : undefined;
    this.#deps.metrics.webhookReceived({ event: webhook.event, result: event ? 'accepted' : 'ignored' });
    if (!call || !event) return;
    await this.#accept(call, { event, ...(webhook.id === '' ? {} : { webhookId: webhook.id }) });
  }

  #eventOfWebhook(webhook: LiveKitWebhook): CallExternalEvent | undefined {
    const at = this.#deps.time.now();
    if (webhook.event === 'room_finished') return { type: 'livekit.room_finished', at };
    if (
      webhook.egress &&
      (webhook.event === 'egress_ended' ||
        webhook.event === 'egress_updated' ||
        webhook.event === 'egress_started')
    ) {
      return {
        type: webhook.event === 'egress_ended' ? 'livekit.egress_ended' : 'livekit.egress_updated',
        egressId: webhook.egress.egressId,
        outcome: egressOutcomeOf(webhook.egress),
        at,
      };
    }
    return undefined;
  }

  metrics(): Promise<{ contentType: string; body: string }> {
    return this.#deps.renderMetrics();
  }

  // ---------------------------------------------------------------------------------------
  // Actors

  /**
   * The actor of a stored call: its snapshot, with the transcript rebuilt from the logged
   * batches the snapshot had applied (the later events are applied after `#attach`).
   */
  #restoreActor(row: CallRow, events: readonly StoredEvent[]): CallActor {
    const stored = row.snapshot as Snapshot<unknown> & { context: CallContext };
    let transcript: TranscriptItem[] = stored.context.transcript;
    for (const { seq, event } of events) {
      const logged = (event as LoggedEvent).event;
      if (seq <= row.appliedSeq && logged.type === 'call.transcript') {
        transcript = mergeTranscript(transcript, logged.items);
      }
    }
    // XState's types still ask for `input` when restoring a snapshot (statelyai/xstate#4915).
    return createActor(this.#deps.logic, {
      snapshot: { ...stored, context: { ...stored.context, transcript } } as unknown as Snapshot<unknown>,
      input: undefined,
      id: row.callId,
    });
  }

  #attach(row: Pick<CallRow, 'callId' | 'roomName' | 'snapshot' | 'appliedSeq'>, actor: CallActor): LiveCall {
    const { callId, roomName, snapshot } = row;
    const context = contextOf(snapshot);
    const value = (snapshot as { value?: never }).value ?? 'recording';
    const state = callStateOf(value);
    const call: LiveCall = {
      callId,
      roomName,
      actor,
      log: this.#observer.loggerOf({ callId, roomName, egressId: context?.egress.id ?? null }),
      state,
      enteredStateAt: this.#deps.time.now(),
      egressId: context?.egress.id ?? null,
      lastSnapshot: undefined,
      lastValue: JSON.stringify(value),
      appliedSeq: row.appliedSeq,
      applying: false,
      pending: { items: 0, chars: 0, leads: new Set() },
    };
    this.#live.set(callId, call);
    this.#byRoom.set(roomName, callId);
    if (call.egressId) this.#byEgress.set(call.egressId, callId);
    this.#count(state, +1);

    actor.on('*', (emitted) => {
      if (emitted.type === 'call.egress_started') {
        call.egressId = emitted.egressId;
        this.#byEgress.set(emitted.egressId, callId);
      }
      this.#observer.emitted(call, emitted, actor.getSnapshot().context);
    });
    actor.subscribe({
      next: (next) => this.#onSnapshot(call, next),
      error: (error) => {
        // A machine bug: keep the last stored snapshot, say so loudly, free the memory.
        this.#observer.crashed(call, error);
        this.#forget(call);
      },
      complete: () => this.#forget(call),
    });
    this.#observer.started(call, context);
    actor.start();
    return call;
  }

  #onSnapshot(call: LiveCall, snapshot: CallSnapshot): void {
    if (snapshot === call.lastSnapshot || snapshot.status === 'stopped') return;
    call.lastSnapshot = snapshot;
    const state = callStateOf(snapshot.value);
    const value = JSON.stringify(snapshot.value);
    const stepChanged = value !== call.lastValue;
    call.lastValue = value;
    if (state !== call.state) {
      const now = this.#deps.time.now();
      this.#observer.transitioned(call, state, snapshot.context, now);
      this.#count(call.state, -1);
      this.#count(state, +1);
      call.state = state;
      call.enteredStateAt = now;
    }
    if (snapshot.context.end !== null && state !== 'done' && state !== 'failed')
      this.#delivering.add(call.callId);
    else this.#delivering.delete(call.callId);

    // Applying a logged event that changed no step: the log already holds the change.
    if (stepChanged || !call.applying) {
      const persisted = call.actor.getPersistedSnapshot() as Snapshot<unknown> & { context: CallContext };
      this.#writer.saveSnapshot(call.callId, {
        state,
        status: callStatusOf(state),
        // Transcript items live in the event log; the snapshot stays small however long the call.
        snapshot: { ...persisted, context: { ...persisted.context, transcript: [] } },
        appliedSeq: call.appliedSeq,
        transcriptItems: snapshot.context.transcript.length,
        machineVersion: MACHINE_VERSION,
        egressId: snapshot.context.egress.id,
        updatedAt: new Date(this.#deps.time.now()).toISOString(),
      });
    }

    // A failed call waits in the store for an operator; it holds no memory meanwhile.
    if (state === 'failed') queueMicrotask(() => this.#dropFailed(call));
    if (this.#delivering.size === 0) this.#drained?.();
  }

  /**
   * Commits the event to the call's log, then applies it (in log order) and resolves; the API
   * answers after that. `collecting`: the event only counts while the call still collects
   * (transcript, leads); otherwise it is answered `409 CALL_DATA_SENT`.
   */
  async #accept(call: LiveCall, logged: LoggedEvent, only?: 'collecting'): Promise<void> {
    const refused = await this.#writer
      .append(call.callId, logged, (seq) => {
        if (logged.webhookId !== undefined) this.#rememberWebhook(logged.webhookId);
        if (this.#live.get(call.callId) !== call) {
          return new ApiError('CALL_ALREADY_ENDED', `call ${call.callId} takes no more events`);
        }
        if (only === 'collecting' && !call.actor.getSnapshot().hasTag('collecting')) {
          call.appliedSeq = seq;
          return callDataSent(call.callId);
        }
        this.#apply(call, seq, logged.event);
        return undefined;
      })
      .catch((error: unknown) => this.#storeFailed(error));
    if (refused) throw refused;
  }

  /** Applies a logged event to the live actor; its snapshot then records `seq` as applied. */
  #apply(call: LiveCall, seq: number, event: CallExternalEvent): void {
    call.appliedSeq = seq;
    call.applying = true;
    try {
      call.actor.send(event);
    } finally {
      call.applying = false;
    }
  }

  /** A direct store call (create, reads); an unavailable store is noted for `/readyz` and the probe. */
  async #store<T>(run: (store: CallStore) => Promise<T>): Promise<T> {
    try {
      return await run(this.#deps.store);
    } catch (error) {
      return this.#storeFailed(error);
    }
  }

  #storeFailed(error: unknown): never {
    if (error instanceof StoreUnavailableError) this.#writer.noteUnavailable(error);
    throw error;
  }

  #dropFailed(call: LiveCall): void {
    // Re-check: a RETRY sent right after a restore may already have moved the call on.
    if (this.#live.get(call.callId) !== call || call.state !== 'failed') return;
    this.#forget(call);
    call.actor.stop();
  }

  #forget(call: LiveCall): void {
    if (this.#live.get(call.callId) !== call) return;
    this.#live.delete(call.callId);
    if (this.#byRoom.get(call.roomName) === call.callId) this.#byRoom.delete(call.roomName);
    if (call.egressId && this.#byEgress.get(call.egressId) === call.callId)
      this.#byEgress.delete(call.egressId);
    this.#delivering.delete(call.callId);
    this.#count(call.state, -1);
    if (this.#delivering.size === 0) this.#drained?.();
  }

  #count(state: CallStateName, delta: number): void {
    this.#stateCounts.set(state, (this.#stateCounts.get(state) ?? 0) + delta);
  }

  #callForWebhook(webhook: LiveKitWebhook): LiveCall | undefined {
    const byEgress = webhook.egress ? this.#byEgress.get(webhook.egress.egressId) : undefined;
    const callId = byEgress ?? (webhook.roomName === null ? undefined : this.#byRoom.get(webhook.roomName));
    const call = callId === undefined ? undefined : this.#live.get(callId);
    if (call === undefined || byEgress !== undefined) return call;
    // Routed by room name only: the event must be about this call's room instance. An earlier
    // room of the same name (a replayed or late room_finished) has another sid.
    const callRoomSid = call.actor.getSnapshot().context.egress.roomSid;
    if (callRoomSid !== null && webhook.roomSid !== null && webhook.roomSid !== callRoomSid) {
      call.log.info(
        { event: webhook.event, webhookRoomSid: webhook.roomSid, roomSid: callRoomSid },
        'webhook for an earlier room of the same name ignored',
      );
      return undefined;
    }
    return call;
  }

  #rememberWebhook(id: string): void {
    if (id === '') return;
    this.#seenWebhooks.add(id);
    // A Set iterates in insertion order: drop the oldest beyond the bound.
    if (this.#seenWebhooks.size > WEBHOOK_IDS_REMEMBERED) {
      const oldest = this.#seenWebhooks.values().next().value;
      if (oldest !== undefined) this.#seenWebhooks.delete(oldest);
    }
  }

  /**
   * A live call that still collects transcript items and leads: until the call data is built
   * (the machine's `collecting` tag); after that they could never reach the CRM.
   */
  async #collectingCall(callId: string): Promise<LiveCall> {
    this.#assertReady();
    const call = this.#live.get(callId);
    if (call?.actor.getSnapshot().hasTag('collecting')) return call;
    if (call === undefined && !(await this.#store((store) => store.getCall(callId)))) {
      throw new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
    }
    throw callDataSent(callId);
  }

  async #liveCall(callId: string): Promise<LiveCall> {
    this.#assertReady();
    const call = this.#live.get(callId);
    if (call) return call;
    const row = await this.#store((store) => store.getCall(callId));
    if (!row) throw new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
    throw new ApiError('CALL_ALREADY_ENDED', `call ${callId} is ${row.state}; it takes no more events`);
  }

  #assertReady(): void {
    if (!this.#ready) throw new ApiError('NOT_READY', 'callsync is starting or stopping; retry shortly');
  }
}
