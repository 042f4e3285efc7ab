/**
 * The machines' named actors: turns plain async functions (the LiveKit and CRM effects, a time
 * source) into the actors `callMachine` and `uploadMachine` name, production and test wiring in
 * one place. The supervisor calls `createCallLogic({ liveKit, crm, time })`
 * with the real services; tests call it with fakes and a `SimulatedClock`.
 *
 * What this adds on top of the functions:
 * - Time stamps: every result and every failure carries `at` from the injected clock, so the
 *   machines compute backoffs and deadlines without reading a clock.
 * - Errors become JSON-safe `ErrorInfo` (`toErrorInfo`): the `retryable` flag decided where the
 *   error arose is the only thing the retry guards read.
 * - The LiveKit client's lifetime. `liveKit.open` runs when the call's `liveKitClient` actor
 *   starts (on entering `active`, i.e. when the call actor starts, and again on a RETRY) and
 *   `liveKit.close` exactly once when it stops (reaching `done` or `failed`, or the actor
 *   stopping). Egress functions receive the client from the registry of their own call
 *   actor (keyed by its actor system), wrapped in a revocable proxy: after close, any use of it,
 *   even through a reference kept by an effect still in flight, throws.
 */
import { fromCallback, fromPromise, type AnyActorRef, type EventObject } from 'xstate';
import { CallsyncError, toErrorInfo, type ErrorInfo } from '../errors.ts';
import type { DeliveredRecording } from '../payload/call-data.ts';
import { callMachine } from './call.machine.ts';
import type {
  CheckEgressInput,
  DeliveryAck,
  DeliveryAttemptInput,
  EgressOutcome,
  LiveKitClientInput,
  PostCallDataRequest,
  PostCallDataResult,
  Stamped,
  StampedFailure,
  StartEgressInput,
  StartEgressResult,
  StopEgressInput,
  StopEgressResult,
  UploadRecordingRequest,
} from './call.types.ts';
import { createTimerActor, type TimeSource } from './timer.actor.ts';
import { uploadMachine } from './upload.machine.ts';

type ActorSystemOf = AnyActorRef['system'];

/** What an effect rejects with: the error as JSON-safe info plus the time it failed. */
export class EffectFailure extends Error implements StampedFailure {
  readonly info: ErrorInfo;
  readonly at: number;

  constructor(info: ErrorInfo, at: number, cause?: unknown) {
    super(info.message, cause === undefined ? undefined : { cause });
    this.name = 'EffectFailure';
    this.info = info;
    this.at = at;
  }
}

/**
 * LiveKit, per call. Every function must bound its own request time (the machine bounds only
 * StartEgress; stop and poll are bounded by the egress deadline).
 */
export interface LiveKitEffects<TClient extends object> {
  /** Opens the call's client (synchronously; it is an API handle, not a connection). */
  open(call: LiveKitClientInput): TClient;
  /** Closes it; called exactly once per `open`. Errors are reported to `onCloseError`. */
  close(client: TClient): void | Promise<void>;
  /** Idempotent: reuse `input.egressId` if still active, else an active egress of the room. */
  startEgress(client: TClient, input: StartEgressInput, signal: AbortSignal): Promise<StartEgressResult>;
  /** 412/404 (egress already ended, or unknown) resolve with `{ alreadyEnded: true }`. */
  stopEgress(client: TClient, input: StopEgressInput, signal: AbortSignal): Promise<StopEgressResult>;
  /** One `ListEgress({ egressId })`, folded to an `EgressOutcome`. */
  checkEgress(client: TClient, input: CheckEgressInput, signal: AbortSignal): Promise<EgressOutcome>;
}

/**
 * The CRM. Both send the request's `idempotencyKey` as `Idempotency-Key` and bound their
 * request by `timeoutMs`, the attempt's deadline.
 */
