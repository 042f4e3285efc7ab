/**
 * What an operator sees of a call: turns a call actor's emitted events and card-state
 * transitions into log lines, metrics and journal entries, and tells when a call has finished.
 *
 * The supervisor (`src/supervisor.ts`) owns the calls and keeps each one's card state; it hands
 * the observer every transition before recording it, and every emitted event. The observer holds
 * no call of its own and writes through its dependencies only: a logger, the metrics recorder, a
 * journal sink (the store writer's queue) and a `finished` callback (the supervisor's
 * `call:finished` event). Observing never breaks a call: an emitted event it cannot handle is
 * logged, not thrown.
 *
 * Journal policy (what an operator reads in `GET /v1/calls/{id}`):
 * - an entry's `state` is the card state *after* its event: entries wait until the transition
 *   that emitted them has settled (`settled`), so a `state_entered` row names the state entered;
 * - each kind names one thing (`JOURNAL_KINDS`): a CRM step failing for good (`step_failed`) is
 *   not the call failing (`call_failed`);
 * - times are ISO-8601 everywhere, inside `detail` too (the machine's `…At` epoch milliseconds
 *   are converted);
 * - a call counts in `callsync_calls_finished_total` once, by its first final outcome: a failed
 *   call that an operator re-drives and that is then delivered is not a second finish (the SLO
 *   would count one call twice in its denominator).
 */
import { callLogger, type CallLogScope, type Logger } from '../logging/logger.ts';
import type { CallEmitted, CallStateName } from '../machines/call.events.ts';
import type { CallContext } from '../machines/call.types.ts';
import type { TimeSource } from '../machines/timer.actor.ts';
import type { MetricsRecorder } from '../metrics/metrics.recorder.ts';
import type { JournalEntry } from '../store/call-store.ts';
import { toErrorInfo } from '../errors.ts';

/** A call reached `done` or `failed`. */
export interface CallFinishedEvent {
  callId: string;
  outcome: 'delivered' | 'partial' | 'failed';
}

/** What the observer reads of a call (the supervisor's live call). */
export interface ObservedCall {
  readonly callId: string;
  readonly roomName: string;
  /** Bound to the call's ids; the observer replaces it once the egress id is known. */
  log: Logger;
  /** The card state and when the call entered it; the supervisor records each transition. */
  readonly state: CallStateName;
  readonly enteredStateAt: number;
}

export interface CallObserverDeps {
  logger: Logger;
  metrics: MetricsRecorder;
  time: Pick<TimeSource, 'now'>;
  /** Where journal entries go. */
  journal: (callId: string, entry: JournalEntry) => void;
  finished: (event: CallFinishedEvent) => void;
}

export interface CallObserver {
  /** A call's logger, bound to the ids an operator follows it by. */
  loggerOf(scope: CallLogScope): Logger;
  /** The call's actor starts, new or restored from the store. */
  started(call: ObservedCall, context: CallContext | undefined): void;
  /** The call leaves `call.state` for `to` at `at`; `context` is the new snapshot's. */
  transitioned(call: ObservedCall, to: CallStateName, context: CallContext, at: number): void;
  /** An event the call's actor emitted; `context` is the actor's current one. Never throws. */
  emitted(call: ObservedCall, event: CallEmitted, context: CallContext): void;
  /** The call's actor crashed (a machine bug); its last stored step resumes on restart. */
  crashed(call: ObservedCall, error: unknown): void;
  /** The transition that emitted the call's pending entries has settled in `call.state`: journal them. */
  settled(call: ObservedCall): void;
}

/** The journal kind of each emitted event: its name without the prefix, unless that is ambiguous. */
export const JOURNAL_KINDS: Readonly<Partial<Record<CallEmitted['type'], string>>> = {
  'upload.failed': 'step_failed',
  'upload.succeeded': 'step_succeeded',
  'call.failed': 'call_failed',
};

function journalKindOf(type: CallEmitted['type']): string {
  return JOURNAL_KINDS[type] ?? type.replace(/^(call|upload)\./, '');
}

