/**
 * The supervisor: one durable XState actor per concurrent call, kept in a plain map.
 *
 * Why a map of root actors and not children of one parent machine: every spawn copies the
 * parent's children and every parent event costs O(children) (measured in the XState notes),
 * so nothing here does per-call work that grows with the number of calls: routing is by hash
 * map (call id, room name, egress id), and the per-state gauge is kept incrementally.
 *
 * Durability policy:
 * - A call is written to the store before its actor starts; every transition writes the
 *   persisted snapshot (skipping repeats of the same snapshot object, never from `complete`,
 *   which also fires on stop) and journal entries for what the actor emitted.
 * - On start every call that was not final is restored from its snapshot; the machines re-arm
 *   their timers from absolute times and re-run the effect that was in flight, which is
 *   idempotent (egress id reused, CRM `Idempotency-Key`).
 * - A call's actor leaves memory when it reaches `done` or `failed`; a failed call is restored
 *   from the store when an operator re-drives it.
 *
 * Lifecycle: `start()` opens the store and recovers; `drain(timeoutMs)` refuses new calls and
 * lets calls that already ended finish delivering, up to the timeout; `close()` stops every
 * actor (their last snapshot is already stored) and closes the store. Both are safe twice.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createActor, type Actor, type Snapshot } from 'xstate';
import type { CallApi } from './http/server.ts';
import type { CreateCallBody, EndCallBody, LeadBody, TranscriptBody } from './http/schemas.ts';
import { callLogger, type Logger } from './logging/logger.ts';
import type { CallLogic } from './machines/call.effects.ts';
import type { CallEmitted, CallExternalEvent, CallStateName } from './machines/call.events.ts';
import { CALL_MACHINE_VERSION } from './machines/call.machine.ts';
import type { CallContext, CallLimits, CallMachineInput } from './machines/call.types.ts';
import type { TimeSource } from './machines/timer.actor.ts';
import type { MetricsRecorder } from './metrics/metrics.recorder.ts';
import { egressOutcomeOf } from './services/call-effects.ts';
import type { LiveKitWebhook } from './services/livekit-webhook.ts';
import type { CallRow, CallStore, StoredJournalEntry } from './store/call-store.ts';
import { CALL_STATE_NAMES, callStateOf, callStatusOf } from './supervisor/call-state.ts';
import { ApiError, CallsyncError, toErrorInfo } from './errors.ts';

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
}

export interface SupervisorEventMap {
  /** A call reached `done` or `failed`. */
  'call:finished': [{ callId: string; outcome: 'delivered' | 'partial' | 'failed' }];
  /** The store refused a write; the call goes on, but a crash now would resume from an older step. */
  'store:error': [{ callId: string; error: unknown }];
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

function contextOf(snapshot: unknown): CallContext | undefined {
  const context = (snapshot as { context?: unknown } | null)?.context;
  return typeof context === 'object' && context !== null ? (context as CallContext) : undefined;
}

/**
 * CRM attempts per step and the last error, from the journal: the machine's context only keeps
 * the step in progress, and an operator looking at a delivered call wants to see it was retried.
 */
