/**
 * A LiveKit server stand-in for the parts callsync uses: the Egress and RoomService Twirp
 * APIs (driven by the real livekit-server-sdk), signed webhooks, rooms with SIP callers and
 * agents, and room-composite egresses that write real Ogg Opus files, locally or uploaded to
 * S3, GCS or Azure Blob storage as egress does (see egress-manager.ts).
 *
 * `createLiveKitEmulator` composes the pieces and opens nothing; `start()` listens. The control
 * API below is what a test or the demo uses to play the caller's side (join, hang up) and to
 * inject faults (`setRoomBehaviour`). Every wait is event-driven: `waitForEgress` and
 * `waitForEvent` resolve on the emulator's own events, and reject after a timeout rather than
 * hang, so tests never sleep.
 */
import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import type { EgressInfo, ParticipantInfo, Room } from '@livekit/protocol';
import { DisconnectReason, EgressStatus, ParticipantInfo_Kind, RoomEndReason } from '@livekit/protocol';
import type { Clock } from './clock.ts';
import { createControlHandler } from './control-routes.ts';
import type { ListEgressFilter } from './egress-manager.ts';
import { EgressManager } from './egress-manager.ts';
import type { EgressStorage } from './egress-storage.ts';
import type { LiveKitEmulatorOptions } from './emulator-options.ts';
import {
  DEFAULT_ACTIVATE_AFTER_MS,
  DEFAULT_DEPARTURE_TIMEOUT_MS,
  DEFAULT_EMPTY_TIMEOUT_MS,
  DEFAULT_FINALIZE_AFTER_MS,
  DEFAULT_HOST,
  DEFAULT_WAIT_TIMEOUT_MS,
} from './emulator-options.ts';
import type { EmittedWebhook, LiveKitEmulatorEventMap } from './events.ts';
import { createHttpHandler } from './http-handler.ts';
import { newGuid } from './ids.ts';
import { silentLogger } from './logger.ts';
import type { RoomBehaviour } from './room-behaviour.ts';
import type { ParticipantSpec, RoomSpec } from './room-registry.ts';
import { RoomRegistry } from './room-registry.ts';
import { TimerSet } from './timer-set.ts';
import { createTwirpRoutes } from './twirp-routes.ts';
import type { WebhookTarget } from './webhook-dispatcher.ts';
import { WebhookDispatcher } from './webhook-dispatcher.ts';
import { SANDBOX_LISTEN_BACKLOG as LISTEN_BACKLOG } from '../listen-backlog.ts';

/** Emitted webhooks kept for `webhookLog()`; older ones are forgotten. */
const WEBHOOK_LOG_LIMIT = 1_000;

export interface WaitOptions {
  /** Reject after this long; 10 000 ms by default. */
  timeoutMs?: number;
}

export interface SipCallSpec {
  room: string;
  /** The external party, `sip.phoneNumber` (the caller of an inbound call). */
  callerNumber: string;
  /** Our number, `sip.trunkPhoneNumber`. */
  trunkNumber?: string;
  /** `sip_<callerNumber>` by default, like LiveKit's SIP service. */
  callerIdentity?: string;
  /** Extra participant attributes (e.g. `sip.h.x-call-ref`). */
  attributes?: Record<string, string>;
  /** The voice agent dispatched into the room; `false` for none. An `agent-AJ_…` identity by default. */
  agent?: false | { identity?: string; name?: string };
}

export interface SipCall {
  room: Room;
  caller: ParticipantInfo;
  agent: ParticipantInfo | undefined;
}

export interface LiveKitEmulator {
  /** `http://host:port`, for `EgressClient`/`RoomServiceClient`; throws before `start()`. */
  readonly url: string;
  readonly events: EventEmitter<LiveKitEmulatorEventMap>;
  start(): Promise<{ url: string }>;
  /** Stops listening, cancels timers, aborts webhook deliveries; safe to call twice. */
  close(): Promise<void>;

  /** Adds a webhook URL (for a receiver that only knows its address after the emulator started). */
  addWebhookUrl(url: string): void;
  createRoom(spec: RoomSpec): Room;
  /** Closes at once: egresses end ("Source closed"), participants leave, room_finished. */
  closeRoom(options: { room: string; reason?: RoomEndReason }): boolean;
  addParticipant(options: { room: string } & ParticipantSpec): ParticipantInfo;
  removeParticipant(options: {
    room: string;
    identity: string;
    reason?: DisconnectReason;
  }): ParticipantInfo | undefined;
  /** A SIP caller (and by default an agent) in `room`, creating the room if needed. */
  startSipCall(spec: SipCallSpec): SipCall;
  /**
   * The caller hangs up: SIP participants leave (`sip.callStatus` "hangup"). If only agents
   * and recorders remain, the room closes after its departure timeout.
   */
  hangUp(options: { room: string; identity?: string }): ParticipantInfo[];

