/**
 * Group commit: every write the supervisor makes goes through here, and everything queued while
 * one commit is in flight goes into the next one (events, snapshots and journal entries of all
 * calls, one transaction). Under load that is one fsync or round trip per tick instead of one
 * per write; idle, a write waits only for the end of the current tick (`setImmediate`).
 *
 * Policy:
 * - An event is applied (its `apply` runs, in commit order) only after its commit; then its
 *   promise resolves, and only then the API answers 2xx. A failed commit rejects its events
 *   (the API answers 503 and the client sends again); they were never applied.
 * - Snapshots and journal entries are the supervisor's own: a failed commit keeps them queued
 *   and tries again after `STORE_RETRY_DELAYS_MS` (a newer snapshot of the same call replaces
 *   an older one), so nothing is lost while the store is away and work resumes without a
 *   restart when it returns. While it is away, `available` is false (`/readyz` answers 503) and
 *   each retry with nothing to write probes the store (`check`).
 * - A write the store refuses as wrong (not as unavailable) would fail every retry and hold up
 *   every call behind it: that commit is re-run piece by piece and the refused piece is dropped
 *   and logged, the rest committed.
 * - The journal backlog is bounded (`JOURNAL_BACKLOG_MAX`); beyond it the oldest entries are
 *   dropped with a count in the log: the journal is the audit trail, the snapshot is the state.
 */
import { CallsyncError } from '../errors.ts';
import type { Logger } from '../logging/logger.ts';
import type { TimeSource } from '../machines/timer.actor.ts';
import {
  StoreUnavailableError,
  type CallStore,
  type CommitBatch,
  type HandledEvent,
  type JournalEntry,
  type SnapshotUpdate,
} from '../store/call-store.ts';

function snapshotRefused(callId: string): CallsyncError {
  return new CallsyncError(
    'SNAPSHOT_REFUSED',
    `the store refused call ${callId}'s latest snapshot and holds an older one`,
    { retryable: false },
  );
}

/** Waits between tries while the store is unavailable: quick for a blip, then every 2 s. */
export const STORE_RETRY_DELAYS_MS: readonly number[] = [100, 250, 500, 1_000, 2_000];
export const JOURNAL_BACKLOG_MAX = 100_000;

interface PendingEvent {
  callId: string;
  event: unknown;
  apply: (seq: number) => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export interface StoreWriterDeps {
  store: Pick<CallStore, 'commit' | 'check'>;
  logger: Logger;
  time: TimeSource;
  /** The store became unavailable (`false`) or available again (`true`). */
  onAvailability?: (available: boolean, error: unknown) => void;
  /** Decisions on logged events are durable now (their senders may answer). */
  onHandled?: (handled: readonly HandledEvent[]) => void;
}

export class StoreWriter {
  readonly #deps: StoreWriterDeps;
  #events: PendingEvent[] = [];
  #snapshots = new Map<string, SnapshotUpdate>();
  /** The snapshots of the commit in flight (read-your-writes for `pendingSnapshot`). */
  #committing = new Map<string, SnapshotUpdate>();
  #committingJournal: readonly { callId: string; entry: JournalEntry }[] = [];
  #journal: { callId: string; entry: JournalEntry }[] = [];
  #handled: HandledEvent[] = [];
  /** Calls whose last snapshot the store refused as wrong (dropped): it holds an older one. */
  readonly #refusedSnapshots = new Set<string>();
  readonly #storedWaiters = new Map<string, { resolve: () => void; reject: (error: unknown) => void }[]>();
  #running: Promise<void> | undefined;
  #scheduled = false;
  #retryTimer: unknown;
  #failures = 0;
  #lastError: unknown;
  #closed = false;

  constructor(deps: StoreWriterDeps) {
    this.#deps = deps;
  }

  /** False from a failed commit until the next one succeeds. */
  get available(): boolean {
    return this.#failures === 0;
  }

  /** Why the store is unavailable (the last commit's error), while it is. */
  get lastError(): unknown {
    return this.available ? undefined : this.#lastError;
  }

