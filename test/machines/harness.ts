/**
 * Real machine actors on a SimulatedClock with controllable fake effects, for the machine tests.
 *
 * - Every effect call is parked as a `Pending` the test settles (`resolve`/`reject`); the harness
 *   then yields one macrotask so the result reaches the machine.
 * - The fake LiveKit tracks its clients (opened, closed, used while closed).
 * - The fake CRM records requests and acknowledgements per idempotency key; a request for a key
 *   already acknowledged, or a second acknowledgement, is a violation.
 * - Persistence as the supervisor will do it: on every `next` carrying a new snapshot object,
 *   `getPersistedSnapshot()` → JSON. `crash()` restores the *last persisted* JSON into a fresh
 *   actor (after stopping the old one), so a persisted snapshot lagging behind shows up.
 */
import {
  createActor,
  fromCallback,
  SimulatedClock,
  type Actor,
  type AnyActor,
  type AnyActorLogic,
  type EventObject,
  type InspectionEvent,
} from 'xstate';
import { CallsyncError } from '../../src/errors.ts';
import type { DeliveredRecording } from '../../src/payload/call-data.ts';
import type { CallEmitted } from '../../src/machines/call.events.ts';
import {
  createCallLogic,
  createUploadLogic,
  type CrmEffects,
  type LiveKitEffects,
} from '../../src/machines/call.actors.ts';
import { CALL_MACHINE_VERSION } from '../../src/machines/call.machine.ts';
import {
  restorableCallSnapshot,
  storedCallSnapshot,
  type PersistedCallSnapshot,
} from '../../src/machines/call.snapshot.ts';
import type {
  CallMachineInput,
  CheckEgressInput,
  EgressOutcome,
  PostCallDataResult,
  StartEgressInput,
  StartEgressResult,
  StopEgressInput,
  StopEgressResult,
} from '../../src/machines/call.types.ts';
import type { TimerInput, TimerLogic } from '../../src/machines/timer.actor.ts';
import type { UploadInput } from '../../src/machines/upload.machine.ts';
import { transitionKey, type Coverage } from './coverage.ts';

/** Monday 6 January 2025, 09:00:00 UTC. */
export const REFERENCE_TIMESTAMP = Date.UTC(2025, 0, 6, 9, 0, 0);
export const CALL_ID = 'call-1';
export const ROOM_NAME = 'room-1';
export const EGRESS_ID = 'EG_1';
export const RECORDING_FILE = {
  filename: 'call-1.ogg',
  location: '/recordings/call-1.ogg',
  sizeBytes: 1_200_000,
  durationSeconds: 300,
};
export const DELIVERED_RECORDING: DeliveredRecording = {
  url: 'https://crm.example/files/call-1.ogg',
  sizeBytes: 1_200_000,
  durationSeconds: 300,
};

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function makeCallInput(overrides: Partial<CallMachineInput> = {}): CallMachineInput {
  return {
    call: {
      callId: CALL_ID,
      sessionId: 'session-1',
      roomName: ROOM_NAME,
      direction: 'inbound',
      callerNumber: '+15555550100',
      config: { campaigns: [{ _id: 'campaign-1', client: 'client-1', voiceAgents: [{ _id: 'agent-1' }] }] },
      startedAt: iso(REFERENCE_TIMESTAMP),
    },
    now: REFERENCE_TIMESTAMP,
    ...overrides,
  };
}

export function retryableError(code = 'CRM_UNAVAILABLE', retryAfterMs?: number): CallsyncError {
  return new CallsyncError(code, `${code} (retryable)`, { retryable: true, retryAfterMs, status: 503 });
}

export function fatalError(code = 'CRM_REJECTED'): CallsyncError {
  return new CallsyncError(code, `${code} (not retryable)`, { retryable: false, status: 422 });
}

