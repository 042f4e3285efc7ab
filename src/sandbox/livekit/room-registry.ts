/**
 * In-memory rooms and participants, with LiveKit's room lifetime rules
 * (livekit/livekit `Room.CloseIfEmpty`):
 * - agents and egress recorders are "dependent" participants: they never keep a room open;
 * - once a non-dependent participant (a SIP caller, a user) has joined, the room closes
 *   `departureTimeoutMs` after the last of them left, if none came back;
 * - a room that never had one closes `emptyTimeoutMs` after creation.
 * Joining a room that does not exist creates it, as a LiveKit token join does. Participants
 * other than recorders publish a microphone track right after joining (`track_published`),
 * which is what lets an SDK-source egress start recording.
 *
 * Closing runs in a fixed order: hooks first (the egresses end with "Source closed" while the
 * room still exists), then the remaining participants leave, then `room_finished`.
 */
import type { EventEmitter } from 'node:events';
import {
  DisconnectReason,
  ParticipantInfo,
  ParticipantInfo_Kind,
  ParticipantInfo_State,
  ParticipantPermission,
  Room,
  RoomEndReason,
  TrackInfo,
  TrackSource,
  TrackType,
  WebhookEvent,
} from '@livekit/protocol';
import type { Clock } from './clock.ts';
import { unixMillis, unixSeconds } from './clock.ts';
import type { LiveKitEmulatorEventMap } from './events.ts';
import { newGuid } from './ids.ts';
import type { TimerHandle, TimerSet } from './timer-set.ts';
import type { WebhookDispatcher } from './webhook-dispatcher.ts';

/** LiveKit's defaults, in the units `Room` reports them (seconds). */
const DEFAULT_EMPTY_TIMEOUT_SECONDS = 300;
const DEFAULT_DEPARTURE_TIMEOUT_SECONDS = 20;

export interface RoomSpec {
  name: string;
  /** Close this long after the last non-dependent participant left; emulator default otherwise. */
  departureTimeoutMs?: number;
  /** Close this long after creation if no non-dependent participant ever joined. */
  emptyTimeoutMs?: number;
  maxParticipants?: number;
  metadata?: string;
}

export interface ParticipantSpec {
  identity: string;
  /** STANDARD when omitted. */
  kind?: ParticipantInfo_Kind;
  name?: string;
  metadata?: string;
  attributes?: Record<string, string>;
  /** Recorders join hidden. */
  hidden?: boolean;
  /** Publish a microphone track after joining; true for everyone but recorders by default. */
  publishAudio?: boolean;
}

export interface RoomHooks {
  /** The room is closing and still listed: end its egresses now. */
  onRoomClosing(roomName: string): void;
  /** Someone in the room now publishes audio. */
  onAudioPublished(roomName: string): void;
}

interface RoomRecord {
  room: Room;
  participants: Map<string, ParticipantInfo>;
  departureTimeoutMs: number;
  emptyTimeoutMs: number;
  hadNonDependent: boolean;
  closing: boolean;
  closeTimer: TimerHandle | undefined;
}

export function isDependent(participant: ParticipantInfo): boolean {
  return participant.kind === ParticipantInfo_Kind.AGENT || participant.kind === ParticipantInfo_Kind.EGRESS;
}

export class RoomClosedError extends Error {
  override readonly name = 'RoomClosedError';
}

export class RoomRegistry {
  readonly #rooms = new Map<string, RoomRecord>();
  readonly #clock: Clock;
  readonly #timers: TimerSet;
  readonly #webhooks: WebhookDispatcher;
  readonly #events: EventEmitter<LiveKitEmulatorEventMap>;
  readonly #defaults: { departureTimeoutMs: number; emptyTimeoutMs: number };
  readonly #onTimerError: (error: unknown) => void;
  #hooks: RoomHooks = { onRoomClosing: () => undefined, onAudioPublished: () => undefined };

  constructor(options: {
    clock: Clock;
    timers: TimerSet;
    webhooks: WebhookDispatcher;
    events: EventEmitter<LiveKitEmulatorEventMap>;
    defaults: { departureTimeoutMs: number; emptyTimeoutMs: number };
    onTimerError: (error: unknown) => void;
  }) {
    this.#clock = options.clock;
    this.#timers = options.timers;
    this.#webhooks = options.webhooks;
    this.#events = options.events;
    this.#defaults = options.defaults;
    this.#onTimerError = options.onTimerError;
  }