  /**
   * Commits the event, then runs `apply(seq)` in commit order and resolves with its result (or
   * rejects with what it threw). Rejects with the store's error when the commit fails.
   */
  append<T>(callId: string, event: unknown, apply: (seq: number) => T): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreUnavailableError('the call store is closed'));
    return new Promise<T>((resolve, reject) => {
      this.#events.push({ callId, event, apply, resolve: resolve as (value: unknown) => void, reject });
      this.#schedule();
    });
  }

  saveSnapshot(callId: string, update: SnapshotUpdate): void {
    if (this.#closed) return;
    this.#snapshots.set(callId, update);
    this.#schedule();
  }

  appendJournal(callId: string, entry: JournalEntry): void {
    if (this.#closed) return;
    this.#journal.push({ callId, entry });
    if (this.#journal.length > JOURNAL_BACKLOG_MAX) {
      const dropped = this.#journal.splice(0, this.#journal.length - JOURNAL_BACKLOG_MAX);
      this.#deps.logger.error({ dropped: dropped.length }, 'journal backlog full; oldest entries dropped');
    }
    this.#schedule();
  }

  /** Records the owner's decision on a logged event (committed with the next batch). */
  markHandled(handled: HandledEvent): void {
    if (this.#closed) return;
    this.#handled.push(handled);
    this.#schedule();
  }

  /** The call's snapshot that is queued or being committed, newer than the stored one. */
  pendingSnapshot(callId: string): SnapshotUpdate | undefined {
    return this.#snapshots.get(callId) ?? this.#committing.get(callId);
  }

  /**
   * Resolves once the store holds the call's snapshots queued so far (none is queued or in flight
   * any more); while the store is away that is when it is back. Rejects if the writer closes
   * first, or (`SNAPSHOT_REFUSED`, not retryable) if the store refused the call's last snapshot
   * as wrong: it holds an older one.
   */
  snapshotStored(callId: string): Promise<void> {
    if (this.#closed) return Promise.reject(new StoreUnavailableError('the call store is closed'));
    if (!this.pendingSnapshot(callId)) {
      const refused = this.#refusalOf(callId);
      return refused ? Promise.reject(refused) : Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiters = this.#storedWaiters.get(callId) ?? [];
      waiters.push({ resolve, reject });
      this.#storedWaiters.set(callId, waiters);
    });
  }

  /** The call left this instance: what was kept about its refused snapshot goes too. */
  forget(callId: string): void {
    this.#refusedSnapshots.delete(callId);
  }

  /** The call's journal entries that are queued or being committed, oldest first. */
  pendingJournal(callId: string): JournalEntry[] {
    const entries: JournalEntry[] = [];
    for (const queued of [...this.#committingJournal, ...this.#journal]) {
      if (queued.callId === callId) entries.push(queued.entry);
    }
    return entries;
  }

  /** A store call made elsewhere (create, reads) found the store unavailable: probe until it is back. */
  noteUnavailable(error: unknown): void {
    if (this.available) this.#failed(error);
  }

  /** Resolves when everything queued so far has been tried once (committed or kept for a retry). */
  async flush(): Promise<void> {
    if (this.#retryTimer !== undefined) {
      this.#deps.time.clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
      this.#scheduled = false;
    }
    await this.#running;
    if (this.#hasWork()) await this.#run();
  }

  /** Tries what is queued once more, then refuses further writes. Safe twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    for (const pending of this.#events.splice(0)) {
      pending.reject(new StoreUnavailableError('the call store is closed'));
    }
    for (const waiters of this.#storedWaiters.values()) {
      for (const waiter of waiters) waiter.reject(new StoreUnavailableError('the call store is closed'));
    }
    this.#storedWaiters.clear();
  }

  #hasWork(): boolean {
    return (
      this.#events.length > 0 ||
      this.#snapshots.size > 0 ||
      this.#journal.length > 0 ||
      this.#handled.length > 0
    );
  }

  #schedule(): void {
    // While the store is away, new writes wait for the next retry instead of each trying alone.
    if (this.#scheduled || this.#running || this.#retryTimer !== undefined) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      // A flush or a retry may have taken the queue meanwhile.
      if (this.#running === undefined && this.#retryTimer === undefined && this.#hasWork()) void this.#run();
    });
  }

  #run(): Promise<void> {
    const running = this.#commitQueued().finally(() => {
      this.#running = undefined;
      if (this.#retryTimer === undefined && this.#hasWork()) this.#schedule();
    });
    this.#running = running;
    return running;
  }

  async #commitQueued(): Promise<void> {
    const events = this.#events;
    const snapshots = this.#snapshots;
    const journal = this.#journal;
    const handled = this.#handled;
    this.#events = [];
    this.#snapshots = new Map();
    this.#journal = [];
    this.#handled = [];
    this.#committing = snapshots;
    this.#committingJournal = journal;
    const batch: CommitBatch = {
      events: events.map(({ callId, event }) => ({ callId, event })),
      snapshots: [...snapshots].map(([callId, update]) => ({ callId, update })),
      journal,
      handled,
    };
    try {
      if (events.length + snapshots.size + journal.length + handled.length === 0) {
        if (!this.available) await this.#deps.store.check();
      } else {
        const seqs = await this.#deps.store.commit(batch);
        // Almost always empty: a refusal is a bug's trace, not traffic.
        if (this.#refusedSnapshots.size > 0)
          for (const callId of snapshots.keys()) this.#refusedSnapshots.delete(callId);
        this.#applied(events, seqs);
        if (handled.length > 0) this.#deps.onHandled?.(handled);
      }
      this.#succeeded();
    } catch (error) {
      if (error instanceof StoreUnavailableError) {
        this.#requeue(snapshots, journal, handled);
        for (const pending of events) pending.reject(error);
        this.#failed(error);
      } else {
        await this.#commitPieceByPiece(events, snapshots, journal, handled, error);
      }
    } finally {
      this.#committing = new Map();
      this.#committingJournal = [];
      this.#wakeStored();
    }
  }

  /** Why `snapshotStored` fails for a call with nothing pending: the store refused its last snapshot. */
  #refusalOf(callId: string): CallsyncError | undefined {
    return this.#refusedSnapshots.has(callId) ? snapshotRefused(callId) : undefined;
  }

  /** Resolves the `snapshotStored` waiters of calls with no snapshot queued or in flight now. */
  #wakeStored(): void {
    for (const [callId, waiters] of this.#storedWaiters) {
      if (this.pendingSnapshot(callId)) continue;
      this.#storedWaiters.delete(callId);
      const refused = this.#refusalOf(callId);
      for (const waiter of waiters) {
        if (refused) waiter.reject(refused);
        else waiter.resolve();
      }
    }
  }

  #applied(events: readonly PendingEvent[], seqs: readonly number[]): void {
    const results = events.map((pending, index) => {
      try {
        return { ok: true as const, value: pending.apply(seqs[index] ?? 0) };
      } catch (error) {
        return { ok: false as const, error };
      }
    });
    events.forEach((pending, index) => {
      const result = results[index];
      if (result?.ok) pending.resolve(result.value);
      else pending.reject(result?.error);
    });
  }

  /** A commit the store refused as wrong: find the piece, drop it, commit the rest. */
  async #commitPieceByPiece(
    events: readonly PendingEvent[],
    snapshots: ReadonlyMap<string, SnapshotUpdate>,
    journal: readonly { callId: string; entry: JournalEntry }[],
    handled: readonly HandledEvent[],
    batchError: unknown,
  ): Promise<void> {
    const { store, logger } = this.#deps;
    logger.warn({ err: batchError }, 'the store refused a commit; retrying its writes one by one');
    const none = { events: [], snapshots: [], journal: [] };
    const attempt = async (
      batch: CommitBatch,
      what: Record<string, unknown>,
    ): Promise<number[] | undefined> => {
      try {
        return await store.commit({ ...none, ...batch });
      } catch (error) {
        if (error instanceof StoreUnavailableError) throw error;
        logger.error({ ...what, err: error }, 'the store refused a write; it is dropped');
        return undefined;
      }
    };
    const done = { snapshots: new Set<string>(), journal: 0, handled: false };
    try {
      for (const pending of events) {
        const seqs = await attempt(
          { ...none, events: [pending] },
          { callId: pending.callId, write: 'event' },
        );
        if (seqs) this.#applied([pending], seqs);
        else pending.reject(batchError);
      }
      for (const [callId, update] of snapshots) {
        const stored = await attempt(
          { ...none, snapshots: [{ callId, update }] },
          { callId, write: 'snapshot' },
        );
        if (stored) this.#refusedSnapshots.delete(callId);
        else this.#refusedSnapshots.add(callId);
        done.snapshots.add(callId);
      }
      for (const entry of journal) {
        await attempt({ ...none, journal: [entry] }, { callId: entry.callId, write: 'journal' });
        done.journal += 1;
      }
      if (handled.length > 0) {
        await attempt({ ...none, handled }, { write: 'handled' });
        done.handled = true;
        this.#deps.onHandled?.(handled);
      }
      this.#succeeded();
    } catch (error) {
      // The store went away half-way: keep what was not written yet.
      for (const pending of events) pending.reject(error);
      this.#requeue(
        new Map([...snapshots].filter(([callId]) => !done.snapshots.has(callId))),
        journal.slice(done.journal),
        done.handled ? [] : handled,
      );
      this.#failed(error);
    }
  }

  #requeue(
    snapshots: ReadonlyMap<string, SnapshotUpdate>,
    journal: readonly { callId: string; entry: JournalEntry }[],
    handled: readonly HandledEvent[],
  ): void {
    // Newer snapshots queued meanwhile win; older journal entries and decisions go first.
    for (const [callId, update] of snapshots)
      if (!this.#snapshots.has(callId)) this.#snapshots.set(callId, update);
    this.#journal = [...journal, ...this.#journal];
    this.#handled = [...handled, ...this.#handled];
  }

  #succeeded(): void {
    if (this.#failures === 0) return;
    this.#failures = 0;
    this.#lastError = undefined;
    this.#deps.logger.info('the call store is available again');
    this.#deps.onAvailability?.(true, undefined);
  }

  #failed(error: unknown): void {
    this.#lastError = error;
    this.#failures += 1;
    if (this.#failures === 1) {
      this.#deps.logger.error({ err: error }, 'the call store is unavailable; writes are kept and retried');
      this.#deps.onAvailability?.(false, error);
    }
    if (this.#closed) return;
    const delay = STORE_RETRY_DELAYS_MS[Math.min(this.#failures, STORE_RETRY_DELAYS_MS.length) - 1] ?? 2_000;
    if (this.#retryTimer !== undefined) this.#deps.time.clearTimeout(this.#retryTimer);
    this.#retryTimer = this.#deps.time.setTimeout(() => {
      this.#retryTimer = undefined;
      // A commit in flight decides for itself (and schedules what is left).
      if (this.#running === undefined) void this.#run();
    }, delay);
  }
}