/** Lets settled promises reach the machine: one macrotask drains every microtask before it. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

// ---------------------------------------------------------------------------------------------
// Fake effects

export type EffectName = 'startEgress' | 'stopEgress' | 'checkEgress' | 'uploadRecording' | 'postCallData';

export interface Pending {
  name: EffectName;
  input: unknown;
  signal: AbortSignal;
  settled: boolean;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

export interface FakeClient {
  readonly serial: number;
  readonly callId: string;
  isOpen: boolean;
}

export class FakeEffects {
  readonly pending: Pending[] = [];
  readonly violations: string[] = [];
  opens = 0;
  closes = 0;
  private serial = 0;
  private readonly openClients = new Set<FakeClient>();
  /** CRM requests and acknowledgements per idempotency key. */
  readonly crmRequests = new Map<string, number>();
  readonly crmAcks = new Map<string, number>();
  /** Make the next `liveKit.open` throw. */
  failNextOpen = false;

  get openClientCount(): number {
    return this.openClients.size;
  }

  private park(
    name: EffectName,
    input: unknown,
    signal: AbortSignal,
    onResolve?: () => void,
  ): Promise<never> {
    return new Promise<never>((resolve, reject) => {
      const entry: Pending = {
        name,
        input,
        signal,
        settled: false,
        resolve: (value) => {
          entry.settled = true;
          onResolve?.();
          resolve(value as never);
        },
        reject: (error) => {
          entry.settled = true;
          reject(error);
        },
      };
      this.pending.push(entry);
    });
  }

  private useClient(client: FakeClient, effect: EffectName): void {
    // Reading `isOpen` through the revocable proxy already throws once the client was closed.
    if (!client.isOpen) this.violations.push(`${effect} used a closed LiveKit client #${client.serial}`);
  }

  private crmStep(
    name: 'uploadRecording' | 'postCallData',
    request: { callId: string; idempotencyKey: string },
    suffix: string,
    signal: AbortSignal,
  ): Promise<never> {
    const key = request.idempotencyKey;
    if (key !== `${request.callId}:${suffix}`) this.violations.push(`${name} sent idempotency key ${key}`);
    if ((this.crmAcks.get(key) ?? 0) > 0)
      this.violations.push(`${name} sent again after ${key} was acknowledged`);
    this.crmRequests.set(key, (this.crmRequests.get(key) ?? 0) + 1);
    return this.park(name, request, signal, () => {
      if (signal.aborted) return;
      const acks = (this.crmAcks.get(key) ?? 0) + 1;
      this.crmAcks.set(key, acks);
      if (acks > 1) this.violations.push(`${key} acknowledged ${acks} times`);
    });
  }

  readonly liveKit: LiveKitEffects<FakeClient> = {
    open: (call) => {
      if (this.failNextOpen) {
        this.failNextOpen = false;
        throw new Error('cannot open LiveKit client');
      }
      if (this.openClients.size > 0) this.violations.push('a second LiveKit client was opened');
      this.opens += 1;
      this.serial += 1;
      const client: FakeClient = { serial: this.serial, callId: call.callId, isOpen: true };
      this.openClients.add(client);
      return client;
    },
    close: (client) => {
      if (!client.isOpen) this.violations.push(`LiveKit client #${client.serial} closed twice`);
      client.isOpen = false;
      this.openClients.delete(client);
      this.closes += 1;
    },
    startEgress: (client, input: StartEgressInput, signal): Promise<StartEgressResult> => {
      this.useClient(client, 'startEgress');
      return this.park('startEgress', input, signal);
    },
    stopEgress: (client, input: StopEgressInput, signal): Promise<StopEgressResult> => {
      this.useClient(client, 'stopEgress');
      return this.park('stopEgress', input, signal);
    },
    checkEgress: (client, input: CheckEgressInput, signal): Promise<EgressOutcome> => {
      this.useClient(client, 'checkEgress');
      return this.park('checkEgress', input, signal);
    },
  };

  readonly crm: CrmEffects = {
    uploadRecording: (request, signal): Promise<DeliveredRecording> =>
      this.crmStep('uploadRecording', request, 'recording', signal),
    postCallData: (request, signal): Promise<PostCallDataResult> =>
      this.crmStep('postCallData', request, 'call-data', signal),
  };

  /** The effect call in flight for `name` (neither settled nor aborted), if any. */
  inFlight(name: EffectName): Pending | undefined {
    return this.pending.findLast((entry) => entry.name === name && !entry.settled && !entry.signal.aborted);
  }

  take(name: EffectName): Pending {
    const entry = this.inFlight(name);
    if (entry === undefined) throw new Error(`no ${name} in flight`);
    return entry;
  }

  count(name: EffectName): number {
    return this.pending.filter((entry) => entry.name === name).length;
  }
}

/** A timer actor that throws on start for the given event types (fault injection). */
export function brokenTimers(clock: SimulatedClock, broken: ReadonlySet<string>): TimerLogic {
  return fromCallback<EventObject, TimerInput>(({ input, sendBack }) => {
    if (broken.has(input.event)) throw new Error(`timer ${input.event} is broken`);
    const handle = clock.setTimeout(
      () => sendBack({ type: input.event, at: clock.now() }),
      Math.max(0, input.at - clock.now()),
    );
    return () => clock.clearTimeout(handle);
  }) as TimerLogic;
}

// ---------------------------------------------------------------------------------------------
// Harnesses