  setHooks(hooks: RoomHooks): void {
    this.#hooks = hooks;
  }

  /** Creates the room, or returns the existing one unchanged (CreateRoom is idempotent). */
  create(spec: RoomSpec): { room: Room; created: boolean } {
    const existing = this.#rooms.get(spec.name);
    if (existing && !existing.closing) return { room: this.#snapshot(existing), created: false };
    const nowMs = this.#clock();
    const departureTimeoutMs = spec.departureTimeoutMs ?? this.#defaults.departureTimeoutMs;
    const emptyTimeoutMs = spec.emptyTimeoutMs ?? this.#defaults.emptyTimeoutMs;
    const record: RoomRecord = {
      room: new Room({
        sid: newGuid('RM_'),
        name: spec.name,
        emptyTimeout: Math.ceil(emptyTimeoutMs / 1000) || DEFAULT_EMPTY_TIMEOUT_SECONDS,
        departureTimeout: Math.ceil(departureTimeoutMs / 1000) || DEFAULT_DEPARTURE_TIMEOUT_SECONDS,
        maxParticipants: spec.maxParticipants ?? 0,
        creationTime: unixSeconds(nowMs),
        creationTimeMs: unixMillis(nowMs),
        metadata: spec.metadata ?? '',
      }),
      participants: new Map(),
      departureTimeoutMs,
      emptyTimeoutMs,
      hadNonDependent: false,
      closing: false,
      closeTimer: undefined,
    };
    this.#rooms.set(spec.name, record);
    this.#scheduleClose(record, emptyTimeoutMs);
    const room = this.#snapshot(record);
    this.#webhooks.emit({ event: new WebhookEvent({ event: 'room_started', room }), roomName: spec.name });
    this.#events.emit('room:started', { room: room.clone() });
    return { room, created: true };
  }

  get(name: string): Room | undefined {
    const record = this.#live(name);
    return record && this.#snapshot(record);
  }

  list(names: readonly string[] = []): Room[] {
    return [...this.#rooms.values()]
      .filter((record) => !record.closing && (names.length === 0 || names.includes(record.room.name)))
      .map((record) => this.#snapshot(record));
  }

  participants(roomName: string): ParticipantInfo[] {
    return [...(this.#live(roomName)?.participants.values() ?? [])].map((p) => p.clone());
  }

  participant(roomName: string, identity: string): ParticipantInfo | undefined {
    return this.#live(roomName)?.participants.get(identity)?.clone();
  }

  /** Adds a participant (creating the room if needed); an identity already present is replaced. */
  join(roomName: string, spec: ParticipantSpec): ParticipantInfo {
    const existing = this.#rooms.get(roomName);
    if (existing?.closing) throw new RoomClosedError(`room ${roomName} is closing`);
    if (!existing) this.create({ name: roomName });
    const record = this.#rooms.get(roomName)!;
    if (record.participants.has(spec.identity)) {
      this.leave(roomName, spec.identity, { reason: DisconnectReason.DUPLICATE_IDENTITY });
    }
    const nowMs = this.#clock();
    const kind = spec.kind ?? ParticipantInfo_Kind.STANDARD;
    const isRecorder = kind === ParticipantInfo_Kind.EGRESS;
    const participant = new ParticipantInfo({
      sid: newGuid('PA_'),
      identity: spec.identity,
      name: spec.name ?? '',
      metadata: spec.metadata ?? '',
      state: ParticipantInfo_State.ACTIVE,
      kind,
      attributes: { ...spec.attributes },
      joinedAt: unixSeconds(nowMs),
      joinedAtMs: unixMillis(nowMs),
      isPublisher: !isRecorder,
      permission: new ParticipantPermission({
        canSubscribe: true,
        canPublish: !isRecorder,
        canPublishData: true,
        hidden: spec.hidden ?? isRecorder,
        recorder: isRecorder,
        agent: kind === ParticipantInfo_Kind.AGENT,
      }),
    });
    record.participants.set(spec.identity, participant);
    if (!isDependent(participant)) {
      record.hadNonDependent = true;
      this.#timers.cancel(record.closeTimer);
      record.closeTimer = undefined;
    }
    const room = this.#snapshot(record);
    this.#webhooks.emit({
      event: new WebhookEvent({ event: 'participant_joined', room, participant: participant.clone() }),
      roomName,
    });
    this.#events.emit('participant:joined', { room: room.clone(), participant: participant.clone() });
    if (spec.publishAudio ?? !isRecorder) this.#publishMicrophone(record, participant);
    return participant.clone();
  }

  /** Whether anyone in the room publishes an audio track (what an SDK-source egress records). */
  hasAudio(roomName: string): boolean {
    const record = this.#live(roomName);
    return [...(record?.participants.values() ?? [])].some((p) =>
      p.tracks.some((t) => t.type === TrackType.AUDIO),
    );
  }

  /** Removes a participant; returns its final state, or undefined if it was not there. */
  leave(
    roomName: string,
    identity: string,
    options: { reason: DisconnectReason; attributes?: Record<string, string> },
  ): ParticipantInfo | undefined {
    const record = this.#rooms.get(roomName);
    const participant = record?.participants.get(identity);
    if (!record || !participant) return undefined;
    record.participants.delete(identity);
    participant.state = ParticipantInfo_State.DISCONNECTED;
    participant.disconnectReason = options.reason;
    participant.attributes = { ...participant.attributes, ...options.attributes };
    const room = this.#snapshot(record);
    this.#webhooks.emit({
      event: new WebhookEvent({ event: 'participant_left', room, participant: participant.clone() }),
      roomName,
    });
    this.#events.emit('participant:left', { room: room.clone(), participant: participant.clone() });
    const onlyDependentsLeft = [...record.participants.values()].every(isDependent);
    if (!record.closing && onlyDependentsLeft && !isDependent(participant) && record.hadNonDependent) {
      this.#scheduleClose(record, record.departureTimeoutMs);
    }
    return participant;
  }

  /** Closes the room now; false if there is no such room. */
  close(roomName: string, reason: RoomEndReason): boolean {
    const record = this.#live(roomName);
    if (!record) return false;
    record.closing = true;
    this.#timers.cancel(record.closeTimer);
    record.closeTimer = undefined;
    this.#hooks.onRoomClosing(roomName);
    const disconnectReason =
      reason === RoomEndReason.ROOM_END_API_DELETE
        ? DisconnectReason.ROOM_DELETED
        : DisconnectReason.ROOM_CLOSED;
    for (const identity of [...record.participants.keys()]) {
      this.leave(roomName, identity, { reason: disconnectReason });
    }
    this.#rooms.delete(roomName);
    const room = this.#snapshot(record);
    this.#webhooks.emit({
      event: new WebhookEvent({ event: 'room_finished', room, roomEndReason: reason }),
      roomName,
    });
    this.#events.emit('room:finished', { room: room.clone(), reason });
    return true;
  }

  #publishMicrophone(record: RoomRecord, participant: ParticipantInfo): void {
    const track = new TrackInfo({
      sid: newGuid('TR_'),
      type: TrackType.AUDIO,
      source: TrackSource.MICROPHONE,
      mimeType: 'audio/opus',
    });
    participant.tracks.push(track);
    // LiveKit's track events carry a minimal room and participant (telemetry getRoomDetails).
    this.#webhooks.emit({
      event: new WebhookEvent({
        event: 'track_published',
        room: new Room({ sid: record.room.sid, name: record.room.name }),
        participant: new ParticipantInfo({ sid: participant.sid, identity: participant.identity }),
        track: track.clone(),
      }),
      roomName: record.room.name,
    });
    this.#hooks.onAudioPublished(record.room.name);
  }

  #live(name: string): RoomRecord | undefined {
    const record = this.#rooms.get(name);
    return record && !record.closing ? record : undefined;
  }

  #scheduleClose(record: RoomRecord, delayMs: number): void {
    this.#timers.cancel(record.closeTimer);
    record.closeTimer = this.#timers.schedule({
      delayMs,
      callback: () => {
        record.closeTimer = undefined;
        if (this.#rooms.get(record.room.name) === record) {
          this.close(record.room.name, RoomEndReason.ROOM_END_IDLE_TIMEOUT);
        }
      },
      onError: this.#onTimerError,
    });
  }

  #snapshot(record: RoomRecord): Room {
    const room = record.room.clone();
    const visible = [...record.participants.values()].filter((p) => p.kind !== ParticipantInfo_Kind.EGRESS);
    room.numParticipants = visible.length;
    room.numPublishers = visible.filter((p) => p.isPublisher).length;
    room.activeRecording = [...record.participants.values()].some(
      (p) => p.kind === ParticipantInfo_Kind.EGRESS,
    );
    return room;
  }
}
