/**
 * The supervisor through its dependency interface: the real call machine with fake effects
 * (`test/machines/harness.ts`), an in-memory SQLite store, a stand-in webhook verifier and a
 * simulated clock. What the issue asks of it: the drain timeout, webhook routing (and the room
 * sid check), skipping calls stored by another machine version, and a store that cannot take
 * a write.
 */
import pino from 'pino';
import { Registry } from 'prom-client';
import { SimulatedClock } from 'xstate';
import { afterEach, describe, expect, it } from 'vitest';
import { createCallLogic } from '../../src/machines/call.actors.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { createMetricsRecorder } from '../../src/metrics/metrics.recorder.ts';
import { gateCallDataOnStoredSnapshot } from '../../src/services/call-data-gate.ts';
import type { LiveKitWebhook } from '../../src/services/livekit-webhook.ts';
import { StoreUnavailableError, type CallStore } from '../../src/store/call-store.ts';
import { SqliteCallStore } from '../../src/store/sqlite-store.ts';
import { Supervisor } from '../../src/supervisor.ts';
import {
  DELIVERED_RECORDING,
  FakeEffects,
  RECORDING_FILE,
  REFERENCE_TIMESTAMP,
  flush,
} from '../machines/harness.ts';

const CONFIG = { campaigns: [{ _id: 'camp-1', client: 'client-1', voiceAgents: [{ _id: 'va-1' }] }] };

let supervisors: Supervisor[] = [];
afterEach(async () => {
  for (const supervisor of supervisors) await supervisor.close();
  supervisors = [];
});