export interface CrmEffects {
  uploadRecording(
    request: UploadRecordingRequest,
    signal: AbortSignal,
    timeoutMs?: number,
  ): Promise<DeliveredRecording>;
  postCallData(
    request: PostCallDataRequest,
    signal: AbortSignal,
    timeoutMs?: number,
  ): Promise<PostCallDataResult>;
}

export interface CallEffects<TClient extends object> {
  liveKit: LiveKitEffects<TClient>;
  crm: CrmEffects;
  time: TimeSource;
  /** Told when `liveKit.close` throws or rejects (the call goes on regardless). */
  onCloseError?: ((error: unknown, call: LiveKitClientInput) => void) | undefined;
}

async function stamped<T>(time: TimeSource, run: () => Promise<T>): Promise<Stamped<T>> {
  try {
    const result = await run();
    return { result, at: time.now() };
  } catch (error) {
    throw new EffectFailure(toErrorInfo(error), time.now(), error);
  }
}

/** The upload machine with its effects provided (the call machine uses it for both CRM steps). */
export function createUploadLogic(effects: { crm: CrmEffects; time: TimeSource }) {
  const { crm, time } = effects;
  const deliver = fromPromise<Stamped<DeliveryAck>, DeliveryAttemptInput>(({ input, signal }) =>
    stamped(time, async (): Promise<DeliveryAck> => {
      const { request, timeoutMs } = input;
      if (request.step === 'recording') {
        return { step: 'recording', recording: await crm.uploadRecording(request, signal, timeoutMs) };
      }
      return { step: 'call-data', status: (await crm.postCallData(request, signal, timeoutMs)).status };
    }),
  );
  return uploadMachine.provide({ actors: { deliver, timer: createTimerActor(time) } });
}

/** The call machine with every effect provided. */
export function createCallLogic<TClient extends object>(effects: CallEffects<TClient>) {
  const { liveKit, time } = effects;
  const clients = new WeakMap<ActorSystemOf, TClient>();

  const clientOf = (system: ActorSystemOf): TClient => {
    const client = clients.get(system);
    if (client === undefined) {
      throw new CallsyncError('LIVEKIT_CLIENT_CLOSED', 'the call has no open LiveKit client', {
        retryable: false,
      });
    }
    return client;
  };

  return callMachine.provide({
    actors: {
      liveKitClient: fromCallback<EventObject, LiveKitClientInput>(({ input, system }) => {
        const client = liveKit.open(input);
        // Methods are bound to the real client so classes with #private fields work through
        // the proxy; after `revoke()` any property access on the proxy throws.
        const { proxy, revoke } = Proxy.revocable(client, {
          get(target, property) {
            const value: unknown = Reflect.get(target, property, target);
            return typeof value === 'function'
              ? (value as (...args: unknown[]) => unknown).bind(target)
              : value;
          },
        });
        clients.set(system, proxy);
        return () => {
          if (clients.get(system) === proxy) clients.delete(system);
          revoke();
          const report = (error: unknown) => effects.onCloseError?.(error, input);
          try {
            Promise.resolve(liveKit.close(client)).catch(report);
          } catch (error) {
            report(error);
          }
        };
      }),
      startEgress: fromPromise<Stamped<StartEgressResult>, StartEgressInput>(({ input, signal, system }) =>
        stamped(time, () => liveKit.startEgress(clientOf(system), input, signal)),
      ),
      stopEgress: fromPromise<Stamped<StopEgressResult>, StopEgressInput>(({ input, signal, system }) =>
        stamped(time, () => liveKit.stopEgress(clientOf(system), input, signal)),
      ),
      checkEgress: fromPromise<Stamped<EgressOutcome>, CheckEgressInput>(({ input, signal, system }) =>
        stamped(time, () => liveKit.checkEgress(clientOf(system), input, signal)),
      ),
      timer: createTimerActor(time),
      delivery: createUploadLogic(effects),
    },
  });
}

export type CallLogic = ReturnType<typeof createCallLogic>;
