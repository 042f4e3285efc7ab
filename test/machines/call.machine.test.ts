/**
 * Behaviour of the call machine that the model-based tests do not spell out: the CRM document it
 * builds, the events it emits (and their metric fields), RETRY, the LiveKit client's lifetime,
 * and the structural guarantees (every invoke handles errors, no I/O or clock in machine files).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  createActor,
  createMachine,
  fromCallback,
  getInitialSnapshot,
  spawnChild,
  type AnyStateMachine,
  type EventObject,
  type StateValue,
} from 'xstate';
import type { CallData } from '../../src/payload/call-data.ts';
import { CALL_MACHINE_VERSION, callMachine } from '../../src/machines/call.machine.ts';
import type { CallEmitted } from '../../src/machines/call.events.ts';
import type {
  EgressOutcome,
  PostCallDataRequest,
  UploadRecordingRequest,
} from '../../src/machines/call.types.ts';
import { uploadMachine } from '../../src/machines/upload.machine.ts';
import {
  RESTORABLE_VERSIONS,
  restorableCallSnapshot,
  storedCallSnapshot,
  type PersistedCallSnapshot,
} from '../../src/machines/call.snapshot.ts';
import {
  CALL_ID,
  CallHarness,
  DELIVERED_RECORDING,
  EGRESS_ID,
  RECORDING_FILE,
  REFERENCE_TIMESTAMP,
  fatalError,
  flush,
  iso,
  makeCallInput,
  retryableError,
  type FakeClient,
} from './harness.ts';
import { stateNodeIds } from './coverage.ts';

const item = (id: string, offsetMs: number, content: string, role: 'user' | 'assistant' = 'user') => ({
  id,
  role,
  content,
  timestamp: iso(REFERENCE_TIMESTAMP + offsetMs),
});

/** Start → conversation → end → stop → egress COMPLETE by the poll one interval later → recording acknowledged. */
async function toPostingData(h: CallHarness, endedAtOffsetMs = 60_000): Promise<void> {
  await h.resolve('startEgress', { egressId: EGRESS_ID });
  await h.advanceTo(REFERENCE_TIMESTAMP + endedAtOffsetMs);
  h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
  await flush();
  await h.resolve('stopEgress', { alreadyEnded: false });
  expect(h.effects.inFlight('checkEgress')).toBeUndefined(); // no poll right after the stop
  await h.advanceTo(h.context.egress.nextPollAt!);
  await h.resolve('checkEgress', { status: 'complete', file: RECORDING_FILE });
  await h.resolve('uploadRecording', DELIVERED_RECORDING);
  expect(h.snapshot.value).toEqual({ active: 'postingData' });
}

function postedDocument(h: CallHarness): CallData {
  return (h.effects.take('postCallData').input as PostCallDataRequest).document;
}