/** A store whose writes fail while `failing` is set, as a store that went away does. */
function flakyStore(store: CallStore): { store: CallStore; fail(failing: boolean): void } {
  let failing = false;
  const away = () => Promise.reject(new StoreUnavailableError('disk full'));
  const flaky = new Proxy(store, {
    get(target, property) {
      if (failing && (property === 'commit' || property === 'check')) return away;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { store: flaky, fail: (next) => (failing = next) };
}

/** A store whose commits wait, while `hold()` is in force, until `release()`. */
function holdingStore(store: CallStore): { store: CallStore; hold(): void; release(): void } {
  let held: Promise<void> | undefined;
  let release = () => undefined as void;
  const holding = new Proxy(store, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (property === 'commit') {
        return async (...args: Parameters<CallStore['commit']>) => {
          if (held) await held;
          return target.commit(...args);
        };
      }
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return {
    store: holding,
    hold: () => {
      held = new Promise<void>((resolve) => (release = resolve));
    },
    release: () => {
      held = undefined;
      release();
    },
  };
}

function start(options: { store?: CallStore; gateCallData?: boolean } = {}) {
  const clock = new SimulatedClock();
  clock.set(REFERENCE_TIMESTAMP);
  const effects = new FakeEffects();
  const registry = new Registry();
  const store = options.store ?? new SqliteCallStore(':memory:');
  const crm = options.gateCallData
    ? gateCallDataOnStoredSnapshot(effects.crm, (callId) => supervisor.snapshotStored(callId))
    : effects.crm;
  const supervisor: Supervisor = new Supervisor({
    store,
    logic: createCallLogic({ liveKit: effects.liveKit, crm, time: clock }),
    // The webhook's body is the verified event itself: routing is what is under test here.
    webhooks: { verify: (raw) => JSON.parse(raw) as LiveKitWebhook },
    logger: pino({ level: 'silent' }),
    metrics: createMetricsRecorder(createMetrics({ registry, processMetrics: false })),
    renderMetrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    time: clock,
  });
  supervisors.push(supervisor);
  return { clock, effects, registry, store, supervisor };
}

/** Starts the supervisor and a call in room-1 whose egress EG_1 records room instance RM_now. */
async function recordingCall(supervisor: Supervisor, effects: FakeEffects): Promise<string> {
  await supervisor.start();
  const { callId } = await supervisor.createCall({
    roomName: 'room-1',
    callerNumber: '+15550100',
    config: CONFIG,
  });
  await flush();
  effects.take('startEgress').resolve({ egressId: 'EG_1', roomSid: 'RM_now' });
  await flush();
  return callId;
}

const roomFinished = (room: string, roomSid: string | null, id = `EV_${room}`): string =>
  JSON.stringify({ id, event: 'room_finished', createdAt: 0, roomName: room, roomSid, egress: null });

describe('supervisor', () => {
  it('drains calls that ended for at most its timeout, and at once when nothing is delivering', async () => {
    const { clock, supervisor } = start();
    await supervisor.start();
    const { callId } = await supervisor.createCall({
      roomName: 'room-1',
      callerNumber: '+15550100',
      config: CONFIG,
    });
    await supervisor.endCall(callId, {});
    let drained = false;
    const draining = supervisor.drain(5_000).then(() => (drained = true));
    clock.increment(4_999);
    await flush();
    expect(drained).toBe(false); // the call still waits for its egress and the CRM
    clock.increment(1);
    await draining;
    expect(drained).toBe(true);

    const idle = start().supervisor;
    await idle.start();
    await idle.drain(5_000); // nothing delivering: no time needs to pass
  });

  it("routes room_finished by room name, and ignores one from an earlier room's sid", async () => {
    const { effects, supervisor } = start();
    const callId = await recordingCall(supervisor, effects);

    await supervisor.handleWebhook(roomFinished('room-1', 'RM_earlier'), 'jwt');
    expect((await supervisor.getCall(callId)).endedAt).toBeNull();
    await supervisor.handleWebhook(roomFinished('room-other', 'RM_x'), 'jwt');
    expect((await supervisor.getCall(callId)).endedAt).toBeNull();
    await supervisor.handleWebhook(roomFinished('room-1', 'RM_now'), 'jwt');
    expect((await supervisor.getCall(callId)).endReason).toBe('room_finished');
  });

  it("logs an egress's final status only: STARTING, ACTIVE and ENDING reports are answered and ignored", async () => {
    const { effects, registry, store, supervisor } = start();
    const callId = await recordingCall(supervisor, effects);
    const egressReport = (event: string, state: string, id: string) =>
      JSON.stringify({
        id,
        event,
        createdAt: 0,
        roomName: 'room-1',
        roomSid: 'RM_now',
        participantIdentity: null,
        egress: { egressId: 'EG_1', roomName: 'room-1', state, file: null, error: null },
      });

    await supervisor.handleWebhook(egressReport('egress_started', 'starting', 'EV_1'), 'jwt');
    await supervisor.handleWebhook(egressReport('egress_updated', 'active', 'EV_2'), 'jwt');
    await supervisor.handleWebhook(egressReport('egress_updated', 'ending', 'EV_3'), 'jwt');
    expect(await store.getEvents(callId)).toEqual([]);
    await supervisor.handleWebhook(egressReport('egress_ended', 'failed', 'EV_4'), 'jwt');
    expect(await store.getEvents(callId)).toMatchObject([
      {
        event: {
          event: { type: 'livekit.egress_ended', egressId: 'EG_1', outcome: { status: 'failed' } },
          webhookId: 'EV_4',
        },
      },
    ]);

    const received = await registry.getSingleMetric('callsync_webhooks_total')?.get();
    const count = (event: string, result: string) =>
      received?.values.find((value) => value.labels.event === event && value.labels.result === result)?.value;
    expect(count('egress_started', 'ignored')).toBe(1);
    expect(count('egress_updated', 'ignored')).toBe(2);
    expect(count('egress_ended', 'accepted')).toBe(1);
  });

  it('leaves alone a call stored by another machine version, and says so in its metrics', async () => {
    const store = new SqliteCallStore(':memory:');
    await store.open();
    await store.createCall({
      callId: 'CALL-old',
      roomName: 'room-old',
      machineVersion: '0',
      state: 'recording',
      snapshot: { value: 'recording', context: {} },
      createdAt: new Date(REFERENCE_TIMESTAMP).toISOString(),
    });
    const { supervisor, registry } = start({ store });
    await supervisor.start();
    expect(supervisor.isDriving('CALL-old')).toBe(false);
    const restored = await registry.getSingleMetric('callsync_calls_restored_total')?.get();
    expect(restored?.values.find((value) => value.labels.result === 'skipped')?.value).toBe(1);
  });

  it('answers STORE_UNAVAILABLE for an event the store cannot take, and takes it once the store is back', async () => {
    const flaky = flakyStore(new SqliteCallStore(':memory:'));
    const { clock, supervisor } = start({ store: flaky.store });
    await supervisor.start();
    const { callId } = await supervisor.createCall({
      roomName: 'room-1',
      callerNumber: '+15550100',
      config: CONFIG,
    });
    const item = {
      id: 'm1',
      role: 'user' as const,
      content: 'hello',
      timestamp: new Date(REFERENCE_TIMESTAMP).toISOString(),
    };

    flaky.fail(true);
    await expect(supervisor.addTranscript(callId, { items: [item] })).rejects.toMatchObject({
      code: 'STORE_UNAVAILABLE',
      retryable: true,
    });
    expect(supervisor.storeStatus()).toMatchObject({ ok: false });
    expect((await supervisor.getCall(callId)).transcriptItems).toBe(0); // nothing was applied

    flaky.fail(false);
    clock.increment(100); // the writer's first retry probes the store
    await flush();
    await flush();
    expect(supervisor.storeStatus()).toEqual({ ok: true });
    await supervisor.addTranscript(callId, { items: [item] });
    expect((await supervisor.getCall(callId)).transcriptItems).toBe(1);
  });

  it('sends the call data only once the snapshot in which the call stopped collecting is committed', async () => {
    const holding = holdingStore(new SqliteCallStore(':memory:'));
    const { clock, effects, store, supervisor } = start({ store: holding.store, gateCallData: true });
    const callId = await recordingCall(supervisor, effects);
    await supervisor.endCall(callId, {});
    await flush();
    effects.take('stopEgress').resolve({ alreadyEnded: false });
    await flush();
    clock.increment(5_000); // the poll after the stop
    await flush();
    effects.take('checkEgress').resolve({ status: 'complete', file: RECORDING_FILE });
    await flush();

    // Everything before is stored; the commit that would hold the call as no longer collecting
    // cannot finish yet.
    await supervisor.snapshotStored(callId);
    holding.hold();
    effects.take('uploadRecording').resolve(DELIVERED_RECORDING);
    await flush();
    await flush();
    expect(effects.inFlight('postCallData')).toBeUndefined();

    holding.release();
    await supervisor.snapshotStored(callId);
    await flush();
    expect((await store.getCall(callId))?.state).toBe('postingData');
    expect(effects.inFlight('postCallData')?.input).toMatchObject({ callId, step: 'call-data' });
  });
});
