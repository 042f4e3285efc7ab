/**
 * A `TimeSource` on the real clock whose timers can be held, as a stopped process's would be
 * (SIGSTOP, a long GC pause): while paused no timer fires (lease renewals, sweeps, the machines'
 * deadlines and retries); on resume the ones that came due fire at once, and `now()` has moved
 * on by the real time that passed.
 */
import type { TimeSource } from '../../src/machines/timer.actor.ts';

interface Held {
  timer: NodeJS.Timeout;
  callback: () => void;
  done: boolean;
}

export interface PausableTime extends TimeSource {
  pause(): void;
  resume(): void;
  readonly paused: boolean;
}

export function pausableTime(): PausableTime {
  let paused = false;
  const due: Held[] = [];
  const fire = (held: Held) => {
    if (held.done) return;
    held.done = true;
    held.callback();
  };
  return {
    now: () => Date.now(),
    setTimeout(callback, ms) {
      const held: Held = { callback, done: false, timer: undefined as never };
      held.timer = setTimeout(() => (paused ? due.push(held) : fire(held)), ms);
      return held;
    },
    clearTimeout(handle) {
      const held = handle as Held | undefined;
      if (!held) return;
      held.done = true;
      clearTimeout(held.timer);
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      for (const held of due.splice(0)) fire(held);
    },
    get paused() {
      return paused;
    },
  };
}