/** `detail` with the machine's epoch-millisecond times (`…At`) as ISO-8601. */
function withIsoTimes(detail: Record<string, unknown>): Record<string, unknown> {
  const converted: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(detail)) {
    converted[key] =
      /^at$|At$/.test(key) && typeof value === 'number' && Number.isFinite(value)
        ? new Date(value).toISOString()
        : value;
  }
  return converted;
}

export function createCallObserver(deps: CallObserverDeps): CallObserver {
  const { logger, metrics } = deps;

  /** Entries of a transition in progress, by call: journaled once it has settled. */
  const pending = new Map<string, { at: string; kind: string; detail: Record<string, unknown> }[]>();
  const journal = (call: ObservedCall, kind: string, detail: Record<string, unknown>): void => {
    const at = new Date(deps.time.now()).toISOString();
    const entries = pending.get(call.callId) ?? [];
    entries.push({ at, kind, detail: withIsoTimes(detail) });
    pending.set(call.callId, entries);
  };
  const settle = (call: ObservedCall): void => {
    const entries = pending.get(call.callId);
    if (!entries) return;
    pending.delete(call.callId);
    for (const entry of entries) deps.journal(call.callId, { ...entry, state: call.state });
  };

  const onEmitted = (call: ObservedCall, event: CallEmitted, context: CallContext): void => {
    switch (event.type) {
      case 'call.state_entered':
        // Logged with its timings by `transitioned`; the journal keeps the machine's own record.
        journal(call, 'state_entered', { state: event.state });
        return;
      case 'call.egress_started':
        call.log = callLogger(logger, {
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
        if (event.step === 'recording' && context.recording)
          metrics.recordingUploaded({ sizeBytes: context.recording.sizeBytes });
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
        if (context.retries === 0) {
          metrics.callFinished({ outcome: event.outcome, deliverySeconds: event.deliveryMs / 1000 });
        }
        call.log.info(
          { outcome: event.outcome, deliveryMs: event.deliveryMs, withinTarget: event.withinTarget },
          `call ${event.outcome === 'delivered' ? 'delivered' : 'delivered without a recording'}`,
        );
        deps.finished({ callId: call.callId, outcome: event.outcome });
        break;
      case 'call.failed':
        if (context.retries === 0) metrics.callFinished({ outcome: 'failed' });
        call.log.error({ step: event.step, reason: event.reason, attempts: event.attempts }, 'call failed');
        deps.finished({ callId: call.callId, outcome: 'failed' });
        break;
      case 'call.retried':
        call.log.info({ step: event.step, retries: event.retries }, 'call re-driven');
        break;
      case 'call.fault':
        call.log.error({ source: event.source, error: event.error }, 'call effect fault');
        break;
    }
    const { type, callId: _callId, ...detail } = event;
    journal(call, journalKindOf(type), detail);
  };

  return {
    loggerOf: (scope) => callLogger(logger, scope),

    started(call, context) {
      call.log.info(
        { state: call.state },
        context?.end === undefined || context.end === null
          ? `call tracked in ${call.state}`
          : `call resumed in ${call.state}`,
      );
    },

    transitioned(call, to, context, at) {
      const previousSeconds = (at - call.enteredStateAt) / 1000;
      metrics.stateExited({ state: call.state, durationSeconds: previousSeconds });
      const endedAtMs = context.end?.endedAtMs;
      // One line per transition: an operator can follow a call from start to CRM acknowledgement.
      call.log.info(
        {
          from: call.state,
          to,
          inPreviousStateSeconds: previousSeconds,
          sinceCallEndSeconds: endedAtMs === undefined ? null : (at - endedAtMs) / 1000,
          ...(to === 'failed' ? { reason: context.failure?.error ?? null } : {}),
        },
        `call ${call.state} → ${to}`,
      );
    },

    emitted(call, event, context) {
      try {
        onEmitted(call, event, context);
      } catch (error) {
        call.log.error({ err: error, event: event.type }, 'handling an emitted event failed');
      }
    },

    crashed(call, error) {
      call.log.error({ err: error }, 'call actor crashed; its last stored step will resume on restart');
      journal(call, 'actor_error', { error: toErrorInfo(error) });
      settle(call);
    },

    settled: settle,
  };
}