describe('collecting', () => {
  it('keeps transcript items once each, in time order, and sends the last linked lead', async () => {
    const h = new CallHarness();
    h.send({
      type: 'call.transcript',
      items: [item('t2', 2_000, 'How can I help?', 'assistant'), item('t1', 1_000, 'Hello')],
      at: h.clock.now(),
    });
    h.send({
      type: 'call.transcript',
      items: [item('t1', 1_000, 'Hello?? (resent)'), item('t3', 3_000, 'Book')],
      at: 0,
    });
    h.send({ type: 'call.lead', leadId: 'lead-1', data: { name: 'Ada' }, at: 0 });
    h.send({ type: 'call.lead', leadId: 'lead-2', data: { name: 'Bob' }, at: 0 });
    h.send({ type: 'call.lead', leadId: 'lead-1', data: { name: 'Ada Lovelace' }, at: 0 });
    expect(h.context.transcript.map((entry) => `${entry.id}:${entry.content}`)).toEqual([
      't1:Hello',
      't2:How can I help?',
      't3:Book',
    ]);
    await toPostingData(h);
    // Items that arrive after the call ended but before the document is built are kept.
    expect(h.context.transcript).toHaveLength(3);
    const document = postedDocument(h);
    expect(document.transcription.conversation_items.map((entry) => entry.content)).toEqual([
      'Hello',
      'How can I help?',
      'Book',
    ]);
    expect(document.lead).toEqual({ name: 'Ada Lovelace', leadId: 'lead-1' });
    expect(document.transcription.metadata).toMatchObject({
      lead_ids: ['lead-2', 'lead-1'],
      egress_id: EGRESS_ID,
      egress_status: 'complete',
      end_reason: 'agent_end',
    });
    expect(document.callDetails).toMatchObject({
      callId: CALL_ID,
      recordingUrl: DELIVERED_RECORDING.url,
      recordingSize: DELIVERED_RECORDING.sizeBytes,
      recordingDuration: DELIVERED_RECORDING.durationSeconds,
      startTime: iso(REFERENCE_TIMESTAMP),
      endTime: iso(REFERENCE_TIMESTAMP + 60_000),
      duration: 60,
    });
  });

  it('accepts transcript items while the recording uploads, and none once the document is built', async () => {
    const h = new CallHarness();
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    h.send({
      type: 'livekit.egress_ended',
      egressId: EGRESS_ID,
      outcome: { status: 'complete', file: RECORDING_FILE },
      at: 0,
    });
    h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
    await flush();
    expect(h.snapshot.value).toEqual({ active: 'uploadingRecording' });
    h.send({ type: 'call.transcript', items: [item('late', 500, 'Bye')], at: 0 });
    await h.resolve('uploadRecording', DELIVERED_RECORDING);
    h.send({ type: 'call.transcript', items: [item('too-late', 600, 'Hm?')], at: 0 });
    expect(h.context.transcript.map((entry) => entry.id)).toEqual(['late']);
    expect(postedDocument(h).transcription.total_items).toBe(1);
  });

  it('posts recording fields as null when there is no recording', async () => {
    const h = new CallHarness();
    await h.reject('startEgress', fatalError('EGRESS_FORBIDDEN'));
    h.send({ type: 'livekit.room_finished', at: h.clock.now() + 1 });
    await flush();
    const document = postedDocument(h);
    expect(document.callDetails).toMatchObject({
      recordingUrl: null,
      recordingSize: null,
      recordingDuration: null,
    });
    expect(document.transcription.metadata).toMatchObject({
      egress_status: 'not_started',
      end_reason: 'room_finished',
    });
  });
});

describe('egress', () => {
  it('records the egress id on the very transition that learns it, before anything else', async () => {
    const h = new CallHarness();
    const writes: Array<{ value: unknown; egressId: string | null }> = [];
    h.actor.subscribe((snapshot) =>
      writes.push({ value: snapshot.value, egressId: snapshot.context.egress.id }),
    );
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    expect(writes[0]).toEqual({ value: { active: { live: 'inConversation' } }, egressId: EGRESS_ID });
    expect(JSON.parse(h.persistedJson)).toMatchObject({ context: { egress: { id: EGRESS_ID } } });
    expect(h.emitted.find((event) => event.type === 'call.egress_started')).toMatchObject({
      egressId: EGRESS_ID,
    });
  });

  it('stops the egress it knows, at once, and polls on after a failed stop', async () => {
    const h = new CallHarness();
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
    await flush();
    expect(h.effects.inFlight('stopEgress')?.input).toEqual({
      callId: CALL_ID,
      roomName: 'room-1',
      egressId: EGRESS_ID,
    });
    await h.reject('stopEgress', retryableError('LIVEKIT_UNAVAILABLE'));
    expect(h.snapshot.value).toEqual({ active: { live: { awaitingEgress: 'polling' } } });
    expect(h.emitted.find((event) => event.type === 'call.egress_stop_failed')).toMatchObject({
      egressId: EGRESS_ID,
      error: { code: 'LIVEKIT_UNAVAILABLE' },
    });
  });

  it('polls 1 s after a stop LiveKit took, and at once after one it refused as already ended', async () => {
    const ended = async (h: CallHarness) => {
      await h.resolve('startEgress', { egressId: EGRESS_ID });
      h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
      await flush();
    };
    const stopped = new CallHarness();
    await ended(stopped);
    await stopped.resolve('stopEgress', { alreadyEnded: false });
    expect(stopped.snapshot.value).toEqual({ active: { live: { awaitingEgress: 'waiting' } } });
    expect(stopped.effects.inFlight('checkEgress')).toBeUndefined();
    expect(stopped.context.egress.nextPollAt).toBe(stopped.clock.now() + 1_000);
    expect(stopped.context.egress.polls).toBe(0);

    const alreadyEnded = new CallHarness();
    await ended(alreadyEnded);
    await alreadyEnded.resolve('stopEgress', { alreadyEnded: true });
    expect(alreadyEnded.snapshot.value).toEqual({ active: { live: { awaitingEgress: 'polling' } } });
    expect(alreadyEnded.effects.inFlight('checkEgress')?.input).toMatchObject({ egressId: EGRESS_ID });
  });

  it('ignores webhooks about other egresses and non-final updates', async () => {
    const h = new CallHarness();
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
    await flush();
    h.send({
      type: 'livekit.egress_ended',
      egressId: 'EG_OTHER',
      outcome: { status: 'complete', file: RECORDING_FILE },
      at: 0,
    });
    h.send({ type: 'livekit.egress_updated', egressId: EGRESS_ID, outcome: { status: 'active' }, at: 0 });
    expect(h.snapshot.value).toEqual({ active: { live: { awaitingEgress: 'stopping' } } });
  });

  it('gives up waiting at the egress deadline and posts without a recording', async () => {
    const h = new CallHarness();
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
    await flush();
    await h.resolve('stopEgress', { alreadyEnded: false });
    const deadline = h.context.egressDeadlineAt!;
    expect(deadline).toBe(REFERENCE_TIMESTAMP + 120_000);
    while (h.clock.now() < deadline) {
      if (h.effects.inFlight('checkEgress')) await h.resolve('checkEgress', { status: 'active' });
      await h.advanceTo(Math.min(deadline, h.context.egress.nextPollAt ?? deadline));
    }
    expect(h.snapshot.value).toEqual({ active: 'postingData' });
    expect(h.emitted.find((event) => event.type === 'call.egress_final')).toMatchObject({
      status: 'timed_out',
      via: 'deadline',
      hasFile: false,
      waitedMs: 120_000,
    });
  });
});