function deliveryHistoryOf(journal: readonly StoredJournalEntry[]) {
  const attempts = { recording: 0, 'call-data': 0 };
  let lastError: unknown = null;
  for (const entry of journal) {
    const step = entry.detail?.step;
    if (step !== 'recording' && step !== 'call-data') continue;
    if (entry.kind === 'attempt_failed') {
      attempts[step] += 1;
      lastError = entry.detail?.error ?? lastError;
    } else if (entry.kind === 'succeeded') {
      attempts[step] += 1;
    }
  }
  return { attempts, lastError: lastError ?? null };
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
  readonly #pendingWrites = new Set<Promise<void>>();
  #ready = false;
  readonly #seenWebhooks = new Set<string>();
  #draining: Promise<void> | undefined;
  #accepting = true;
  #started: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  constructor(deps: SupervisorDeps) {
    this.#deps = deps;
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
        this.#attach(row.callId, row.roomName, this.#restoreActor(row), row.snapshot);
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
      await Promise.allSettled([...this.#pendingWrites]);
      await step('close the store', () => this.#deps.store.close());
      if (failures.length > 0) throw failures[0];
    })();
    return this.#closing;
  }

  isReady(): boolean {
    return this.#ready;
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
  failedCallsWaiting(): Promise<number> {
    return this.#ready ? this.#deps.store.countCalls('failed') : Promise.resolve(0);
  }

  get liveCallCount(): number {
    return this.#live.size;
  }

  // ---------------------------------------------------------------------------------------
  // HTTP API

  async createCall(body: CreateCallBody): Promise<{ created: boolean; callId: string; state: string }> {
    this.#assertReady();
    const existingId = this.#byRoom.get(body.roomName);
    const existing = existingId === undefined ? undefined : this.#live.get(existingId);
    if (existing) return { created: false, callId: existing.callId, state: existing.state };

    const now = this.#deps.time.now();
    const callId = body.callId ?? newCallId(body.callerNumber, now);
    if (body.callId !== undefined) {
      const taken = await this.#deps.store.getCall(body.callId);
      if (taken && taken.roomName !== body.roomName) {
        throw new ApiError('CALL_ID_TAKEN', `callId ${body.callId} belongs to another room`, {
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
    const { created, call } = await this.#deps.store.createCall({
      callId,
      roomName: body.roomName,
      machineVersion: MACHINE_VERSION,
      state: 'recording',
      snapshot,
      createdAt: new Date(now).toISOString(),
    });
    // The store keeps one live call per room, so of two concurrent requests only one creates.
    if (!created) return { created: false, callId: call.callId, state: call.state };

    this.#attach(callId, body.roomName, actor, snapshot);
    this.#deps.metrics.callStarted({ direction: input.call.direction });
    return { created: true, callId, state: this.#live.get(callId)?.state ?? 'recording' };
  }

  async addTranscript(callId: string, body: TranscriptBody): Promise<void> {
    const call = await this.#collectingCall(callId);
    const { transcript } = call.actor.getSnapshot().context;
    const known = new Set(transcript.map((item) => item.id));
    const fresh = new Map(body.items.filter((item) => !known.has(item.id)).map((item) => [item.id, item]));
    const added = fresh.size;
    const chars = (items: Iterable<{ content: string }>) => {
      let total = 0;
      for (const item of items) total += item.content.length;
      return total;
    };
    const totalChars = chars(transcript) + chars(fresh.values());
    if (totalChars > CALL_TRANSCRIPT_MAX_CHARS) {
      throw new ApiError(
        'CALL_LIMIT_REACHED',
        `items: call ${callId} would hold ${totalChars} characters of transcript, over ${CALL_TRANSCRIPT_MAX_CHARS}`,
        { field: 'items', limit: CALL_TRANSCRIPT_MAX_CHARS },
      );
    }
    if (transcript.length + added > CALL_TRANSCRIPT_MAX_ITEMS) {
      throw new ApiError(
        'CALL_LIMIT_REACHED',
        `items: call ${callId} would hold ${transcript.length + added} transcript items, over ${CALL_TRANSCRIPT_MAX_ITEMS}`,
        { field: 'items', limit: CALL_TRANSCRIPT_MAX_ITEMS },
      );
    }
    this.#send(call, { type: 'call.transcript', items: body.items, at: this.#deps.time.now() });
  }

  async linkLead(callId: string, body: LeadBody): Promise<void> {
    const call = await this.#collectingCall(callId);
    const { leads } = call.actor.getSnapshot().context;
    if (!leads.some((lead) => lead.leadId === body.leadId) && leads.length >= CALL_MAX_LEADS) {
      throw new ApiError(
        'CALL_LIMIT_REACHED',
        `leadId: call ${callId} already links ${CALL_MAX_LEADS} leads`,
        {
          field: 'leadId',
          limit: CALL_MAX_LEADS,
        },
      );
    }
    this.#send(call, {
      type: 'call.lead',
      leadId: body.leadId,
      data: body.data ?? {},
      at: this.#deps.time.now(),
    });
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
    this.#send(call, {
      type: 'call.end',
      endedAt: new Date(body.endedAt === undefined ? at : Date.parse(body.endedAt)).toISOString(),
      status: body.status ?? 'completed',
      reason: body.reason,
      at,
    });
  }

  async retryCall(callId: string): Promise<void> {
    this.#assertReady();
    const live = this.#live.get(callId);
    if (live) {
      throw new ApiError('CALL_NOT_RETRYABLE', `call ${callId} is ${live.state}, not failed`);
    }
    const row = await this.#deps.store.getCall(callId);
    if (!row) throw new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
    if (row.status !== 'failed')
      throw new ApiError('CALL_NOT_RETRYABLE', `call ${callId} is ${row.state}, not failed`);
    if (row.machineVersion !== MACHINE_VERSION) {
      throw new ApiError(
        'CALL_NOT_RETRYABLE',
        `call ${callId} was stored by machine version ${row.machineVersion}`,
      );
    }
    if (this.#byRoom.has(row.roomName)) {
      throw new ApiError('CALL_NOT_RETRYABLE', `room ${row.roomName} has another live call`);
    }
    const call = this.#attach(row.callId, row.roomName, this.#restoreActor(row), row.snapshot);
    this.#deps.metrics.callRedriven();
    this.#send(call, { type: 'call.retry', at: this.#deps.time.now() });
  }

  async getCall(callId: string): Promise<unknown> {
    const row = await this.#deps.store.getCall(callId);
    if (!row) throw new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
    const live = this.#live.get(callId);
    const snapshot = live ? live.actor.getPersistedSnapshot() : row.snapshot;
    const journal = await this.#deps.store.getJournal(callId);
    const view = this.#viewOf(row, snapshot, live);
    const history = deliveryHistoryOf(journal);
    return { ...view, attempts: history.attempts, lastError: history.lastError ?? view.lastError, journal };
  }

  async listCalls(query: { state?: string | undefined; limit?: number | undefined }): Promise<unknown[]> {
    const rows = await this.#deps.store.listCalls(query);
    return rows.map((row) => this.#viewOf(row, row.snapshot, undefined));
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
    // At most once: LiveKit (and proxies) may deliver an event again with the same id.
    const repeated = this.#seenWebhooks.has(webhook.id);
    this.#rememberWebhook(webhook.id);
    const call = repeated ? undefined : this.#callForWebhook(webhook);
    this.#deps.metrics.webhookReceived({ event: webhook.event, result: call ? 'accepted' : 'ignored' });
    if (!call) return;
    const at = this.#deps.time.now();
    if (webhook.event === 'room_finished') {
      this.#send(call, { type: 'livekit.room_finished', at });
    } else if (
      webhook.egress &&
      (webhook.event === 'egress_ended' ||
        webhook.event === 'egress_updated' ||
        webhook.event === 'egress_started')
    ) {
      this.#send(call, {
        type: webhook.event === 'egress_ended' ? 'livekit.egress_ended' : 'livekit.egress_updated',
        egressId: webhook.egress.egressId,
        outcome: egressOutcomeOf(webhook.egress),
        at,
      });
    }
  }

  metrics(): Promise<{ contentType: string; body: string }> {
    return this.#deps.renderMetrics();
  }

  // ---------------------------------------------------------------------------------------
  // Actors

  #restoreActor(row: CallRow): CallActor {
    // XState's types still ask for `input` when restoring a snapshot (statelyai/xstate#4915).
    return createActor(this.#deps.logic, {
      snapshot: row.snapshot as Snapshot<unknown>,
      input: undefined,
      id: row.callId,
    });
  }

  #attach(callId: string, roomName: string, actor: CallActor, snapshot: unknown): LiveCall {
    const context = contextOf(snapshot);
    const state = callStateOf((snapshot as { value?: never }).value ?? 'recording');
    const call: LiveCall = {
      callId,
      roomName,
      actor,
      log: callLogger(this.#deps.logger, { callId, roomName, egressId: context?.egress.id ?? null }),
      state,
      enteredStateAt: this.#deps.time.now(),
      egressId: context?.egress.id ?? null,
      lastSnapshot: undefined,
    };
    this.#live.set(callId, call);
    this.#byRoom.set(roomName, callId);
    if (call.egressId) this.#byEgress.set(call.egressId, callId);
    this.#count(state, +1);

    actor.on('*', (emitted) => {
      try {
        this.#onEmitted(call, emitted);
      } catch (error) {
        // Observability must never break a call.
        call.log.error({ err: error, event: emitted.type }, 'handling an emitted event failed');
      }
    });
    actor.subscribe({
      next: (next) => this.#onSnapshot(call, next),
      error: (error) => {
        // A machine bug: keep the last stored snapshot, say so loudly, free the memory.
        call.log.error({ err: error }, 'call actor crashed; its last stored step will resume on restart');
        this.#journal(call, 'actor_error', { error: toErrorInfo(error) });
        this.#forget(call);
      },
      complete: () => this.#forget(call),
    });
    call.log.info(
      { state },
      context?.end === undefined || context.end === null
        ? `call tracked in ${state}`
        : `call resumed in ${state}`,
    );
    actor.start();
    return call;
  }

  #onSnapshot(call: LiveCall, snapshot: CallSnapshot): void {
    if (snapshot === call.lastSnapshot || snapshot.status === 'stopped') return;
    call.lastSnapshot = snapshot;
    const state = callStateOf(snapshot.value);
    if (state !== call.state) {
      const now = this.#deps.time.now();
      const previousSeconds = (now - call.enteredStateAt) / 1000;
      this.#deps.metrics.stateExited({ state: call.state, durationSeconds: previousSeconds });
      const endedAtMs = snapshot.context.end?.endedAtMs;
      // One line per transition: an operator can follow a call from start to CRM acknowledgement.
      call.log.info(
        {
          from: call.state,
          to: state,
          inPreviousStateSeconds: previousSeconds,
          sinceCallEndSeconds: endedAtMs === undefined ? null : (now - endedAtMs) / 1000,
          ...(state === 'failed' ? { reason: snapshot.context.failure?.error ?? null } : {}),
        },
        `call ${call.state} → ${state}`,
      );
      this.#count(call.state, -1);
      this.#count(state, +1);
      call.state = state;
      call.enteredStateAt = now;
    }
    if (snapshot.context.end !== null && state !== 'done' && state !== 'failed')
      this.#delivering.add(call.callId);
    else this.#delivering.delete(call.callId);

    this.#write(call.callId, () =>
      this.#deps.store.saveSnapshot(call.callId, {
        state,
        status: callStatusOf(state),
        snapshot: call.actor.getPersistedSnapshot(),
        machineVersion: MACHINE_VERSION,
        egressId: snapshot.context.egress.id,
        updatedAt: new Date(this.#deps.time.now()).toISOString(),
      }),
    );

    // A failed call waits in the store for an operator; it holds no memory meanwhile.
    if (state === 'failed') queueMicrotask(() => this.#dropFailed(call));
    if (this.#delivering.size === 0) this.#drained?.();
  }

  #onEmitted(call: LiveCall, event: CallEmitted): void {
    const { metrics } = this.#deps;
    switch (event.type) {
      case 'call.state_entered':
        // Logged with its timings in #onSnapshot; the journal keeps the machine's own record.
        this.#journal(call, 'state_entered', { state: event.state });
        return;
      case 'call.egress_started':
        call.egressId = event.egressId;
        this.#byEgress.set(event.egressId, call.callId);
        call.log = callLogger(this.#deps.logger, {
          callId: call.callId,
          roomName: call.roomName,
          egressId: event.egressId,
        });
        call.log.info({ attempts: event.attempts }, 'egress started');
        break;
      case 'call.egress_start_failed':
        call.log.warn({ error: event.error, nextAttemptAt: event.nextAttemptAt }, 'egress start failed');
        break;
      case 'call.ended':
        call.log.info({ endedAt: event.endedAt, status: event.status, reason: event.reason }, 'call ended');
        break;
      case 'call.egress_stop_failed':
        call.log.warn({ error: event.error }, 'egress stop failed; waiting for its final status anyway');
        break;
      case 'call.egress_final':
        metrics.egressSettled({
          source: event.via,
          status: event.status,
          waitSeconds: event.waitedMs === null ? null : event.waitedMs / 1000,
        });
        call.log.info({ status: event.status, via: event.via, waitedMs: event.waitedMs }, 'egress settled');
        break;
      case 'upload.attempt_failed':
        if (event.nextAttemptAt !== null)
          metrics.crmRetry({ endpoint: event.step === 'recording' ? 'upload' : 'call_data' });
        call.log.warn(
          {
            step: event.step,
            attempt: event.attempt,
            error: event.error,
            nextAttemptAt: event.nextAttemptAt,
            lane: event.lane,
          },
          `${event.step} attempt ${event.attempt} failed`,
        );
        break;
      case 'upload.succeeded':
        call.log.info(
          { step: event.step, attempts: event.attempts },
          `${event.step} acknowledged by the CRM`,
        );
        if (event.step === 'recording') {
          const recording = contextOf(call.actor.getSnapshot())?.recording;
          if (recording) metrics.recordingUploaded({ sizeBytes: recording.sizeBytes });
        }
        break;
      case 'upload.failed':
        call.log.error(
          { step: event.step, attempts: event.attempts, error: event.error },
          `${event.step} failed`,
        );
        break;
      case 'call.recording_missing':
        metrics.recordingMissing({ reason: event.reason });
        call.log.warn(
          { reason: event.reason, error: event.error },
          'posting the call data without a recording',
        );
        break;
      case 'call.delivered':
        metrics.callFinished({ outcome: event.outcome, deliverySeconds: event.deliveryMs / 1000 });
        call.log.info(
          { outcome: event.outcome, deliveryMs: event.deliveryMs, withinTarget: event.withinTarget },
          `call ${event.outcome === 'delivered' ? 'delivered' : 'delivered without a recording'}`,
        );
        this.events.emit('call:finished', { callId: call.callId, outcome: event.outcome });
        break;
      case 'call.failed':
        metrics.callFinished({ outcome: 'failed' });
        call.log.error({ step: event.step, reason: event.reason, attempts: event.attempts }, 'call failed');
        this.events.emit('call:finished', { callId: call.callId, outcome: 'failed' });
        break;
      case 'call.retried':
        call.log.info({ step: event.step, retries: event.retries }, 'call re-driven');
        break;
      case 'call.fault':
        call.log.error({ source: event.source, error: event.error }, 'call effect fault');
        break;
    }
    const { type, callId: _callId, ...detail } = event;
    this.#journal(call, type.replace(/^(call|upload)\./, ''), detail);
  }

  #send(call: LiveCall, event: CallExternalEvent): void {
    call.actor.send(event);
  }

  #journal(call: LiveCall, kind: string, detail: Record<string, unknown>): void {
    const at = new Date(this.#deps.time.now()).toISOString();
    this.#write(call.callId, () =>
      this.#deps.store.appendJournal(call.callId, { at, kind, state: call.state, detail }),
    );
  }

  /** Starts a store write without blocking the actor; failures are logged, never thrown into it. */
  #write(callId: string, write: () => Promise<void>): void {
    const pending = write().catch((error: unknown) => {
      this.#deps.logger.error({ callId, err: error }, 'store write failed');
      this.events.emit('store:error', { callId, error });
    });
    this.#pendingWrites.add(pending);
    void pending.finally(() => this.#pendingWrites.delete(pending));
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
    if (call === undefined && !(await this.#deps.store.getCall(callId))) {
      throw new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
    }
    throw new ApiError(
      'CALL_DATA_SENT',
      `call ${callId} has built its call data; later transcript items and leads cannot reach the CRM`,
    );
  }

  async #liveCall(callId: string): Promise<LiveCall> {
    this.#assertReady();
    const call = this.#live.get(callId);
    if (call) return call;
    const row = await this.#deps.store.getCall(callId);
    if (!row) throw new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
    throw new ApiError('CALL_ALREADY_ENDED', `call ${callId} is ${row.state}; it takes no more events`);
  }

  #assertReady(): void {
    if (!this.#ready) throw new ApiError('NOT_READY', 'callsync is starting or stopping; retry shortly');
  }

  #viewOf(row: CallRow, snapshot: unknown, live: LiveCall | undefined) {
    const context = contextOf(snapshot);
    const iso = (ms: number | null | undefined) =>
      ms === null || ms === undefined ? null : new Date(ms).toISOString();
    return {
      callId: row.callId,
      roomName: row.roomName,
      state: live?.state ?? row.state,
      status: row.status,
      egressId: context?.egress.id ?? row.egressId,
      createdAt: row.createdAt,
      updatedAt: row.updatedAt,
      callerNumber: context?.call.callerNumber ?? null,
      direction: context?.call.direction ?? null,
      startedAt: context?.call.startedAt ?? null,
      endedAt: context?.end?.endedAt ?? null,
      endReason: context?.end?.reason ?? null,
      egress: context?.egress.settlement ?? null,
      recording: context?.recording ?? null,
      recordingAcknowledgedAt: iso(context?.recordingAcknowledgedAt),
      callDataAcknowledgedAt: iso(context?.callDataAcknowledgedAt),
      outcome: (live?.state ?? row.state) === 'failed' ? 'failed' : (context?.outcome ?? null),
      transcriptItems: context?.transcript.length ?? 0,
      leads: context?.leads.map((lead) => lead.leadId) ?? [],
      delivery: context?.delivery ?? null,
      attempts: context?.delivery?.failures ?? 0,
      lastError: context?.failure?.error ?? context?.delivery?.lastError ?? context?.egress.lastError ?? null,
      retries: context?.retries ?? 0,
    };
  }
}
