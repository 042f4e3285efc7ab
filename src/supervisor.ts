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
import { createActor, type Actor } from 'xstate';
import type { Logger } from './logging/logger.ts';
import type { CallLogic } from './machines/call.actors.ts';
import type { CallExternalEvent, CallStateName } from './machines/call.events.ts';
import {
  RESTORABLE_VERSIONS,
  restorableCallSnapshot,
  storedCallSnapshot,
  type PersistedCallSnapshot,
} from './machines/call.snapshot.ts';
import type { TranscriptItem } from './payload/call-data.ts';
import { isFinalEgressStatus, type CallLimits, type CallMachineInput } from './machines/call.types.ts';
import type { TimeSource } from './machines/timer.actor.ts';
import { DEFAULT_CALL_LIMITS } from './machines/defaults.ts';
import type { MetricsRecorder } from './metrics/metrics.recorder.ts';
import { egressOutcomeOf } from './services/livekit-effects.ts';
import type { LiveKitWebhook } from './services/livekit-webhook.ts';
import {
  StoreUnavailableError,
  type CallFleet,
  type CallRow,
  type CallStore,
  type FleetNote,
  type HandledEvent,
  type StoredEvent,
} from './store/call-store.ts';
import type {
  CallApi,
  CallListQuery,
  CallPage,
  CallsyncStatus,
  CreateCallBody,
  DismissBody,
  CreatedCall,
  EndCallBody,
  LeadBody,
  TranscriptBody,
} from './supervisor/call-api.ts';
import { createCallObserver, type CallFinishedEvent, type CallObserver } from './supervisor/call-observer.ts';
import { CALL_STATE_NAMES, callStateOf, callStatusOf, contextOf } from './supervisor/call-state.ts';
import { CALL_LIST_PAGE_DEFAULT } from './supervisor/call-api.ts';
import {
  STATUS_DAY_MS,
  STATUS_HOUR_MS,
  STATUS_WINDOW_CALLS_MAX,
  deliveryWindowOf,
} from './supervisor/call-status.ts';
import {
  callDetailViewOf,
  callViewOf,
  decodeCallCursor,
  encodeCallCursor,
  type CallDetailView,
} from './supervisor/call-view.ts';
import { StoreWriter } from './supervisor/store-writer.ts';
import { OutcomeWaiter } from './supervisor/event-outcomes.ts';
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

/**
 * Fleet sweep policy: every instance looks for calls whose owner's lease lapsed about twice a
 * second (± a quarter, so instances do not sweep in step), claiming at most this many per
 * statement; the same tick reads the decisions it owes on its own calls in case a note was lost.
 */
export const FLEET_SWEEP_INTERVAL_MS = 500;
/**
 * Retention policy: calls that finished `done` more than `retentionDays` ago leave the store,
 * with their event log and journal (the CRM holds what they delivered), checked at start and
 * every hour, at most `RETENTION_BATCH` calls a statement so a large backlog never holds the
 * store for long. Failed calls stay until an operator retries or dismisses them.
 */
export const RETENTION_INTERVAL_MS = 60 * 60_000;
export const RETENTION_BATCH = 1_000;
export const FLEET_SWEEP_BATCH = 100;

type CallActor = Actor<CallLogic>;
type CallSnapshot = ReturnType<CallActor['getSnapshot']>;

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
  /** Logged here, committed, not yet decided: a catch-up leaves them to their own request. */
  localSeqs: Set<number>;
  /** Decisions on events logged elsewhere, in log order, run one after another. */
  queue: Promise<unknown> | undefined;
  /** In a fleet: the lease epoch this instance drives the call under (0 on SQLite). */
  epoch: number;
}