describe('emitted events', () => {
  it('carry what metrics need: state timings, egress wait, retries, delivery duration against the target', async () => {
    const h = new CallHarness();
    await toPostingData(h);
    await h.reject('postCallData', retryableError('CRM_UNAVAILABLE'));
    await h.advanceTo(h.context.delivery!.nextAttemptAt!);
    await h.resolve('postCallData', { status: 201 });
    const types = h.emitted.map((event) =>
      event.type === 'call.state_entered' ? `→${event.state}` : event.type,
    );
    expect(types).toEqual([
      '→recording',
      'call.egress_started',
      '→inConversation',
      'call.ended',
      '→awaitingEgress',
      'call.egress_final',
      '→uploadingRecording',
      'upload.succeeded',
      '→postingData',
      'upload.attempt_failed',
      'upload.succeeded',
      '→done',
      'call.delivered',
    ]);
    const endedAt = REFERENCE_TIMESTAMP + 60_000;
    const byType = <T extends CallEmitted['type']>(type: T) =>
      h.emitted.find((event): event is Extract<CallEmitted, { type: T }> => event.type === type)!;
    expect(byType('call.egress_final')).toMatchObject({
      via: 'poll',
      status: 'complete',
      hasFile: true,
      waitedMs: 1_000,
    });
    expect(byType('upload.attempt_failed')).toMatchObject({
      step: 'call-data',
      attempt: 1,
      lane: 'fast',
      error: { code: 'CRM_UNAVAILABLE' },
    });
    const delivered = byType('call.delivered');
    expect(delivered).toMatchObject({ outcome: 'delivered', endedAt: iso(endedAt), withinTarget: true });
    expect(delivered.deliveryMs).toBe(delivered.acknowledgedAt - endedAt);
    expect(h.snapshot.output).toEqual({
      callId: CALL_ID,
      outcome: 'delivered',
      recording: DELIVERED_RECORDING,
      endedAt: iso(endedAt),
      acknowledgedAt: delivered.acknowledgedAt,
    });
    const entered = h.emitted.filter((event) => event.type === 'call.state_entered').map((event) => event.at);
    expect(entered).toEqual([...entered].sort((a, b) => a - b));
    expect(entered[0]).toBe(REFERENCE_TIMESTAMP);
  });

  it('reports a delivery that missed the 30 s target', async () => {
    const h = new CallHarness({ input: makeCallInput({ limits: { postAttemptTimeoutMs: 60_000 } }) });
    await toPostingData(h);
    await h.advanceTo(h.clock.now() + 45_000);
    await h.resolve('postCallData', { status: 200 });
    expect(h.emitted.at(-1)).toMatchObject({ type: 'call.delivered', withinTarget: false });
  });
});