export type CallLogic = ReturnType<typeof createCallLogic<FakeClient>>;
export type CallActor = Actor<CallLogic>;
export type UploadLogic = ReturnType<typeof createUploadLogic>;
export type UploadActor = Actor<UploadLogic>;

/** What both harnesses share: clock, fakes, persistence, crash/restore, coverage recording. */
abstract class Harness<TActor extends CallActor | UploadActor, TEmitted> {
  readonly clock: SimulatedClock;
  readonly effects: FakeEffects;
  actor!: TActor;
  readonly emitted: TEmitted[] = [];
  readonly errors: unknown[] = [];
  /** The last JSON the "supervisor" wrote, and how many writes. */
  persistedJson = '';
  writes = 0;
  restores = 0;

  protected constructor(
    clock: SimulatedClock | undefined,
    effects: FakeEffects | undefined,
    private readonly coverage: Coverage | undefined,
  ) {
    this.clock = clock ?? new SimulatedClock();
    if (clock === undefined) this.clock.set(REFERENCE_TIMESTAMP);
    this.effects = effects ?? new FakeEffects();
  }

  /** The logic and input every incarnation of the actor is created from. */
  protected abstract readonly logic: TActor['logic'];
  protected abstract readonly input: unknown;

  get snapshot(): ReturnType<TActor['getSnapshot']> {
    return this.actor.getSnapshot() as ReturnType<TActor['getSnapshot']>;
  }

  get context(): ReturnType<TActor['getSnapshot']>['context'] {
    return this.snapshot.context;
  }

  /** `inspect` is there only when coverage is recorded (inspection costs on every event). */
  private create(snapshot: unknown, inspect: ((event: InspectionEvent) => void) | undefined): TActor {
    return createActor(this.logic as AnyActorLogic, {
      input: this.input,
      clock: this.clock,
      inspect,
      ...(snapshot === undefined ? {} : { snapshot: snapshot as never }),
    }) as unknown as TActor;
  }

  protected launch(snapshotJson: string | undefined): void {
    const actor = this.create(
      snapshotJson === undefined ? undefined : JSON.parse(snapshotJson),
      this.coverage === undefined ? undefined : (event) => this.inspect(event),
    );
    this.actor = actor;
    const untyped: AnyActor = actor;
    untyped.on('*', (event) => this.emitted.push(event as TEmitted));
    let last: unknown = undefined;
    const persist = () => {
      const snapshot = actor.getSnapshot();
      if (snapshot === last) return;
      last = snapshot;
      this.persistedJson = JSON.stringify(actor.getPersistedSnapshot());
      this.writes += 1;
    };
    untyped.subscribe({ next: persist, error: (error: unknown) => this.errors.push(error) });
    actor.start();
    persist();
    const initial = actor.getSnapshot() as unknown as { _nodes: Array<{ id: string }> };
    for (const node of initial._nodes) this.coverage?.nodes.add(node.id);
  }

  private inspect(event: InspectionEvent): void {
    if (event.type !== '@xstate.microstep' || event.actorRef !== this.actor || this.coverage === undefined)
      return;
    for (const transition of event._transitions) this.coverage.transitions.add(transitionKey(transition));
    for (const node of (event.snapshot as unknown as { _nodes: Array<{ id: string }> })._nodes) {
      this.coverage.nodes.add(node.id);
    }
  }

  async resolve(name: EffectName, value: unknown): Promise<void> {
    this.effects.take(name).resolve(value);
    await flush();
  }

  async reject(name: EffectName, error: Error): Promise<void> {
    this.effects.take(name).reject(error);
    await flush();
  }

  /** Moves the clock to `at` (never backwards), firing every timer due by then. */
  async advanceTo(at: number): Promise<void> {
    this.clock.set(Math.max(this.clock.now(), at));
    await flush();
  }

  /**
   * A crash: the last persisted JSON survives; the process dies (the actor is stopped, which
   * closes its LiveKit client as a dying process would drop it); `downtimeMs` pass; a fresh
   * actor is restored from that JSON.
   */
  async crash(downtimeMs: number): Promise<void> {
    const json = this.persistedJson;
    this.actor.stop();
    this.clock.set(this.clock.now() + downtimeMs);
    this.restores += 1;
    this.launch(this.asRestored(json));
    await flush();
  }

  /** The stored JSON as the supervisor hands it to a restored actor (the call's: `call.snapshot.ts`). */
  protected asRestored(json: string): string {
    return json;
  }

  /** True when what was last persisted is what the actor would persist now. */
  get persistedIsCurrent(): boolean {
    return this.persistedJson === JSON.stringify(this.actor.getPersistedSnapshot());
  }

