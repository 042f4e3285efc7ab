import { describe, expect, it } from 'vitest';
import { createActor, createMachine, setup, SimulatedClock, type EventObject } from 'xstate';
import { createTimerActor, systemTime, type TimerInput } from '../../src/machines/timer.actor.ts';
import { REFERENCE_TIMESTAMP } from './harness.ts';

function machineWith(timer: ReturnType<typeof createTimerActor>, at: number) {
  return setup({
    types: { events: {} as { type: 'timer.due'; at: number } },
    actors: { timer },
  }).createMachine({
    initial: 'waiting',
    context: { firedAt: null as number | null },
    states: {
      waiting: {
        invoke: { id: 'deadline', src: 'timer', input: { at, event: 'timer.due' } satisfies TimerInput },
        on: {
          'timer.due': {
            target: 'fired',
            actions: ({ context, event }) => void (context.firedAt = event.at),
          },
        },
      },
      fired: {},
    },
  });
}

describe('createTimerActor', () => {
  it('fires once at its absolute time, with the time it fired', () => {
    const clock = new SimulatedClock();
    clock.set(REFERENCE_TIMESTAMP);
    const actor = createActor(machineWith(createTimerActor(clock), REFERENCE_TIMESTAMP + 5_000), {
      clock,
    }).start();
    clock.increment(4_999);
    expect(actor.getSnapshot().value).toBe('waiting');
    clock.increment(1);
    expect(actor.getSnapshot().value).toBe('fired');
    expect(actor.getSnapshot().context.firedAt).toBe(REFERENCE_TIMESTAMP + 5_000);
  });

  it('re-arms for the time left when restored from a persisted snapshot', () => {
    const clock = new SimulatedClock();
    clock.set(REFERENCE_TIMESTAMP);
    const machine = machineWith(createTimerActor(clock), REFERENCE_TIMESTAMP + 60_000);
    const first = createActor(machine, { clock }).start();
    clock.increment(10_000);
    const persisted = JSON.parse(JSON.stringify(first.getPersistedSnapshot())) as never;
    first.stop();
    clock.increment(20_000); // down for 20 s
    const restored = createActor(machine, { clock, snapshot: persisted }).start();
    clock.increment(29_999);
    expect(restored.getSnapshot().value).toBe('waiting');
    clock.increment(1);
    expect(restored.getSnapshot().value).toBe('fired');
  });

  it('fires as soon as it is restored when its time passed while down', () => {
    const clock = new SimulatedClock();
    clock.set(REFERENCE_TIMESTAMP);
    const machine = machineWith(createTimerActor(clock), REFERENCE_TIMESTAMP + 1_000);
    const first = createActor(machine, { clock }).start();
    const persisted = JSON.parse(JSON.stringify(first.getPersistedSnapshot())) as never;
    first.stop();
    clock.increment(3_600_000);
    const restored = createActor(machine, { clock, snapshot: persisted }).start();
    clock.increment(0);
    expect(restored.getSnapshot().value).toBe('fired');
    expect(restored.getSnapshot().context.firedAt).toBe(REFERENCE_TIMESTAMP + 3_600_000);
  });

  it('is cancelled when its state is left', () => {
    const clock = new SimulatedClock();
    clock.set(REFERENCE_TIMESTAMP);
    const sent: EventObject[] = [];
    const machine = createMachine({
      initial: 'a',
      states: {
        a: {
          invoke: {
            src: createTimerActor(clock),
            input: { at: REFERENCE_TIMESTAMP + 1_000, event: 'timer.due' },
          },
          on: { LEAVE: 'b', '*': { actions: ({ event }) => void sent.push(event) } },
        },
        b: { on: { '*': { actions: ({ event }) => void sent.push(event) } } },
      },
    });
    const actor = createActor(machine, { clock }).start();
    actor.send({ type: 'LEAVE' });
    clock.increment(5_000);
    expect(sent).toEqual([]);
  });

  it('waits longer than a Node timer can in steps (2^31 - 1 ms at most each)', () => {
    const waits: number[] = [];
    let now = REFERENCE_TIMESTAMP;
    let pending: (() => void) | null = null;
    const time = {
      now: () => now,
      setTimeout: (callback: () => void, ms: number) => {
        waits.push(ms);
        pending = callback;
        return waits.length;
      },
      clearTimeout: () => {
        pending = null;
      },
    };
    const at = REFERENCE_TIMESTAMP + 30 * 24 * 3_600_000; // 30 days
    const fired: EventObject[] = [];
    const actor = createActor(
      createMachine({
        invoke: { src: createTimerActor(time), input: { at, event: 'timer.due' } },
        on: { 'timer.due': { actions: ({ event }) => void fired.push(event) } },
      }),
    ).start();
    while (pending !== null && fired.length === 0) {
      now += waits.at(-1)!;
      const callback: () => void = pending;
      pending = null;
      callback();
    }
    expect(waits.every((ms) => ms <= 2_147_483_647)).toBe(true);
    expect(waits.length).toBeGreaterThan(1);
    expect(fired).toEqual([{ type: 'timer.due', at }]);
    actor.stop();
  });

  it('systemTime reads the real clock', () => {
    const before = Date.now();
    expect(systemTime.now()).toBeGreaterThanOrEqual(before);
    const handle = systemTime.setTimeout(() => undefined, 10_000);
    systemTime.clearTimeout(handle);
  });
});