describe('failed and RETRY', () => {
  it('keeps the CRM answer, and a RETRY posts again without repeating the acknowledged upload, with a new LiveKit client', async () => {
    const h = new CallHarness();
    await toPostingData(h);
    await h.reject('postCallData', fatalError('CRM_REJECTED'));
    expect(h.snapshot.value).toBe('failed');
    expect(h.context.failure).toMatchObject({
      step: 'call-data',
      attempts: 1,
      error: { code: 'CRM_REJECTED', status: 422 },
    });
    expect(h.emitted.at(-1)).toMatchObject({
      type: 'call.failed',
      step: 'call-data',
      reason: { code: 'CRM_REJECTED' },
    });
    // Failed: the call's client was closed once.
    expect([h.effects.opens, h.effects.closes, h.effects.openClientCount]).toEqual([1, 1, 0]);

    // Days later, after a restart: restoring a failed call opens nothing.
    await h.crash(3 * 24 * 3_600_000);
    expect([h.effects.opens, h.effects.closes]).toEqual([1, 1]);
    h.send({ type: 'call.retry', at: h.clock.now() });
    await flush();
    expect(h.snapshot.value).toEqual({ active: 'postingData' });
    expect([h.effects.opens, h.effects.closes, h.effects.openClientCount]).toEqual([2, 1, 1]);
    await h.resolve('postCallData', { status: 201 });
    expect(h.snapshot.output).toMatchObject({ outcome: 'delivered' });
    expect(h.effects.crmRequests.get(`${CALL_ID}:recording`)).toBe(1);
    expect(h.effects.crmRequests.get(`${CALL_ID}:call-data`)).toBe(2);
    expect([h.effects.opens, h.effects.closes, h.effects.openClientCount]).toEqual([2, 2, 0]);
    expect(h.context.retries).toBe(1);
    expect(h.problems()).toEqual([]);
  });

  it('ignores RETRY unless failed', async () => {
    const h = new CallHarness();
    h.send({ type: 'call.retry', at: 0 });
    await flush();
    expect(h.snapshot.value).toEqual({ active: { live: { recording: 'starting' } } });
    expect(h.context.retries).toBe(0);
  });
});