  /** Replaces the room's behaviour (see RoomBehaviour); applies from the next decision on. */
  setRoomBehaviour(room: string, behaviour: RoomBehaviour): void;
  clearRoomBehaviour(room: string): void;
  getRoomBehaviour(room: string): RoomBehaviour | undefined;
  /** Delivers the room's webhooks that a `hold` behaviour is keeping back. */
  releaseHeldWebhooks(room: string): void;

  getRoom(name: string): Room | undefined;
  listRooms(): Room[];
  listParticipants(room: string): ParticipantInfo[];
  getEgress(egressId: string): EgressInfo | undefined;
  listEgress(filter?: ListEgressFilter): EgressInfo[];
  /**
   * The upload settings the egress was started with, unredacted (tests assert the credentials
   * a request carried; s3rver ignores them): `null` when its file stays local, `undefined` for
   * an unknown egress. Deliberately not in the HTTP control API.
   */
  egressStorage(egressId: string): EgressStorage | null | undefined;
  /** Webhook events emitted so far (before faults), oldest first. */
  webhookLog(): EmittedWebhook[];

  /** Resolves with the egress once `predicate` holds (now or after a change). */
  waitForEgress(
    egressId: string,
    predicate?: (info: EgressInfo) => boolean,
    options?: WaitOptions,
  ): Promise<EgressInfo>;
  /** Resolves with the first `name` event for which `predicate` holds. */
  waitForEvent<K extends keyof LiveKitEmulatorEventMap>(
    name: K,
    predicate?: (payload: LiveKitEmulatorEventMap[K][0]) => boolean,
    options?: WaitOptions,
  ): Promise<LiveKitEmulatorEventMap[K][0]>;
  /** Resolves when no webhook delivery is queued or in flight (held events aside). */
  webhooksIdle(): Promise<void>;
}

function validated(options: LiveKitEmulatorOptions): { keys: Map<string, string>; webhookApiKey: string } {
  const keys = new Map(Object.entries(options.keys));
  const webhookApiKey = options.webhookApiKey ?? keys.keys().next().value;
  if (webhookApiKey === undefined) throw new Error('LiveKit emulator: at least one API key is required');
  if (!keys.has(webhookApiKey))
    throw new Error(`LiveKit emulator: webhookApiKey ${webhookApiKey} is not in keys`);
  return { keys, webhookApiKey };
}

