/**
 * One CRM delivery step (the recording's multipart upload, or the call-data POST) with retries:
 *
 *   attempting ──ok──▶ succeeded (final)
 *       │  └─error (non-retryable, or the last attempt) ──▶ failed (final)
 *       └─error/timeout ──▶ backoff ──timer.retry_due──▶ attempting …
 *
 * Durable by construction: the attempt timeout and the backoff are restore-safe timers with
 * absolute times in their input, so a snapshot restored at any point carries on (a backoff whose
 * time passed while the process was down fires at once). Restoring while `attempting` re-runs
 * the attempt: the request carries its idempotency key, so the CRM sees one step once.
 * Acknowledgement is recorded in context on the very transition that leaves `attempting`, and
 * `succeeded` is final: nothing can send an acknowledged step again.
 *
 * Pure logic: the one effect (`deliver`) and the `timer` are placeholders here, supplied with
 * `uploadMachine.provide()` (see `call.actors.ts`). No I/O imports.
 *
 * It emits nothing: it runs as the call actor's child, whose emitted events nobody can listen to.
 * The call machine reports each step's attempts, acknowledgement and failure itself (`upload.*`
 * events, from this machine's snapshots and output).
 */
import { assign, fromCallback, fromPromise, setup, type EventObject } from 'xstate';
import type { ErrorInfo } from '../errors.ts';
import type { UploadTimerEventType } from './call.events.ts';
import {
  failureOf,
  type DeliveryAck,
  type DeliveryAttemptInput,
  type DeliveryRequest,
  type DeliveryStep,
  type Stamped,
  type StampedFailure,
} from './call.types.ts';
import { maxAttemptsFor } from './recording-policy.ts';
import { MAX_ATTEMPTS, planRetry, type RetryLane } from './retry-policy.ts';
import type { TimerFired, TimerInput, TimerLogic } from './timer.actor.ts';

export const UPLOAD_MACHINE_VERSION = 1;

export interface UploadInput {
  request: DeliveryRequest;
  /** When the step begins (epoch ms of the injected clock). */
  now: number;
  attemptTimeoutMs: number;
  /** Defaults to the retry policy's `MAX_ATTEMPTS`. */
  maxAttempts?: number | undefined;
}

export interface AttemptFailure {
  attempt: number;
  error: ErrorInfo;
  at: number;
  /** `null` when this failure ended the step. */
  nextAttemptAt: number | null;
  lane: RetryLane | null;
}

export interface UploadContext {
  request: DeliveryRequest;
  attemptTimeoutMs: number;
  maxAttempts: number;
  startedAt: number;
  /** The attempt in flight (or the last one), 1-based. */
  attempt: number;
  attemptStartedAt: number;
  attemptDeadlineAt: number;
  failures: number;
  lastFailure: AttemptFailure | null;
  ack: DeliveryAck | null;
  acknowledgedAt: number | null;
}

export type UploadOutput =
  | { status: 'succeeded'; step: DeliveryStep; ack: DeliveryAck; attempts: number; at: number }
  | { status: 'failed'; step: DeliveryStep; error: ErrorInfo; attempts: number; at: number };

type UploadTimerEvent = { [K in UploadTimerEventType]: TimerFired<K> }[UploadTimerEventType];

/** Either way an attempt can fail: its effect rejected, or its timeout fired first. */
function attemptFailure(context: UploadContext, event: EventObject): StampedFailure {
  if (event.type === 'timer.attempt_timeout') {
    return {
      info: {
        code: 'ATTEMPT_TIMEOUT',
        message: `${context.request.step} attempt ${context.attempt} took over ${context.attemptTimeoutMs} ms`,
        retryable: true,
      },
      at: (event as UploadTimerEvent).at,
    };
  }
  return failureOf((event as { error?: unknown }).error, context.attemptStartedAt);
}

function retryPlanFor(context: UploadContext, failure: StampedFailure) {
  return planRetry({
    attempt: context.attempt,
    error: failure.info,
    key: context.request.idempotencyKey,
    maxAttempts: maxAttemptsFor(context.request.step, failure.info, context.maxAttempts),
  });
}

/** An attempt failed (its effect rejected, or its timeout fired): back off, or fail the step. */
const failureParams = ({ context, event }: { context: UploadContext; event: EventObject }) => ({
  failure: attemptFailure(context, event),
});
const attemptFailed = [
  {
    guard: { type: 'willRetry', params: failureParams },
    target: 'backoff',
    actions: { type: 'recordFailure', params: failureParams },
  },
  {
    target: 'failed',
    actions: { type: 'recordFailure', params: failureParams },
  },
] as const;