const COLLECTING_EVENTS = new Set(['call.transcript', 'call.lead']);

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
  verify(rawBody: string, authorization: string | undefined): LiveKitWebhook;
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
  /** Finished calls older than this many days are pruned; none when absent. */
  retentionDays?: number | undefined;
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
  /** Set once the store is open, when it is shared by a fleet. */
  #fleet: CallFleet | undefined;
  #outcomes: OutcomeWaiter | undefined;
  #sweepTimer: unknown;
  #retentionTimer: unknown;
  #sweeping: Promise<void> | undefined;
  /** Calls that said their call data waits for the store. */
  readonly #heldSaid = new WeakSet<LiveCall>();
  /** Calls whose decisions on events logged elsewhere are being committed: their senders wait. */
  readonly #remoteDecisions = new Set<string>();

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
      onHandled: (handled) => this.#decisionsCommitted(handled),
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
    this.#started ??= this.#recover().then(() => this.#pruneSoon(0));
    return this.#started;
  }

  #pruneSoon(delayMs = RETENTION_INTERVAL_MS): void {
    const { retentionDays, time } = this.#deps;
    if (retentionDays === undefined || this.#closing) return;
    this.#retentionTimer = time.setTimeout(() => {
      this.#retentionTimer = undefined;
      void this.pruneFinished(retentionDays).finally(() => this.#pruneSoon());
    }, delayMs);
  }

  /** Removes calls that finished `done` more than `days` ago (the retention policy); how many. */
  async pruneFinished(days: number): Promise<number> {
    const { store, time, logger } = this.#deps;
    const before = new Date(time.now() - days * 24 * 60 * 60_000).toISOString();
    let pruned = 0;
    try {
      // What this instance finished is in the store first.
      await this.#writer.flush();
      for (;;) {
        const batch = await store.pruneFinished(before, RETENTION_BATCH);
        pruned += batch;
        if (batch < RETENTION_BATCH || this.#closing) break;
      }
    } catch (error) {
      if (error instanceof StoreUnavailableError) this.#writer.noteUnavailable(error);
      logger.warn({ err: error, pruned }, 'pruning finished calls failed; tried again later');
      return pruned;
    }
    if (pruned > 0) logger.info({ pruned, before, retentionDays: days }, 'finished calls pruned');
    return pruned;
  }

  async #recover(): Promise<void> {
    const { store, logger, metrics } = this.#deps;
    await store.open();
    if (store.fleet) return this.#joinFleet(store.fleet);
    const rows = await store.listActive();
    let restored = 0;
    let skipped = 0;
    for (const row of rows) {
      if (!RESTORABLE_VERSIONS.includes(row.machineVersion)) {
        skipped += 1;
        logger.error(
          { callId: row.callId, machineVersion: row.machineVersion, expected: RESTORABLE_VERSIONS },
          'call left alone: stored by another machine version',
        );
        continue;
      }
      try {
        this.#restore(row, await store.getEvents(row.callId));
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
   * A fleet member restores nothing by itself: it claims calls whose owner's lease lapsed (its
   * own from before a restart among them, under their old epoch) on every sweep.
   */
  async #joinFleet(fleet: CallFleet): Promise<void> {
    const { logger, metrics, time } = this.#deps;
    this.#fleet = fleet;
    this.#outcomes = new OutcomeWaiter({ store: this.#deps.store, time, leaseMs: fleet.leaseMs });
    fleet.on('note', (note) => this.#onNote(note));
    fleet.on('fenced', ({ callIds, epoch }) =>
      this.#dropTakenOver(callIds, 'its writes were refused', epoch),
    );
    fleet.on('lost', () => this.#dropTakenOver([...this.#live.keys()], 'the lease was lost'));
    fleet.on('registered', () => this.#sweepSoon(0));
    fleet.on('renewed', ({ seconds }) => metrics.leaseRenewed({ seconds }));
    this.#ready = true;
    logger.info(
      { instanceId: fleet.instanceId, epoch: fleet.epoch, leaseMs: fleet.leaseMs },
      'joined the fleet',
    );
    await this.#sweep();
    // Calls of an instance that just died (this one, before a restart under another id) follow
    // once its lease lapses.
    metrics.callsRestored({ restored: this.#live.size, skipped: 0 });
    logger.info({ restored: this.#live.size, skipped: 0 }, 'recovery done');
    this.#sweepSoon();
  }

  /** The actor of a stored call, with the events after its snapshot applied or decided on. */
  #restore(row: CallRow, events: readonly StoredEvent[]): LiveCall {
    const call = this.#attach(row, this.#restoreActor(row, events));
    for (const stored of events) {
      const logged = stored.event as LoggedEvent;
      // In the snapshot already.
      if (stored.seq <= row.appliedSeq) {
        if (logged.webhookId !== undefined) this.#rememberWebhook(logged.webhookId);
        continue;
      }
      // Logged, never decided on (the owner stopped first; on SQLite only refusals are
      // recorded): decide now, as it arrives.
      if (stored.seq > row.handledSeq) {
        this.#decide(call, stored.seq, logged, true);
        continue;
      }
      if (logged.webhookId !== undefined) this.#rememberWebhook(logged.webhookId);
      if (stored.refusal) call.appliedSeq = stored.seq;
      else this.#apply(call, stored.seq, logged.event);
    }
    return call;
  }

  #sweepSoon(delayMs = FLEET_SWEEP_INTERVAL_MS * (0.75 + Math.random() / 2)): void {
    const { time } = this.#deps;
    if (this.#closing || !this.#fleet) return;
    if (this.#sweepTimer !== undefined) time.clearTimeout(this.#sweepTimer);
    this.#sweepTimer = time.setTimeout(() => {
      this.#sweepTimer = undefined;
      void this.#sweep().finally(() => this.#sweepSoon());
    }, delayMs);
  }

  /** Claims orphaned calls and reads the decisions owed on owned ones. One at a time. */
  #sweep(): Promise<void> {
    this.#sweeping ??= this.#sweepOnce()
      .catch((error: unknown) => {
        if (error instanceof StoreUnavailableError) this.#writer.noteUnavailable(error);
        else this.#deps.logger.error({ err: error }, 'fleet sweep failed');
      })
      .finally(() => {
        this.#sweeping = undefined;
      });
    return this.#sweeping;
  }

  async #sweepOnce(): Promise<void> {
    const fleet = this.#fleet;
    const { store, logger, metrics } = this.#deps;
    if (!fleet || !this.#accepting || this.#closing) return;
    for (;;) {
      const claimed = await fleet.claimOrphans(FLEET_SWEEP_BATCH, RESTORABLE_VERSIONS);
      for (const { call: row, previousOwner } of claimed) {
        // Still running here under an epoch this instance lost: the claimed row is the truth.
        const stale = this.#live.get(row.callId);
        if (stale) {
          this.#forget(stale);
          stale.actor.stop();
        }
        try {
          this.#restore(row, await store.getEvents(row.callId));
          metrics.callTakenOver();
          logger.info(
            {
              callId: row.callId,
              roomName: row.roomName,
              previousOwner,
              instanceId: fleet.instanceId,
              state: row.state,
            },
            'call taken over',
          );
        } catch (error) {
          if (error instanceof StoreUnavailableError) throw error;
          logger.error({ callId: row.callId, err: error }, 'call could not be restored');
        }
      }
      if (claimed.length < FLEET_SWEEP_BATCH) break;
    }
    for (const callId of await fleet.callsWithNewEvents()) {
      const call = this.#live.get(callId);
      if (call) this.#catchUpSoon(call);
    }
  }

  #onNote(note: FleetNote): void {
    if (note.kind === 'handled') this.#outcomes?.wake(note.callId);
    else if (note.kind === 'released') void this.#sweep();
    else {
      const call = this.#live.get(note.callId);
      if (call) this.#catchUpSoon(call);
    }
  }

  /**
   * Another instance owns these calls now (or may): stop them here without writing. `epoch`:
   * the writes refused were this epoch's; a call this instance claimed again since stays.
   */
  #dropTakenOver(callIds: readonly string[], why: string, epoch = Number.POSITIVE_INFINITY): void {
    for (const callId of callIds) {
      const call = this.#live.get(callId);
      if (!call || call.epoch > epoch) continue;
      call.log.warn({ why }, 'call dropped here: another instance drives it now');
      this.#deps.metrics.callFenced();
      this.#forget(call);
      call.actor.stop();
    }
  }

  /**
   * Stops taking new calls and waits until every call that has ended is delivered (or failed),
   * at most `timeoutMs`. Calls still in conversation stay persisted and resume on the next start.
   */
  drain(timeoutMs: number): Promise<void> {
    this.#accepting = false;
    // Safe twice: a second call waits for the first drain (its timeout stands).
    this.#draining ??= (async () => {
      if (this.#fleet) return this.#handOver(this.#fleet);
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

  /**
   * A fleet member's drain: its calls stop here (their state is stored), its lease ends at once,
   * and the other instances take them over on their next sweep (the release wakes them).
   */
  async #handOver(fleet: CallFleet): Promise<void> {
    if (this.#sweepTimer !== undefined) this.#deps.time.clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
    await this.#sweeping;
    const calls = [...this.#live.values()];
    for (const call of calls) {
      this.#forget(call);
      call.actor.stop();
    }
    await this.#writer.flush();
    await fleet.release();
    this.#deps.logger.info({ calls: calls.length }, 'calls handed over to the fleet');
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
      for (const timer of [this.#sweepTimer, this.#retentionTimer]) {
        if (timer !== undefined) this.#deps.time.clearTimeout(timer);
      }
      this.#sweepTimer = this.#retentionTimer = undefined;
      await this.#sweeping;
      for (const call of [...this.#live.values()]) {
        await step(`stop call ${call.callId}`, () => {
          this.#forget(call);
          call.actor.stop();
        });
      }
      await step('write what is queued', () => this.#writer.close());
      // The others need not wait out the lease for this instance's calls.
      if (this.#fleet) await step('end the fleet lease', () => this.#fleet?.release());
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

  /** In a fleet, whether this instance trusts its lease enough to act now (always on SQLite). */
  leaseTrusted(): boolean {
    return this.#fleet?.trusted() ?? true;
  }

  /** Whether the call's actor runs here (in a fleet: this instance drives it). */
  isDriving(callId: string): boolean {
    return this.#live.has(callId);
  }

  get liveCallCount(): number {
    return this.#live.size;
  }

  // ---------------------------------------------------------------------------------------
  // HTTP API

  async createCall(body: CreateCallBody): Promise<CreatedCall> {
    this.#assertReady();
    // A call created now would be owned by an epoch that may already have lapsed: another
    // instance could claim it while it runs here.
    if (this.#fleet && !this.#fleet.trusted()) {
      throw new ApiError('NOT_READY', 'this instance is renewing its fleet lease; retry shortly');
    }
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
    const { snapshot, version } = storedCallSnapshot(actor.getPersistedSnapshot() as PersistedCallSnapshot);
    const create = () =>
      this.#store((store) =>
        store.createCall({
          callId,
          roomName: body.roomName,
          machineVersion: version,
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
    this.#assertReady();
    const logged: LoggedEvent = {
      event: { type: 'call.transcript', items: body.items, at: this.#deps.time.now() },
    };
    if (this.#decidedElsewhere(callId)) return this.#acceptElsewhere(callId, logged);
    const call = await this.#collectingCall(callId);
    const { fresh, freshChars, overLimit } = this.#transcriptLimit(call, body.items);
    if (overLimit) throw overLimit;
    call.pending.items += fresh.length;
    call.pending.chars += freshChars;
    try {
      await this.#accept(call, logged);
    } finally {
      call.pending.items -= fresh.length;
      call.pending.chars -= freshChars;
    }
  }

  async linkLead(callId: string, body: LeadBody): Promise<void> {
    this.#assertReady();
    const logged: LoggedEvent = {
      event: { type: 'call.lead', leadId: body.leadId, data: body.data ?? {}, at: this.#deps.time.now() },
    };
    if (this.#decidedElsewhere(callId)) return this.#acceptElsewhere(callId, logged);
    const call = await this.#collectingCall(callId);
    const overLimit = this.#leadLimit(call, body.leadId);
    if (overLimit) throw overLimit;
    const fresh = !call.actor.getSnapshot().context.leads.some((lead) => lead.leadId === body.leadId);
    const counted = fresh && !call.pending.leads.has(body.leadId);
    if (counted) call.pending.leads.add(body.leadId);
    try {
      await this.#accept(call, logged);
    } finally {
      if (counted) call.pending.leads.delete(body.leadId);
    }
  }

  async endCall(callId: string, body: EndCallBody): Promise<void> {
    this.#assertReady();
    const at = this.#deps.time.now();
    const logged: LoggedEvent = {
      event: {
        type: 'call.end',
        endedAt: new Date(body.endedAt === undefined ? at : Date.parse(body.endedAt)).toISOString(),
        status: body.status ?? 'completed',
        reason: body.reason,
        at,
      },
    };
    const startsBefore = (startedAt: string | undefined) => {
      if (
        body.endedAt !== undefined &&
        startedAt !== undefined &&
        Date.parse(body.endedAt) < Date.parse(startedAt)
      ) {
        throw new ApiError('INVALID_BODY', `endedAt: ${body.endedAt} is before the call's start`, {
          field: 'endedAt',
        });
      }
    };
    if (this.#decidedElsewhere(callId)) {
      return this.#acceptElsewhere(callId, logged, (row) =>
        startsBefore(contextOf(row.snapshot)?.call.startedAt),
      );
    }
    const call = await this.#liveCall(callId);
    startsBefore(call.actor.getSnapshot().context.call.startedAt);
    await this.#accept(call, logged);
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
    if (!RESTORABLE_VERSIONS.includes(row.machineVersion)) {
      throw new ApiError(
        'CALL_NOT_RETRYABLE',
        `call ${callId} was stored by machine version ${row.machineVersion}`,
      );
    }
    const retry: LoggedEvent = { event: { type: 'call.retry', at: this.#deps.time.now() } };
    if (this.#fleet) return this.#retryHere(this.#fleet, row, retry);
    const events = await this.#store((store) => store.getEvents(callId));
    // Attached when the retry is committed, so a store that is away leaves the call as it was.
    const refused = await this.#writer
      .append(callId, retry, (seq) => {
        if (this.#live.has(callId))
          return new ApiError('CALL_NOT_RETRYABLE', `call ${callId} is being retried`);
        if (this.#byRoom.has(row.roomName)) {
          return new ApiError('CALL_NOT_RETRYABLE', `room ${row.roomName} has another live call`);
        }
        const call = this.#restore(row, events);
        this.#deps.metrics.callRedriven();
        this.#apply(call, seq, retry.event);
        return undefined;
      })
      .catch((error: unknown) => this.#storeFailed(error));
    if (refused) throw refused;
  }

  /**
   * A fleet member claims the failed call (it becomes live again in the same statement, so a
   * second retry anywhere is refused), then logs the retry and drives the call.
   */
  async #retryHere(fleet: CallFleet, row: CallRow, retry: LoggedEvent): Promise<void> {
    const { callId } = row;
    let claimed: CallRow | undefined;
    try {
      claimed = await fleet.claimFailed(callId);
    } catch (error) {
      if ((error as { code?: unknown }).code === '23505') {
        throw new ApiError('CALL_NOT_RETRYABLE', `room ${row.roomName} has another live call`);
      }
      return this.#storeFailed(error);
    }
    if (!claimed) throw new ApiError('CALL_NOT_RETRYABLE', `call ${callId} is being retried`);
    const events = await this.#store((store) => store.getEvents(callId));
    await this.#writer
      .append(callId, retry, (seq) => {
        const call = this.#restore(claimed, events);
        this.#deps.metrics.callRedriven();
        this.#decide(call, seq, retry, false);
      })
      .catch((error: unknown) => {
        // Not logged: the call goes back to failed (its snapshot says so), to be retried again.
        if (!this.#live.has(callId)) this.#restore(claimed, events);
        return this.#storeFailed(error);
      });
  }

  /** Resolves once the store holds the call's snapshots queued so far (`services/call-data-gate.ts`). */
  snapshotStored(callId: string): Promise<void> {
    const stored = this.#writer.snapshotStored(callId);
    const call = this.#live.get(callId);
    // Said once per call (each attempt of the step asks again).
    if (
      call &&
      !this.#writer.available &&
      this.#writer.pendingSnapshot(callId) &&
      !this.#heldSaid.has(call)
    ) {
      this.#heldSaid.add(call);
      call.log.warn(
        'call data held until the store is back: the call must be stored as no longer collecting first',
      );
    }
    return stored;
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

  async listCalls(query: CallListQuery): Promise<CallPage> {
    const limit = query.limit ?? CALL_LIST_PAGE_DEFAULT;
    const after = query.cursor === undefined ? undefined : decodeCallCursor(query.cursor);
    // One more than asked: whether there is a next page.
    const rows = await this.#store((store) =>
      store.listCalls({ state: query.state, since: query.since, after, limit: limit + 1 }),
    );
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      calls: page.map((row) => callViewOf(this.#withPendingSnapshot(row))),
      nextCursor: rows.length > limit && last ? encodeCallCursor(last) : null,
    };
  }

  async dismissCall(callId: string, body: DismissBody): Promise<void> {
    this.#assertReady();
    const live = this.#live.get(callId);
    if (live) throw new ApiError('CALL_NOT_DISMISSABLE', `call ${callId} is ${live.state}, not failed`);
    const at = new Date(this.#deps.time.now()).toISOString();
    const dismissed = await this.#store((store) => store.dismissCall(callId, { reason: body.reason, at }));
    if (dismissed) {
      this.#deps.logger.info({ callId, reason: body.reason }, 'failed call dismissed by an operator');
      return;
    }
    const row = await this.#store((store) => store.getCall(callId));
    if (!row) throw new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
    throw new ApiError('CALL_NOT_DISMISSABLE', `call ${callId} is ${row.state}, not failed`);
  }

  async status(): Promise<CallsyncStatus> {
    this.#assertReady();
    const now = this.#deps.time.now();
    const targetMs = this.#deps.limits?.deliveryTargetMs ?? DEFAULT_CALL_LIMITS.deliveryTargetMs;
    const since = (ms: number) => new Date(now - ms).toISOString();
    // The day's calls hold the hour's: one read serves both windows.
    const [times, callsByState, failedWaiting] = await this.#store((store) =>
      Promise.all([
        store.finishedSince(since(STATUS_DAY_MS), STATUS_WINDOW_CALLS_MAX),
        store.countByState(),
        store.countCalls('failed'),
      ]),
    );
    return {
      targetSeconds: targetMs / 1_000,
      delivery: {
        lastHour: deliveryWindowOf(times, now - STATUS_HOUR_MS, targetMs),
        lastDay: deliveryWindowOf(times, now - STATUS_DAY_MS, targetMs),
      },
      callsByState,
      failedWaiting,
    };
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
      webhook = this.#deps.webhooks.verify(rawBody, authorization);
    } catch (error) {
      this.#deps.metrics.webhookReceived({ event: 'unknown', result: 'unauthorized' });
      if (error instanceof CallsyncError) throw new ApiError('WEBHOOK_UNAUTHORIZED', error.message);
      throw error;
    }
    // Only what can move a call is looked up and logged (`#eventOfWebhook`): the rest of
    // LiveKit's traffic (participants, tracks, an egress starting) is answered at once.
    const event = this.#eventOfWebhook(webhook);
    if (!event) {
      this.#deps.metrics.webhookReceived({ event: webhook.event, result: 'ignored' });
      return;
    }
    // At most once: LiveKit (and proxies) may deliver an event again with the same id. The id is
    // remembered once the event is committed (a 503 must let LiveKit's resend through).
    const repeated = webhook.id !== '' && this.#seenWebhooks.has(webhook.id);
    const call = repeated ? undefined : this.#callForWebhook(webhook);
    if (!repeated && !call && this.#fleet) return this.#webhookElsewhere(webhook, event);
    this.#deps.metrics.webhookReceived({ event: webhook.event, result: call ? 'accepted' : 'ignored' });
    if (!call) return;
    await this.#accept(call, { event, ...(webhook.id === '' ? {} : { webhookId: webhook.id }) });
  }

  /**
   * In a fleet a webhook may be about a call another instance drives: found through the store
   * (egress id, else the live call of the room, checked against the room's sid), logged, and
   * its owner told. LiveKit gets its 200 once the event is stored.
   */
  async #webhookElsewhere(webhook: LiveKitWebhook, event: CallExternalEvent): Promise<void> {
    const egressId = webhook.egress?.egressId;
    const row = await this.#store((store) =>
      store.findLiveCall({ egressId, roomName: webhook.roomName ?? undefined }),
    );
    const byRoomOnly = row !== undefined && (egressId === undefined || row.egressId !== egressId);
    const roomSid = row && contextOf(row.snapshot)?.egress.roomSid;
    const earlierRoom =
      byRoomOnly &&
      roomSid !== null &&
      roomSid !== undefined &&
      webhook.roomSid !== null &&
      webhook.roomSid !== roomSid;
    const accepted = row !== undefined && !earlierRoom;
    this.#deps.metrics.webhookReceived({ event: webhook.event, result: accepted ? 'accepted' : 'ignored' });
    if (!accepted) return;
    await this.#logElsewhere(row.callId, { event, ...(webhook.id === '' ? {} : { webhookId: webhook.id }) });
  }

  /**
   * The call event a webhook stands for, if it can move a call (`CALL_WEBHOOK_EVENTS`): a room
   * that finished, or an egress's final status (the call machine settles on nothing else,
   * `isOwnFinalEgressReport`). An egress STARTING, ACTIVE or ENDING changes no call, so it costs
   * no event-log row.
   */
  #eventOfWebhook(webhook: LiveKitWebhook): CallExternalEvent | undefined {
    const at = this.#deps.time.now();
    if (webhook.event === 'room_finished') return { type: 'livekit.room_finished', at };
    if (webhook.egress && (webhook.event === 'egress_ended' || webhook.event === 'egress_updated')) {
      const outcome = egressOutcomeOf(webhook.egress);
      if (!isFinalEgressStatus(outcome.status)) return undefined;
      return {
        type: webhook.event === 'egress_ended' ? 'livekit.egress_ended' : 'livekit.egress_updated',
        egressId: webhook.egress.egressId,
        outcome,
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
    const stored = row.snapshot as PersistedCallSnapshot;
    let transcript: TranscriptItem[] = stored.context.transcript;
    for (const { seq, event, refusal } of events) {
      const logged = (event as LoggedEvent).event;
      if (seq <= row.appliedSeq && logged.type === 'call.transcript' && !refusal) {
        transcript = mergeTranscript(transcript, logged.items);
      }
    }
    const snapshot = restorableCallSnapshot(stored, transcript, this.#deps.time.now());
    // XState's types still ask for `input` when restoring a snapshot (statelyai/xstate#4915).
    return createActor(this.#deps.logic, {
      snapshot,
      input: undefined,
      id: row.callId,
    });
  }

  #attach(
    row: Pick<CallRow, 'callId' | 'roomName' | 'snapshot' | 'appliedSeq' | 'owner'>,
    actor: CallActor,
  ): LiveCall {
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
      localSeqs: new Set(),
      queue: undefined,
      epoch: row.owner?.epoch ?? 0,
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
      // Small however long the call: without the transcript and the call-data document.
      const stored = storedCallSnapshot(call.actor.getPersistedSnapshot() as PersistedCallSnapshot);
      this.#writer.saveSnapshot(call.callId, {
        state,
        status: callStatusOf(state),
        snapshot: stored.snapshot,
        appliedSeq: call.appliedSeq,
        transcriptItems: snapshot.context.transcript.length,
        machineVersion: stored.version,
        egressId: snapshot.context.egress.id,
        updatedAt: new Date(this.#deps.time.now()).toISOString(),
      });
    }

    this.#observer.settled(call);
    // A failed call waits in the store for an operator; it holds no memory meanwhile.
    if (state === 'failed') queueMicrotask(() => this.#dropFailed(call));
    if (this.#delivering.size === 0) this.#drained?.();
  }

  /**
   * Commits the event to the call's log, then decides on it (in log order) and resolves; the
   * API answers after that. A transcript item or lead counts only while the call still collects;
   * otherwise it is answered `409 CALL_DATA_SENT`.
   */
  async #accept(call: LiveCall, logged: LoggedEvent): Promise<void> {
    // A decision that waits for events logged elsewhere is a promise; the append adopts it.
    const refused = await this.#writer
      .append(call.callId, logged, (seq) => this.#arrived(call, seq, logged))
      .catch((error: unknown) => this.#storeFailed(error));
    if (refused) throw refused;
  }

  /** A committed event of a live call: decided now, or after the events logged elsewhere before it. */
  #arrived(
    call: LiveCall,
    seq: number,
    logged: LoggedEvent,
  ): ApiError | undefined | Promise<ApiError | undefined> {
    if (this.#live.get(call.callId) !== call) return this.#goneMeanwhile(call.callId, seq, logged);
    if (call.queue === undefined && seq === call.appliedSeq + 1)
      return this.#decide(call, seq, logged, false);
    call.localSeqs.add(seq);
    return this.#enqueue(call, async () => {
      await this.#catchUp(call);
      call.localSeqs.delete(seq);
      if (this.#live.get(call.callId) !== call) return this.#goneMeanwhile(call.callId, seq, logged);
      return this.#decide(call, seq, logged, false);
    });
  }

  /**
   * The event is logged, but the call left this instance meanwhile: on SQLite it finished; in a
   * fleet it may have moved to another instance, whose decision the sender gets.
   */
  async #goneMeanwhile(callId: string, seq: number, logged: LoggedEvent): Promise<ApiError | undefined> {
    if (!this.#fleet || !this.#outcomes) {
      return new ApiError('CALL_ALREADY_ENDED', `call ${callId} takes no more events`);
    }
    this.#fleet.notify([{ kind: 'event', callId }]);
    if (!COLLECTING_EVENTS.has(logged.event.type)) return undefined;
    try {
      await this.#outcomes.wait(callId, seq, () => callDataSent(callId));
      return undefined;
    } catch (error) {
      if (error instanceof ApiError) return error;
      throw error;
    }
  }

  /**
   * The owner's decision on a logged event, in log order: refused (the API error its sender
   * gets), a webhook seen before (ignored), or applied. `elsewhere`: it was logged by another
   * instance (or before a restart), so the per-call limits are checked here.
   */
  #decide(call: LiveCall, seq: number, logged: LoggedEvent, elsewhere: boolean): ApiError | undefined {
    const refusal = this.#refusalOf(call, logged.event, elsewhere);
    if (refusal) {
      call.appliedSeq = seq;
      this.#markDecided(call.callId, seq, elsewhere, refusal);
      return refusal;
    }
    if (logged.webhookId !== undefined && this.#seenWebhooks.has(logged.webhookId)) {
      call.appliedSeq = seq;
      this.#markDecided(call.callId, seq, elsewhere);
      return undefined;
    }
    if (logged.webhookId !== undefined) this.#rememberWebhook(logged.webhookId);
    this.#apply(call, seq, logged.event);
    this.#markDecided(call.callId, seq, elsewhere);
    return undefined;
  }

  #refusalOf(call: LiveCall, event: CallExternalEvent, elsewhere: boolean): ApiError | undefined {
    if (!COLLECTING_EVENTS.has(event.type)) return undefined;
    if (!call.actor.getSnapshot().hasTag('collecting')) return callDataSent(call.callId);
    if (!elsewhere) return undefined; // checked when it arrived here
    if (event.type === 'call.transcript') return this.#transcriptLimit(call, event.items).overLimit;
    if (event.type === 'call.lead') return this.#leadLimit(call, event.leadId);
    return undefined;
  }

  /**
   * Refusals are always recorded (a restore must not apply a refused event); other decisions
   * only in a fleet, where a sender elsewhere waits for them.
   */
  #markDecided(callId: string, seq: number, elsewhere: boolean, refusal?: ApiError): void {
    if (!this.#fleet && !refusal) return;
    this.#writer.markHandled({
      callId,
      seq,
      ...(refusal ? { refusal: { code: refusal.code, message: refusal.message } } : {}),
    });
    if (elsewhere) this.#remoteDecisions.add(callId);
  }

  #decisionsCommitted(handled: readonly HandledEvent[]): void {
    const notes: FleetNote[] = [];
    for (const callId of new Set(handled.map((decision) => decision.callId))) {
      this.#outcomes?.wake(callId);
      if (this.#remoteDecisions.delete(callId)) notes.push({ kind: 'handled', callId });
    }
    this.#fleet?.notify(notes);
  }

  #enqueue<T>(call: LiveCall, run: () => Promise<T>): Promise<T> {
    const next = (call.queue ?? Promise.resolve()).then(run);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    call.queue = settled;
    void settled.then(() => {
      if (call.queue === settled) call.queue = undefined;
    });
    return next;
  }

  /** Reads and decides on the call's events logged elsewhere (after the ones already decided). */
  #catchUpSoon(call: LiveCall): void {
    this.#enqueue(call, () => this.#catchUp(call)).catch((error: unknown) => {
      if (error instanceof StoreUnavailableError) this.#writer.noteUnavailable(error);
      else call.log.error({ err: error }, 'events logged elsewhere could not be applied');
    });
  }

  async #catchUp(call: LiveCall): Promise<void> {
    const events = await this.#store((store) => store.getEvents(call.callId, call.appliedSeq));
    for (const stored of events) {
      if (this.#live.get(call.callId) !== call) return;
      // Logged here: its own request decides on it (and answers).
      if (call.localSeqs.has(stored.seq)) return;
      if (stored.seq !== call.appliedSeq + 1) continue;
      this.#decide(call, stored.seq, stored.event as LoggedEvent, true);
    }
  }

  /**
   * In a fleet, whether the owner's decision is to be waited for: the call is not driven here,
   * or this instance no longer trusts its lease (another may own the call by now).
   */
  #decidedElsewhere(callId: string): boolean {
    const fleet = this.#fleet;
    return fleet !== undefined && (!this.#live.has(callId) || !fleet.trusted());
  }

  /**
   * A fleet member logs an event for a call another instance drives (or nobody, until the
   * sweep): the owner is told and decides; a transcript batch or a lead is answered with that
   * decision. `check` runs on the call's stored row first (the end must follow the start).
   */
  async #acceptElsewhere(callId: string, logged: LoggedEvent, check?: (row: CallRow) => void): Promise<void> {
    const row = await this.#store((store) => store.getCall(callId));
    if (!row) throw new ApiError('CALL_NOT_FOUND', `no call ${callId}`);
    const collecting = COLLECTING_EVENTS.has(logged.event.type);
    const undecided = () =>
      collecting
        ? callDataSent(callId)
        : new ApiError('CALL_ALREADY_ENDED', `call ${callId} is ${row.state}; it takes no more events`);
    if (row.status !== 'active') throw undecided();
    check?.(row);
    const seq = await this.#logElsewhere(callId, logged);
    if (collecting) await this.#outcomes?.wait(callId, seq, undecided);
  }

  async #logElsewhere(callId: string, logged: LoggedEvent): Promise<number> {
    const seq = await this.#writer
      .append(callId, logged, (committed) => committed)
      .catch((error: unknown) => this.#storeFailed(error));
    this.#fleet?.notify([{ kind: 'event', callId }]);
    // Claimed here meanwhile: this instance is the one to decide.
    const here = this.#live.get(callId);
    if (here) this.#catchUpSoon(here);
    return seq;
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

  /** The per-call transcript limits for a batch (its items not seen before, and their text). */
  #transcriptLimit(
    call: LiveCall,
    items: readonly TranscriptItem[],
  ): { fresh: TranscriptItem[]; freshChars: number; overLimit: ApiError | undefined } {
    const { transcript } = call.actor.getSnapshot().context;
    const known = new Set(transcript.map((item) => item.id));
    const fresh = [
      ...new Map(items.filter((item) => !known.has(item.id)).map((item) => [item.id, item])).values(),
    ];
    let freshChars = 0;
    for (const item of fresh) freshChars += item.content.length;
    let heldChars = call.pending.chars;
    for (const item of transcript) heldChars += item.content.length;
    const totalChars = heldChars + freshChars;
    const totalItems = transcript.length + call.pending.items + fresh.length;
    const overLimit =
      totalChars > CALL_TRANSCRIPT_MAX_CHARS
        ? new ApiError(
            'CALL_LIMIT_REACHED',
            `items: call ${call.callId} would hold ${totalChars} characters of transcript, over ${CALL_TRANSCRIPT_MAX_CHARS}`,
            { field: 'items', limit: CALL_TRANSCRIPT_MAX_CHARS },
          )
        : totalItems > CALL_TRANSCRIPT_MAX_ITEMS
          ? new ApiError(
              'CALL_LIMIT_REACHED',
              `items: call ${call.callId} would hold ${totalItems} transcript items, over ${CALL_TRANSCRIPT_MAX_ITEMS}`,
              { field: 'items', limit: CALL_TRANSCRIPT_MAX_ITEMS },
            )
          : undefined;
    return { fresh, freshChars, overLimit };
  }

  #leadLimit(call: LiveCall, leadId: string): ApiError | undefined {
    const { leads } = call.actor.getSnapshot().context;
    const linked = new Set([...leads.map((lead) => lead.leadId), ...call.pending.leads]);
    if (linked.has(leadId) || linked.size < CALL_MAX_LEADS) return undefined;
    return new ApiError(
      'CALL_LIMIT_REACHED',
      `leadId: call ${call.callId} already links ${CALL_MAX_LEADS} leads`,
      {
        field: 'leadId',
        limit: CALL_MAX_LEADS,
      },
    );
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
    this.#writer.forget(call.callId);
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