describe('the LiveKit client', () => {
  const openCloses = (h: CallHarness) => [h.effects.opens, h.effects.closes, h.effects.openClientCount];

  it('is opened once when the actor starts and closed once on stop', () => {
    const h = new CallHarness();
    expect(openCloses(h)).toEqual([1, 0, 1]);
    h.actor.stop();
    h.actor.stop();
    expect(openCloses(h)).toEqual([1, 1, 0]);
  });

  it('stays open for the whole call, through both CRM steps, and is closed once on done', async () => {
    const h = new CallHarness();
    const seen: unknown[] = [];
    h.actor.subscribe((snapshot) => {
      if (snapshot.status === 'active') seen.push([snapshot.value, h.effects.openClientCount]);
    });
    await toPostingData(h);
    expect(openCloses(h)).toEqual([1, 0, 1]);
    expect(seen).toContainEqual([{ active: 'uploadingRecording' }, 1]);
    expect(seen).toContainEqual([{ active: 'postingData' }, 1]);
    expect(seen.every((entry) => (entry as [unknown, number])[1] === 1)).toBe(true);
    await h.resolve('postCallData', { status: 201 });
    expect(h.snapshot.status).toBe('done');
    expect(openCloses(h)).toEqual([1, 1, 0]);
    h.actor.stop();
    expect(openCloses(h)).toEqual([1, 1, 0]);
    expect(h.effects.violations).toEqual([]);
  });

  it('is closed once on failed, and a RETRY opens a new one, closed again on failed', async () => {
    const h = new CallHarness();
    await toPostingData(h);
    await h.reject('postCallData', fatalError('CRM_REJECTED'));
    expect(h.snapshot.value).toBe('failed');
    expect(openCloses(h)).toEqual([1, 1, 0]);
    h.send({ type: 'call.retry', at: h.clock.now() });
    await flush();
    expect(openCloses(h)).toEqual([2, 1, 1]);
    await h.reject('postCallData', fatalError('CRM_REJECTED'));
    expect(h.snapshot.value).toBe('failed');
    expect(openCloses(h)).toEqual([2, 2, 0]);
    expect(h.problems()).toEqual([]);
    h.actor.stop();
    expect(openCloses(h)).toEqual([2, 2, 0]);
    expect(h.effects.violations).toEqual([]);
  });

  it('is closed once when the actor stops while the call data is posted', async () => {
    const h = new CallHarness();
    await toPostingData(h);
    h.actor.stop();
    expect(openCloses(h)).toEqual([1, 1, 0]);
    expect(h.effects.violations).toEqual([]);
  });

  it('cannot be used after it was closed, even through a reference an effect kept', async () => {
    const h = new CallHarness();
    let kept: FakeClient | undefined;
    const { liveKit } = h.effects;
    const original = liveKit.stopEgress.bind(liveKit);
    liveKit.stopEgress = (client, input, signal) => {
      kept = client;
      return original(client, input, signal);
    };
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
    await flush();
    expect(kept?.isOpen).toBe(true);
    h.send({ type: 'livekit.egress_ended', egressId: EGRESS_ID, outcome: { status: 'failed' }, at: 0 });
    expect(h.snapshot.value).toEqual({ active: 'postingData' });
    // Still the call's client while the CRM steps run.
    expect(kept?.isOpen).toBe(true);
    await h.resolve('postCallData', { status: 201 });
    expect(h.snapshot.status).toBe('done');
    expect(() => kept?.isOpen).toThrow(TypeError);
    expect(h.effects.closes).toBe(1);
  });

  it('is owned by every state of the call but done and failed (the livekit tag)', () => {
    interface NodeLike {
      id: string;
      path: string[];
      states: Record<string, NodeLike>;
    }
    const initial = getInitialSnapshot(callMachine, makeCallInput());
    const valueOf = (path: readonly string[]): StateValue =>
      path.length === 1 ? path[0]! : { [path[0]!]: valueOf(path.slice(1)) };
    const tagged: Record<string, boolean> = {};
    const visit = (node: NodeLike) => {
      const snapshot =
        node.path.length === 0
          ? initial
          : callMachine.resolveState({ value: valueOf(node.path), context: initial.context });
      tagged[node.id] = snapshot.hasTag('livekit');
      Object.values(node.states).forEach(visit);
    };
    visit(callMachine.root);
    expect(Object.keys(tagged)).toEqual(stateNodeIds(callMachine));
    expect(
      Object.keys(tagged)
        .filter((id) => !tagged[id])
        .sort(),
    ).toEqual(['call.done', 'call.failed']);
  });

  it('reports a failing close without disturbing the call', () => {
    const h = new CallHarness({
      adapt: (logic, effects) => {
        effects.liveKit.close = () => {
          throw new Error('close failed');
        };
        return logic;
      },
    });
    h.actor.stop();
    expect(h.effects.violations).toEqual(['close failed: Error: close failed']);
  });
});