const notProvided = (name: string) =>
  new Error(`uploadMachine: effect "${name}" was not provided (use uploadMachine.provide)`);

export const uploadMachine = setup({
  types: {
    input: {} as UploadInput,
    context: {} as UploadContext,
    events: {} as UploadTimerEvent,
    output: {} as UploadOutput,
  },
  actors: {
    /** One attempt of the step: resolves with the CRM's acknowledgement, stamped. */
    deliver: fromPromise<Stamped<DeliveryAck>, DeliveryAttemptInput>(() =>
      Promise.reject(notProvided('deliver')),
    ),
    timer: fromCallback<EventObject, TimerInput>(() => {
      throw notProvided('timer');
    }) as TimerLogic,
  },
  guards: {
    willRetry: ({ context }, params: { failure: StampedFailure }) =>
      retryPlanFor(context, params.failure) !== null,
  },
  actions: {
    recordAck: assign((_, params: { ack: Stamped<DeliveryAck> }) => ({
      ack: params.ack.result,
      acknowledgedAt: params.ack.at,
    })),
    recordFailure: assign(({ context }, params: { failure: StampedFailure }) => {
      const plan = retryPlanFor(context, params.failure);
      const lastFailure: AttemptFailure = {
        attempt: context.attempt,
        error: params.failure.info,
        at: params.failure.at,
        nextAttemptAt: plan === null ? null : params.failure.at + plan.delayMs,
        lane: plan?.lane ?? null,
      };
      return { failures: context.failures + 1, lastFailure };
    }),
    beginAttempt: assign(({ context }, params: { at: number }) => ({
      attempt: context.attempt + 1,
      attemptStartedAt: params.at,
      attemptDeadlineAt: params.at + context.attemptTimeoutMs,
    })),
  },
}).createMachine({
  id: 'upload',
  version: String(UPLOAD_MACHINE_VERSION),
  context: ({ input }) => ({
    request: input.request,
    attemptTimeoutMs: input.attemptTimeoutMs,
    maxAttempts: input.maxAttempts ?? MAX_ATTEMPTS,
    startedAt: input.now,
    attempt: 1,
    attemptStartedAt: input.now,
    attemptDeadlineAt: input.now + input.attemptTimeoutMs,
    failures: 0,
    lastFailure: null,
    ack: null,
    acknowledgedAt: null,
  }),
  initial: 'attempting',
  states: {
    attempting: {
      invoke: [
        {
          id: 'deliver',
          src: 'deliver',
          input: ({ context }) => ({
            request: context.request,
            attempt: context.attempt,
            timeoutMs: context.attemptTimeoutMs,
          }),
          onDone: {
            target: 'succeeded',
            actions: { type: 'recordAck', params: ({ event }) => ({ ack: event.output }) },
          },
          onError: attemptFailed,
        },
        {
          id: 'attemptTimeout',
          src: 'timer',
          input: ({ context }) => ({ at: context.attemptDeadlineAt, event: 'timer.attempt_timeout' }),
          // A broken timer only loses the machine's own bound; the effect still has its own timeout.
          onError: {},
        },
      ],
      on: {
        'timer.attempt_timeout': attemptFailed,
      },
    },
    backoff: {
      invoke: {
        id: 'retryTimer',
        src: 'timer',
        input: ({ context }) => ({
          at: context.lastFailure?.nextAttemptAt ?? context.attemptStartedAt,
          event: 'timer.retry_due',
        }),
        // A broken timer retries at once: still bounded by `maxAttempts`.
        onError: {
          target: 'attempting',
          actions: {
            type: 'beginAttempt',
            params: ({ context }) => ({ at: context.lastFailure?.nextAttemptAt ?? context.attemptStartedAt }),
          },
        },
      },
      on: {
        'timer.retry_due': {
          target: 'attempting',
          actions: { type: 'beginAttempt', params: ({ event }) => ({ at: event.at }) },
        },
      },
    },
    succeeded: { type: 'final' },
    failed: { type: 'final' },
  },
  output: ({ context }): UploadOutput =>
    context.ack !== null
      ? {
          status: 'succeeded',
          step: context.request.step,
          ack: context.ack,
          attempts: context.attempt,
          at: context.acknowledgedAt ?? context.attemptStartedAt,
        }
      : {
          status: 'failed',
          step: context.request.step,
          error: context.lastFailure?.error ?? { code: 'UNKNOWN', message: 'unknown', retryable: false },
          attempts: context.attempt,
          at: context.lastFailure?.at ?? context.attemptStartedAt,
        },
});

export type UploadMachine = typeof uploadMachine;
