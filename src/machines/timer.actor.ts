/**
 * The restore-safe timer. XState does not persist `after` timers (statelyai/xstate#5331): an actor
 * restored while waiting on one waits forever. Every deadline and backoff in the machines is
 * instead this invoked callback actor, whose input is an absolute time. Restoring a snapshot
 * restarts invoked actors with their persisted input, so the timer re-arms for the time left,
 * or fires at once if that time passed while the process was down.
 */
import { fromCallback, type CallbackActorLogic, type EventObject } from 'xstate';

/** The clock the timers (and the effects' time stamps) read; `SimulatedClock` fits it. */
export interface TimeSource {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTime: TimeSource = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface TimerInput<TType extends string = string> {
  /** Absolute time (epoch ms of the time source) the timer fires at. */
  at: number;
  /** The event type sent to the parent, as `{ type, at: <time it fired> }`. */
  event: TType;
}

export interface TimerFired<TType extends string = string> {
  type: TType;
  at: number;
}

export type TimerLogic = CallbackActorLogic<EventObject, TimerInput>;

/** Node's timers overflow past 2^31 - 1 ms (about 24.8 days); longer waits re-arm in steps. */
const MAX_SINGLE_WAIT_MS = 2_147_483_647;

export function createTimerActor(time: TimeSource): TimerLogic {
  return fromCallback<EventObject, TimerInput>(({ input, sendBack }) => {
    let handle: unknown;
    const arm = (): void => {
      const remaining = input.at - time.now();
      if (remaining <= 0) {
        sendBack({ type: input.event, at: time.now() } satisfies TimerFired);
        return;
      }
      handle = time.setTimeout(arm, Math.min(remaining, MAX_SINGLE_WAIT_MS));
    };
    // Arm asynchronously through the time source even when already due, so the event arrives
    // after the state that invoked the timer has finished entering.
    handle = time.setTimeout(arm, Math.max(0, Math.min(input.at - time.now(), MAX_SINGLE_WAIT_MS)));
    return () => time.clearTimeout(handle);
  });
}