describe('durability', () => {
  it('stores the machine version in context and keeps context JSON-safe', async () => {
    const h = new CallHarness();
    await toPostingData(h);
    await h.reject('postCallData', retryableError());
    const persisted = h.actor.getPersistedSnapshot();
    expect(JSON.parse(JSON.stringify(persisted))).toEqual(persisted);
    expect(h.context.machineVersion).toBe(CALL_MACHINE_VERSION);
    expect(callMachine.version).toBe(String(CALL_MACHINE_VERSION));
  });

  it('persists a failed CRM attempt with the call, so a restart neither forgets nor repeats it early', async () => {
    const h = new CallHarness();
    await toPostingData(h);
    await h.reject('postCallData', retryableError('CRM_UNAVAILABLE'));
    // The upload child's own transition must reach the call's persisted snapshot.
    expect(h.persistedIsCurrent).toBe(true);
    expect(h.context.delivery).toMatchObject({ step: 'call-data', attempt: 1, failures: 1 });
    const due = h.context.delivery!.nextAttemptAt!;
    await h.crash(Math.max(0, due - h.clock.now() - 100));
    await flush();
    expect(h.effects.inFlight('postCallData')).toBeUndefined();
    await h.advanceTo(due);
    expect(h.persistedIsCurrent).toBe(true);
    expect(h.context.delivery).toMatchObject({ attempt: 2, failures: 1 });
    await h.resolve('postCallData', { status: 201 });
    expect(h.effects.crmRequests.get(`${CALL_ID}:call-data`)).toBe(2);
  });

  it('an actor with no effects provided never crashes: placeholders fail into the error handlers', async () => {
    const errors: unknown[] = [];
    const emitted: EventObject[] = [];
    const onUncaught = (error: unknown) => errors.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      const actor = createActor(callMachine, {
        input: { call: new CallHarness().context.call, now: REFERENCE_TIMESTAMP },
      });
      actor.on('*', (event) => emitted.push(event));
      actor.subscribe({ error: (error) => errors.push(error) });
      actor.start();
      for (let tick = 0; tick < 10; tick += 1) await flush();
      expect(actor.getSnapshot().status).toBe('active');
      expect(actor.getSnapshot().value).toEqual({ active: { live: 'inConversation' } });
      expect(actor.getSnapshot().context.egress).toMatchObject({ unavailable: true, startAttempts: 3 });
      expect(emitted.filter((event) => event.type === 'call.fault').length).toBeGreaterThan(0);
      actor.stop();
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(errors).toEqual([]);
  });

  it('every invoke of both machines handles its errors', () => {
    interface NodeLike {
      id: string;
      states: Record<string, NodeLike>;
      invoke: Array<{ id: string }>;
      transitions: Map<string, unknown[]>;
    }
    const unhandled: string[] = [];
    const visit = (node: NodeLike) => {
      for (const { id } of node.invoke) {
        if (!node.transitions.has(`xstate.error.actor.${id}`)) unhandled.push(`${node.id} invokes ${id}`);
      }
      Object.values(node.states).forEach(visit);
    };
    for (const machine of [callMachine, uploadMachine] as AnyStateMachine[]) visit(machine.root as NodeLike);
    expect(unhandled).toEqual([]);
  });

  it('machine files import no I/O and read no clock or randomness', () => {
    const pure = [
      'call.machine.ts',
      'upload.machine.ts',
      'retry-policy.ts',
      'call.types.ts',
      'call.events.ts',
    ];
    for (const file of pure) {
      const source = readFileSync(new URL(`../../src/machines/${file}`, import.meta.url), 'utf8');
      const imports = [...source.matchAll(/^import[^;]*?from '([^']+)';/gms)].map((match) => match[1]!);
      for (const specifier of imports) {
        expect(
          specifier === 'xstate' ||
            /^\.\/[\w.-]+\.ts$/.test(specifier) ||
            /^\.\.\/(errors|payload\/[\w.-]+)\.ts$/.test(specifier),
          `${file} imports ${specifier}`,
        ).toBe(true);
      }
      expect(source, file).not.toMatch(/Date\.now\(|Math\.random\(|setTimeout\(|performance\.now\(/);
    }
  });

  it('runs on the development build of xstate, which refuses to persist inline actors', () => {
    const actor = createActor(createMachine({ entry: spawnChild(fromCallback(() => undefined)) })).start();
    expect(() => actor.getPersistedSnapshot()).toThrow('An inline child actor cannot be persisted.');
    actor.stop();
  });
});

const TRANSCRIPT_ITEM = {
  id: 'item-1',
  role: 'user' as const,
  content: 'I would like a quote',
  timestamp: iso(REFERENCE_TIMESTAMP + 1_000),
};

describe('a recording never holds back the call data', () => {
  function collect(h: CallHarness): void {
    h.send({ type: 'call.transcript', items: [TRANSCRIPT_ITEM], at: h.clock.now() });
    h.send({ type: 'call.lead', leadId: 'lead-1', data: { name: 'Ada' }, at: h.clock.now() });
  }

  /** Ends a call whose egress reported `outcome`, so the next step is the upload or the post. */
  async function endedWith(outcome: EgressOutcome): Promise<CallHarness> {
    const h = new CallHarness();
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    h.send({ type: 'livekit.egress_ended', egressId: EGRESS_ID, outcome, at: h.clock.now() });
    collect(h);
    h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
    await flush();
    return h;
  }

  /** The call data goes out with null recording fields and everything collected; then `partial`. */
  async function expectPartial(h: CallHarness, reason: string): Promise<void> {
    expect(h.snapshot.value).toEqual({ active: 'postingData' });
    const document = postedDocument(h);
    expect(document.callDetails).toMatchObject({
      recordingUrl: null,
      recordingDuration: null,
      recordingSize: null,
    });
    expect(document.transcription.conversation_items.map((item) => item.content)).toEqual([
      TRANSCRIPT_ITEM.content,
    ]);
    expect(document.lead).toMatchObject({ leadId: 'lead-1' });
    expect(document.transcription.metadata).toMatchObject({ recording_missing_reason: reason });
    expect(h.context.recordingMissing).toMatchObject({ reason });
    await h.resolve('postCallData', { status: 201 });
    expect(h.snapshot.value).toBe('done');
    expect(h.context.outcome).toBe('partial');
    expect(h.emitted.filter((event) => event.type === 'call.recording_missing')).toEqual([
      expect.objectContaining({ reason }),
    ]);
  }

  it.each([
    ['a non-retryable CRM answer (413)', fatalError('CRM_REJECTED'), 'crm_refused'],
    ['a CRM answer without a file URL', fatalError('CRM_BAD_RESPONSE'), 'crm_refused'],
    ['a file that is not Ogg', fatalError('RECORDING_INVALID'), 'file_not_ogg'],
    ['a file outside the recordings root', fatalError('RECORDING_OUTSIDE_ROOT'), 'file_outside_root'],
    ['a storage that refuses callsync', fatalError('STORAGE_ACCESS_DENIED'), 'storage_refused'],
  ])('%s: posts at once without the recording', async (_name, error, reason) => {
    const h = await endedWith({ status: 'complete', file: RECORDING_FILE });
    await h.reject('uploadRecording', error);
    expect(h.effects.count('uploadRecording')).toBe(1);
    await expectPartial(h, reason);
  });

  it.each([
    ['a missing file', 'RECORDING_NOT_FOUND', 'file_missing'],
    ['a store that does not answer', 'STORAGE_UNAVAILABLE', 'storage_unavailable'],
    ['a store read that breaks mid-upload', 'RECORDING_READ_FAILED', 'storage_unavailable'],
  ])(
    '%s: seven attempts in the fast lane (under 10 s), then posts without it',
    async (_name, code, reason) => {
      const h = await endedWith({ status: 'complete', file: RECORDING_FILE });
      const endedAt = h.clock.now();
      for (let attempt = 1; attempt <= 7; attempt += 1) {
        await h.reject('uploadRecording', retryableError(code));
        if (attempt < 7) {
          expect(h.snapshot.value).toEqual({ active: 'uploadingRecording' });
          await h.advanceTo(h.context.delivery!.nextAttemptAt!);
        }
      }
      expect(h.effects.count('uploadRecording')).toBe(7);
      expect(h.clock.now() - endedAt).toBeLessThan(10_000);
      await expectPartial(h, reason);
    },
  );

  it('a CRM that is down for /upload keeps the recording waiting: its retries go past the fast lane', async () => {
    const h = await endedWith({ status: 'complete', file: RECORDING_FILE });
    for (let attempt = 1; attempt <= 7; attempt += 1) {
      await h.reject('uploadRecording', retryableError('CRM_SERVER_ERROR'));
      expect(h.snapshot.value).toEqual({ active: 'uploadingRecording' });
      await h.advanceTo(h.context.delivery!.nextAttemptAt!);
    }
    expect(h.effects.count('uploadRecording')).toBe(8);
    expect(h.context.recordingMissing).toBeNull();
  });

  it.each([
    ['failed without a file', { status: 'failed', error: 'pipeline frozen' }, 'egress_failed'],
    ['aborted', { status: 'aborted', error: 'Start signal not received' }, 'egress_aborted'],
    ['complete without a file', { status: 'complete', file: null }, 'file_missing'],
    [
      'failed with the planned name but nothing uploaded',
      { status: 'failed', error: 'S3 upload failed', file: { filename: 'calls/x.ogg', location: '' } },
      'egress_failed',
    ],
  ] as const)('an egress %s: posts without a recording', async (_name, outcome, reason) => {
    const h = await endedWith(outcome);
    expect(h.effects.count('uploadRecording')).toBe(0);
    await expectPartial(h, reason);
  });

  it('an egress not final within the deadline: posts without a recording', async () => {
    const h = new CallHarness();
    await h.resolve('startEgress', { egressId: EGRESS_ID });
    collect(h);
    h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
    await flush();
    await h.advanceTo(h.context.egressDeadlineAt!);
    await expectPartial(h, 'egress_timed_out');
  });

  it('an egress that never started: posts without a recording', async () => {
    const h = new CallHarness();
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      await h.reject('startEgress', fatalError('LIVEKIT_INVALID_REQUEST'));
      if (h.snapshot.matches({ active: { live: 'inConversation' } })) break;
    }
    collect(h);
    h.send({ type: 'call.end', endedAt: iso(h.clock.now()), status: 'completed', at: h.clock.now() });
    await flush();
    await expectPartial(h, 'egress_not_started');
  });

  it('a FAILED egress that still reports an uploaded file delivers that file', async () => {
    const file = { ...RECORDING_FILE, location: 'https://recordings.s3.amazonaws.com/calls/x.ogg' };
    const h = await endedWith({ status: 'failed', error: 'connection to room failed', file });
    expect((h.effects.take('uploadRecording').input as UploadRecordingRequest).file).toEqual(file);
    await h.resolve('uploadRecording', DELIVERED_RECORDING);
    expect(postedDocument(h).callDetails.recordingUrl).toBe(DELIVERED_RECORDING.url);
    await h.resolve('postCallData', { status: 201 });
    expect(h.context.outcome).toBe('delivered');
  });

  it("gives each upload attempt time in proportion to the recording's size", async () => {
    const sizeBytes = 89 * 1024 * 1024;
    const h = await endedWith({ status: 'complete', file: { ...RECORDING_FILE, sizeBytes } });
    const upload = h.actor.getSnapshot().children['recordingUpload'];
    const { attemptTimeoutMs } = (upload!.getSnapshot() as { context: { attemptTimeoutMs: number } }).context;
    // The base per attempt plus one second per 256 KiB: 89 MiB at 256 KiB/s is 356 s.
    expect(attemptTimeoutMs).toBe(h.context.limits.uploadAttemptTimeoutMs + 356_000);
  });
});

describe('the stored snapshot (call.snapshot.ts)', () => {
  it('holds neither the transcript nor the call data while posting; a restore posts the same document again', async () => {
    const h = new CallHarness();
    const items = Array.from({ length: 200 }, (_, n) => item(`said-${n}`, 1_000 + n * 10, `words-${n}-said`));
    h.send({ type: 'call.transcript', items, at: h.clock.now() });
    h.send({ type: 'call.lead', leadId: 'lead-1', data: { name: 'Ada' }, at: 0 });
    // Stored as before (the machine's version) until a document is left out.
    const talking = storedCallSnapshot(h.actor.getPersistedSnapshot() as PersistedCallSnapshot);
    expect(talking.version).toBe(String(CALL_MACHINE_VERSION));
    await toPostingData(h);
    const sent = postedDocument(h);
    // Every item reaches the CRM (the contract's `transcription.total_items`).
    expect(sent.transcription.total_items).toBe(items.length);

    const persisted = h.actor.getPersistedSnapshot() as PersistedCallSnapshot;
    // The actor's own snapshot holds the items (in its context and twice in the document)…
    expect(JSON.stringify(persisted)).toContain('words-199-said');
    // …the stored one none of them, however many.
    const stored = storedCallSnapshot(persisted);
    for (const { content } of items) expect(JSON.stringify(stored.snapshot)).not.toContain(content);
    // A release that knows only the machine's version leaves it alone rather than post nothing.
    expect(stored.version).not.toBe(String(CALL_MACHINE_VERSION));
    expect(RESTORABLE_VERSIONS).toEqual([String(CALL_MACHINE_VERSION), stored.version]);

    // A crash while posting: the restored call posts the same document, under the same key.
    await h.crash(1_000);
    const again = h.effects.take('postCallData').input as PostCallDataRequest;
    expect(again.idempotencyKey).toBe(`${CALL_ID}:call-data`);
    expect(again.document).toEqual(sent);
  });

  it('restores a snapshot stored with its document (by an earlier release) as stored', async () => {
    const h = new CallHarness();
    h.send({ type: 'call.transcript', items: [item('t1', 1_000, 'Hello')], at: h.clock.now() });
    await toPostingData(h);
    const persisted = h.actor.getPersistedSnapshot() as PersistedCallSnapshot;
    const marked = JSON.parse(JSON.stringify(persisted)) as PersistedCallSnapshot;
    const request = (marked.children?.callDataPost?.snapshot?.context?.request ?? {}) as {
      document?: CallData;
    };
    request.document = { ...request.document!, campaignId: 'as-stored' };
    const restored = restorableCallSnapshot(marked, persisted.context.transcript, h.clock.now());
    const kept = restored.children?.callDataPost?.snapshot?.context?.request as { document: CallData };
    expect(kept.document.campaignId).toBe('as-stored');
  });
});