export function createLiveKitEmulator(options: LiveKitEmulatorOptions): LiveKitEmulator {
  const { keys, webhookApiKey } = validated(options);
  const clock: Clock = options.now ?? Date.now;
  const logger = options.logger ?? silentLogger;
  const events = new EventEmitter<LiveKitEmulatorEventMap>();
  events.setMaxListeners(0); // every waiter is a listener
  const timers = new TimerSet();
  const behaviours = new Map<string, RoomBehaviour>();
  const behaviourFor = (room: string) => behaviours.get(room);
  const webhookLog: EmittedWebhook[] = [];
  const pendingWaits = new Set<(error: Error) => void>();
  const onTimerError = (error: unknown) => {
    logger.error({ err: error }, 'emulator timer failed');
    events.emit('emulator:error', { error, context: 'timer' });
  };

  const targetFor = (apiKey: string, url: string): WebhookTarget => ({
    url,
    apiKey,
    apiSecret: keys.get(apiKey)!,
  });
  const webhooks = new WebhookDispatcher({
    targets: (options.webhookUrls ?? []).map((url) => targetFor(webhookApiKey, url)),
    behaviourFor,
    clock,
    events,
    logger,
    retry: options.webhookRetry,
    filter: options.webhookFilter,
  });
  const rooms = new RoomRegistry({
    clock,
    timers,
    webhooks,
    events,
    defaults: {
      departureTimeoutMs: options.departureTimeoutMs ?? DEFAULT_DEPARTURE_TIMEOUT_MS,
      emptyTimeoutMs: options.emptyTimeoutMs ?? DEFAULT_EMPTY_TIMEOUT_MS,
    },
    onTimerError,
  });
  const egress = new EgressManager({
    clock,
    timers,
    rooms,
    webhooks,
    events,
    logger,
    recordingsDir: resolve(options.recordingsDir),
    storage: {
      server: options.serverStorage && structuredClone(options.serverStorage),
      requireStorage: options.requireStorage ?? false,
      endpoints: {
        ...(options.gcsEndpoint === undefined ? {} : { gcsEndpoint: options.gcsEndpoint }),
        ...(options.azureBlobEndpoint === undefined ? {} : { azureBlobEndpoint: options.azureBlobEndpoint }),
      },
    },
    behaviourFor,
    webhookTargetFor: ({ url, signingKey }) => {
      if (keys.has(signingKey)) return targetFor(signingKey, url);
      logger.warn(
        { url, signingKey },
        'per-request webhook signing key unknown; signing with the default key',
      );
      return targetFor(webhookApiKey, url);
    },
    defaults: {
      activateAfterMs: options.activateAfterMs ?? DEFAULT_ACTIVATE_AFTER_MS,
      finalizeAfterMs: options.finalizeAfterMs ?? DEFAULT_FINALIZE_AFTER_MS,
    },
    onTimerError,
  });
  rooms.setHooks({
    onRoomClosing: (room) => egress.onRoomClosing(room),
    onAudioPublished: (room) => egress.onAudioPublished(room),
  });
  events.on('webhook:emitted', (webhook) => {
    webhookLog.push(webhook);
    if (webhookLog.length > WEBHOOK_LOG_LIMIT) webhookLog.shift();
  });

  let server: Server | undefined;
  let url: string | undefined;
  let closing: Promise<void> | undefined;

  function waitUntil<T>(options: {
    description: string;
    timeoutMs: number | undefined;
    check: () => T | undefined;
    subscribe: (onChange: () => void) => () => void;
    lastKnown: () => string;
  }): Promise<T> {
    return new Promise<T>((resolvePromise, rejectPromise) => {
      if (closing) {
        rejectPromise(new Error(`LiveKit emulator closed while waiting for ${options.description}`));
        return;
      }
      const now = options.check();
      if (now !== undefined) {
        resolvePromise(now);
        return;
      }
      const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_TIMEOUT_MS;
      const finish = () => {
        clearTimeout(timer);
        unsubscribe();
        pendingWaits.delete(fail);
      };
      const fail = (error: Error) => {
        finish();
        rejectPromise(error);
      };
      const unsubscribe = options.subscribe(() => {
        const value = options.check();
        if (value === undefined) return;
        finish();
        resolvePromise(value);
      });
      const timer = setTimeout(
        () =>
          fail(
            new Error(
              `timed out after ${timeoutMs} ms waiting for ${options.description} (${options.lastKnown()})`,
            ),
          ),
        timeoutMs,
      );
      pendingWaits.add(fail);
    });
  }

  const emulator: LiveKitEmulator = {
    get url(): string {
      if (url === undefined) throw new Error('LiveKit emulator not started');
      return url;
    },
    events,

    addWebhookUrl(webhookUrl) {
      webhooks.addTarget(targetFor(webhookApiKey, webhookUrl));
    },

    async start() {
      if (closing) throw new Error('LiveKit emulator closed');
      if (url !== undefined) return { url };
      const httpServer = createServer(
        createHttpHandler({
          twirpRoutes: createTwirpRoutes({ rooms, egress, logger }),
          keys,
          control: options.controlApi === false ? undefined : createControlHandler(emulator),
          events,
          logger,
        }),
      );
      server = httpServer;
      await new Promise<void>((resolveListen, rejectListen) => {
        httpServer.once('error', rejectListen);
        httpServer.listen(options.port ?? 0, options.host ?? DEFAULT_HOST, LISTEN_BACKLOG, () => {
          httpServer.off('error', rejectListen);
          resolveListen();
        });
      });
      const address = httpServer.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      url = `http://${host}:${address.port}`;
      logger.info({ url }, 'LiveKit emulator listening');
      return { url };
    },

    close() {
      closing ??= (async () => {
        timers.close();
        for (const fail of [...pendingWaits]) fail(new Error('LiveKit emulator closed'));
        await egress.close();
        await webhooks.close();
        if (server) {
          const httpServer = server;
          await new Promise<void>((resolveClose) => {
            httpServer.close(() => resolveClose());
            httpServer.closeAllConnections();
          });
        }
        logger.info({}, 'LiveKit emulator closed');
      })();
      return closing;
    },

    createRoom: (spec) => rooms.create(spec).room,
    closeRoom: ({ room, reason }) => rooms.close(room, reason ?? RoomEndReason.ROOM_END_API_DELETE),
    addParticipant: ({ room, ...spec }) => rooms.join(room, spec),
    removeParticipant: ({ room, identity, reason }) =>
      rooms.leave(room, identity, { reason: reason ?? DisconnectReason.CLIENT_INITIATED }),

    startSipCall(spec) {
      rooms.create({ name: spec.room });
      const caller = rooms.join(spec.room, {
        identity: spec.callerIdentity ?? `sip_${spec.callerNumber}`,
        kind: ParticipantInfo_Kind.SIP,
        attributes: {
          'sip.callID': newGuid('SCL_'),
          'sip.callStatus': 'active',
          'sip.phoneNumber': spec.callerNumber,
          ...(spec.trunkNumber === undefined ? {} : { 'sip.trunkPhoneNumber': spec.trunkNumber }),
          'sip.trunkID': newGuid('ST_'),
          ...spec.attributes,
        },
      });
      const agent =
        spec.agent === false
          ? undefined
          : rooms.join(spec.room, {
              identity: spec.agent?.identity ?? `agent-${newGuid('AJ_')}`,
              kind: ParticipantInfo_Kind.AGENT,
              ...(spec.agent?.name === undefined ? {} : { name: spec.agent.name }),
            });
      return { room: rooms.get(spec.room)!, caller, agent };
    },

    hangUp({ room, identity }) {
      const callers = rooms
        .participants(room)
        .filter(
          (p) => p.kind === ParticipantInfo_Kind.SIP && (identity === undefined || p.identity === identity),
        );
      return callers.flatMap((caller) => {
        const left = rooms.leave(room, caller.identity, {
          reason: DisconnectReason.CLIENT_INITIATED,
          attributes: { 'sip.callStatus': 'hangup' },
        });
        return left ? [left] : [];
      });
    },

    setRoomBehaviour: (room, behaviour) => void behaviours.set(room, structuredClone(behaviour)),
    clearRoomBehaviour: (room) => void behaviours.delete(room),
    getRoomBehaviour: (room) => {
      const behaviour = behaviours.get(room);
      return behaviour && structuredClone(behaviour);
    },
    releaseHeldWebhooks: (room) => webhooks.releaseHeld(room),

    getRoom: (name) => rooms.get(name),
    listRooms: () => rooms.list(),
    listParticipants: (room) => rooms.participants(room),
    getEgress: (egressId) => egress.get(egressId),
    listEgress: (filter = {}) => egress.list(filter),
    egressStorage: (egressId) => egress.storageOf(egressId),
    webhookLog: () => [...webhookLog],

    waitForEgress(egressId, predicate = () => true, waitOptions = {}) {
      const matching = () => {
        const info = egress.get(egressId);
        return info && predicate(info) ? info : undefined;
      };
      return waitUntil({
        description: `egress ${egressId}`,
        timeoutMs: waitOptions.timeoutMs,
        check: matching,
        subscribe: (onChange) => {
          const listener = ({ info }: { info: EgressInfo }) => {
            if (info.egressId === egressId) onChange();
          };
          events.on('egress:updated', listener);
          return () => events.off('egress:updated', listener);
        },
        lastKnown: () => {
          const info = egress.get(egressId);
          return info ? `last status ${EgressStatus[info.status]}` : 'no such egress';
        },
      });
    },

    waitForEvent(name, predicate = () => true, waitOptions = {}) {
      type Payload = LiveKitEmulatorEventMap[typeof name][0];
      let matched: Payload | undefined;
      return waitUntil<Payload>({
        description: `event ${name}`,
        timeoutMs: waitOptions.timeoutMs,
        check: () => matched,
        subscribe: (onChange) => {
          const listener = (payload: Payload) => {
            if (matched === undefined && predicate(payload)) {
              matched = payload;
              onChange();
            }
          };
          // @types/node cannot relate a generic event name to its listener type; the
          // signature of waitForEvent keeps callers typed.
          const untyped = events as unknown as EventEmitter;
          untyped.on(name, listener);
          return () => untyped.off(name, listener);
        },
        lastKnown: () => 'not seen',
      });
    },

    webhooksIdle: () => webhooks.idle(),
  };
  return emulator;
}