  protected commonProblems(): string[] {
    const problems = [...this.effects.violations];
    const snapshot = this.actor.getSnapshot();
    for (const [key, acks] of this.effects.crmAcks) {
      if (acks > 1) problems.push(`${key} acknowledged ${acks} times`);
    }
    if (snapshot.status === 'error') problems.push(`actor errored: ${String(snapshot.error)}`);
    if (this.errors.length > 0) problems.push(`error observer got: ${this.errors.map(String).join('; ')}`);
    if (!this.persistedIsCurrent) problems.push('the last persisted snapshot lags behind the actor');
    return problems;
  }
}

export interface CallHarnessOptions {
  input?: CallMachineInput;
  coverage?: Coverage;
  /** The first `liveKit.open` throws. */
  failFirstOpen?: boolean;
  /** Swap implementations (fault injection) on top of the fake wiring. */
  adapt?: (logic: CallLogic, effects: FakeEffects, clock: SimulatedClock) => CallLogic;
}

export class CallHarness extends Harness<CallActor, CallEmitted> {
  readonly logic: CallLogic;
  protected readonly input: CallMachineInput;

  constructor(options: CallHarnessOptions = {}) {
    super(undefined, undefined, options.coverage);
    this.input = options.input ?? makeCallInput();
    const logic = createCallLogic<FakeClient>({
      liveKit: this.effects.liveKit,
      crm: this.effects.crm,
      time: this.clock,
      onCloseError: (error) => this.effects.violations.push(`close failed: ${String(error)}`),
    });
    this.logic = options.adapt?.(logic, this.effects, this.clock) ?? logic;
    this.effects.failNextOpen = options.failFirstOpen ?? false;
    this.launch(undefined);
  }

  send(event: Parameters<CallActor['send']>[0]): void {
    this.actor.send(event);
  }

  protected override asRestored(json: string): string {
    // As the supervisor stores it (no transcript, no call-data document) and restores it, with
    // the transcript the event log holds: every item the persisted snapshot had applied.
    const persisted = JSON.parse(json) as PersistedCallSnapshot;
    const stored = JSON.parse(
      JSON.stringify(storedCallSnapshot(persisted).snapshot),
    ) as PersistedCallSnapshot;
    return JSON.stringify(restorableCallSnapshot(stored, persisted.context.transcript, this.clock.now()));
  }

  /**
   * The invariants that hold after every step. The LiveKit client lives exactly as long as the
   * call: the `livekit` tag is on every state but `done` and `failed`, and one client is open
   * exactly while the actor is in a `livekit` state (none once it reached `done` or `failed`).
   * Together with the fake's own checks (a second open, a double close, a use after close),
   * every open is closed exactly once and nothing uses a closed client.
   */
  problems(): string[] {
    const problems = this.commonProblems();
    const snapshot = this.actor.getSnapshot();
    const inCall = snapshot.status === 'active' && !snapshot.matches('failed');
    if (snapshot.hasTag('livekit') !== inCall) {
      problems.push(
        `${JSON.stringify(snapshot.value)} (${snapshot.status}) is ${inCall ? 'not ' : ''}tagged livekit`,
      );
    }
    const shouldBeOpen = snapshot.status === 'active' && snapshot.hasTag('livekit') ? 1 : 0;
    if (this.effects.openClientCount !== shouldBeOpen) {
      problems.push(
        `${this.effects.openClientCount} LiveKit client(s) open in ${JSON.stringify(snapshot.value)}, expected ${shouldBeOpen}`,
      );
    }
    if (this.effects.opens - this.effects.closes !== this.effects.openClientCount) {
      problems.push(`opens ${this.effects.opens} and closes ${this.effects.closes} do not balance`);
    }
    if (snapshot.context.machineVersion !== CALL_MACHINE_VERSION) problems.push('machine version missing');
    return problems;
  }
}

export interface UploadHarnessOptions {
  input: UploadInput;
  coverage?: Coverage;
  adapt?: (logic: UploadLogic, clock: SimulatedClock) => UploadLogic;
}

/** The upload machine emits nothing (its events are the call actor's), so `emitted` stays empty. */
export class UploadHarness extends Harness<UploadActor, never> {
  readonly logic: UploadLogic;
  protected readonly input: UploadInput;

  constructor(options: UploadHarnessOptions) {
    super(undefined, undefined, options.coverage);
    this.input = options.input;
    const logic = createUploadLogic({ crm: this.effects.crm, time: this.clock });
    this.logic = options.adapt?.(logic, this.clock) ?? logic;
    this.launch(undefined);
  }

  problems(): string[] {
    return this.commonProblems();
  }
}
