/**
 * The glue between the call machine and its effects (`src/machines/call.actors.ts`) and the
 * failure records effects reject with (`call.types.ts`): what a rejected effect carries into the
 * machine, that a call without an open LiveKit client fails its effects with a stable,
 * non-retryable code, and that effects reach a client class with private fields as the class
 * itself (the call's client is handed out through a revocable proxy).
 */
import { SimulatedClock, createActor } from 'xstate';
import { describe, expect, it } from 'vitest';
import { CallsyncError } from '../../src/errors.ts';
import { EffectFailure, createCallLogic } from '../../src/machines/call.actors.ts';
import { failureOf, isStampedFailure } from '../../src/machines/call.types.ts';
import type { CallEmitted } from '../../src/machines/call.events.ts';
import { CallHarness, EGRESS_ID, REFERENCE_TIMESTAMP, makeCallInput } from './harness.ts';

const INFO = { code: 'CRM_UNAVAILABLE', message: 'down', retryable: true };

describe('isStampedFailure and failureOf', () => {
  it.each([
    [{ info: INFO, at: 5 }, true],
    [null, false],
    ['CRM_UNAVAILABLE', false],
    [{ info: INFO }, false],
    [{ info: INFO, at: '5' }, false],
    [{ info: null, at: 5 }, false],
    [{ info: 'CRM_UNAVAILABLE', at: 5 }, false],
    [{ info: { code: 7, message: 'x', retryable: true }, at: 5 }, false],
  ])('%j is a stamped failure: %s', (value, expected) => {
    expect(isStampedFailure(value)).toBe(expected);
  });

  it('keeps a stamped failure as it is, and dates anything else at the attempt start', () => {
    expect(failureOf({ info: INFO, at: 5, extra: true }, 1)).toEqual({ info: INFO, at: 5 });
    const bare = new CallsyncError('LIVEKIT_UNAVAILABLE', 'no answer', { retryable: true });
    expect(failureOf(bare, 1)).toEqual({
      info: expect.objectContaining({ code: 'LIVEKIT_UNAVAILABLE', retryable: true }) as unknown,
      at: 1,
    });
  });
});

describe('EffectFailure', () => {
  it('is named, says the error message, and keeps the cause only when there is one', () => {
    const cause = new Error('socket hang up');
    const failure = new EffectFailure(INFO, 5, cause);
    expect(failure).toMatchObject({ name: 'EffectFailure', message: 'down', info: INFO, at: 5, cause });
    expect('cause' in new EffectFailure(INFO, 5)).toBe(false);
    expect(isStampedFailure(failure)).toBe(true);
  });
});

describe('the LiveKit client as effects see it', () => {
  it('a call whose client could not be opened fails StartEgress as LIVEKIT_CLIENT_CLOSED, not retryable', async () => {
    const h = new CallHarness({ failFirstOpen: true });
    await h.advanceTo(REFERENCE_TIMESTAMP);
    const failed = h.emitted.find(
      (event): event is Extract<CallEmitted, { type: 'call.egress_start_failed' }> =>
        event.type === 'call.egress_start_failed',
    );
    expect(failed).toMatchObject({
      error: { code: 'LIVEKIT_CLIENT_CLOSED', retryable: false },
      nextAttemptAt: null,
    });
  });

  it('reaches a client with #private fields as the class itself, and closes it once at the end', async () => {
    class PrivateClient {
      readonly #egressId = EGRESS_ID;
      closed = 0;
      egressId(): string {
        return this.#egressId;
      }
    }
    const opened: PrivateClient[] = [];
    const clock = new SimulatedClock();
    clock.set(REFERENCE_TIMESTAMP);
    const never = () => new Promise<never>(() => undefined);
    const logic = createCallLogic<PrivateClient>({
      liveKit: {
        open: () => {
          const client = new PrivateClient();
          opened.push(client);
          return client;
        },
        close: (client) => {
          client.closed += 1;
        },
        startEgress: (client) => Promise.resolve({ egressId: client.egressId() }),
        stopEgress: never,
        checkEgress: never,
      },
      crm: { uploadRecording: never, postCallData: never },
      time: clock,
    });
    const actor = createActor(logic, { input: makeCallInput(), clock });
    actor.start();
    await new Promise((resolve) => setImmediate(resolve));
    expect(actor.getSnapshot().context.egress.id).toBe(EGRESS_ID);
    actor.stop();
    expect(opened).toHaveLength(1);
    expect(opened[0]!.closed).toBe(1);
  });
});
