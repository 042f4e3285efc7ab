/**
 * Room-composite egresses and their lifecycle, as livekit/egress reports it:
 *
 *   STARTING ──(activateAfterMs, and audio published in the room)──▶ ACTIVE
 *   ACTIVE ──(StopEgress "StopEgress API" | room closed "Source closed" | limit)──▶ ENDING
 *   ENDING ──(finalizeAfterMs; the .ogg is written, then uploaded)──▶ COMPLETE | LIMIT_REACHED | FAILED
 *   STARTING ──(stop or room closed)──▶ ABORTED "Stop called before pipeline could start"
 *
 * An SDK-source egress waits in STARTING until there is audio to record, so activation also
 * needs a participant publishing an audio track in the room. Times are Unix nanoseconds from the
 * injectable clock; the recording's length is the time spent ACTIVE unless the room's
 * behaviour fixes it. StopEgress answers with the state as of the stop (ENDING or ABORTED),
 * never COMPLETE: completion is only seen through ListEgress or `egress_ended`.
 *
 * Where the file goes is decided at start (egress-storage.ts): with no storage it is written
 * under the recordings directory and `location` is its absolute path; with request or server
 * storage it is written to a temp file, uploaded with the store's SDK (egress-uploaders.ts),
 * the temp file removed, and only then is the egress COMPLETE, with `location` in egress v1.14's
 * format. An upload the store refuses ends FAILED "<S3|GCP|Azure> upload failed: …" (400) with
 * no location and size 0, as egress does. The unredacted upload settings stay in-process
 * (`storageOf`, the `egress:uploaded` events); `EgressInfo.request` carries them redacted.
 */
import type { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import {
  DisconnectReason,
  EgressInfo,
  EgressSourceType,
  EgressStatus,
  EncodedFileType,
  FileInfo,
  ParticipantInfo_Kind,
  WebhookEvent,
} from '@livekit/protocol';
import type { EncodedFileOutput, RoomCompositeEgressRequest } from '@livekit/protocol';
import { writeOggOpusRecording } from '../../audio/ogg-opus.ts';
import type { Clock } from './clock.ts';
import { secondsToNanos, unixNanos } from './clock.ts';
import { egressStorageFilepath, resolveRecordingPath } from './egress-filepath.ts';
import type { EgressStorage, ResolvedStorage, ServerStorageConfig } from './egress-storage.ts';
import {
  describeStorage,
  egressLocation,
  objectKey,
  PROVIDER_NAMES,
  resolveEgressStorage,
} from './egress-storage.ts';
import type { UploadEndpoints } from './egress-uploaders.ts';
import { uploadEgressFile } from './egress-uploaders.ts';
import type { LiveKitEmulatorEventMap } from './events.ts';
import { newGuid } from './ids.ts';
import type { EmulatorLogger } from './logger.ts';
import type { EgressOutcome, RoomBehaviour } from './room-behaviour.ts';
import { DEFAULT_LIMIT_REACHED_AFTER_MS } from './room-behaviour.ts';
import type { RoomRegistry } from './room-registry.ts';
import type { TimerHandle, TimerSet } from './timer-set.ts';
import { TwirpError, TwirpErrors } from './twirp.ts';
import type { WebhookDispatcher, WebhookTarget } from './webhook-dispatcher.ts';

/** livekit/protocol `EndReason*`, reported in `details` as "End reason: …". */
const END_REASONS = {
  api: 'StopEgress API',
  sourceClosed: 'Source closed',
  limit: 'Session limit reached',
  failure: 'Failure',
} as const;
type EndReason = keyof typeof END_REASONS;

/** livekit/egress `info.Msg*`. */
const MSG_START_NOT_RECEIVED = 'Start signal not received';
const MSG_STOPPED_BEFORE_STARTED = 'Stop called before pipeline could start';
const MSG_LIMIT_REACHED_WITHOUT_START = 'Session limit reached before start signal';
const MSG_LIMIT_REACHED = 'Session limit reached';
const DEFAULT_FAILURE_ERROR = 'pipeline frozen';
/** livekit/egress `ErrRoomConnectionFailed` (psrpc Unavailable → 503). */
const MSG_ROOM_CONNECTION_FAILED = 'recording ended early: connection to room failed';

/** livekit/egress `ErrUploadFailed` is psrpc InvalidArgument → 400. */
const HTTP_BAD_REQUEST = 400;
const HTTP_INTERNAL_SERVER_ERROR = 500;
const HTTP_SERVICE_UNAVAILABLE = 503;
const HTTP_PRECONDITION_FAILED = 412;
const HTTP_REQUEST_ENTITY_TOO_LARGE = 413;

const REDACTED_UPLOAD_FIELDS = {
  s3: { accessKey: '{access_key}', secret: '{secret}', sessionToken: '{session_token}' },
  gcp: { credentials: '{credentials}' },
  azure: { accountName: '{account_name}', accountKey: '{account_key}' },
  aliOSS: { accessKey: '{access_key}', secret: '{secret}' },
} as const;

interface EgressRecord {
  info: EgressInfo;
  /** Shared by `file_results[0]` and the deprecated `file` result, as in livekit/egress. */
  file: FileInfo;
  destination: FileDestination;
  roomName: string;
  extraTargets: WebhookTarget[];
  activeAtMs: number | undefined;
  endingAtMs: number | undefined;
  endReason: EndReason | undefined;
  /** The activation delay passed while nobody in the room published audio. */
  awaitingAudio: boolean;
  timer: TimerHandle | undefined;
}

export interface ListEgressFilter {
  egressId?: string;
  roomName?: string;
  active?: boolean;
}

/** The recordings directory (at `absolutePath`), or a store (at `storage.key`). */
type FileDestination =
  | { kind: 'local'; absolutePath: string }
  | { kind: 'upload'; resolved: ResolvedStorage; storage: EgressStorage };

/** The file that finalisation produced, or why there is none. */
type FinalizedFile =
  | { kind: 'file'; sizeBytes: number; durationSeconds: number; location: string }
  | { kind: 'write_failed'; reason: string }
  | { kind: 'upload_failed'; durationSeconds: number; error: string };

export interface EgressStorageOptions {
  server: ServerStorageConfig | undefined;
  requireStorage: boolean;
  endpoints: UploadEndpoints;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isTerminal(status: EgressStatus): boolean {
  return status >= EgressStatus.EGRESS_COMPLETE;
}

function redactedRequest(request: RoomCompositeEgressRequest): RoomCompositeEgressRequest {
  const copy = request.clone();
  const files =
    copy.fileOutputs.length > 0 ? copy.fileOutputs : copy.output.case === 'file' ? [copy.output.value] : [];
  for (const file of files) {
    const upload = file.output;
    if (upload.case === undefined) continue;
    const target = upload.value as unknown as Record<string, unknown>;
    for (const [field, placeholder] of Object.entries(REDACTED_UPLOAD_FIELDS[upload.case])) {
      if (typeof target[field] === 'string' && target[field] !== '') target[field] = placeholder;
    }
  }
  return copy;
}

export class EgressManager {
  readonly #egresses = new Map<string, EgressRecord>();
  readonly #failedStarts = new Map<string, number>();
  readonly #finalizing = new Set<Promise<void>>();
  readonly #clock: Clock;
  readonly #timers: TimerSet;
  readonly #rooms: RoomRegistry;
  readonly #webhooks: WebhookDispatcher;
  readonly #events: EventEmitter<LiveKitEmulatorEventMap>;
  readonly #logger: EmulatorLogger;
  readonly #recordingsDir: string;
  readonly #storage: EgressStorageOptions;
  readonly #behaviourFor: (roomName: string) => RoomBehaviour | undefined;
  readonly #webhookTargetFor: (config: { url: string; signingKey: string }) => WebhookTarget;
  readonly #defaults: { activateAfterMs: number; finalizeAfterMs: number };
  readonly #onTimerError: (error: unknown) => void;
  #closed = false;

  constructor(options: {
    clock: Clock;
    timers: TimerSet;
    rooms: RoomRegistry;
    webhooks: WebhookDispatcher;
    events: EventEmitter<LiveKitEmulatorEventMap>;
    logger: EmulatorLogger;
    recordingsDir: string;
    storage: EgressStorageOptions;
    behaviourFor: (roomName: string) => RoomBehaviour | undefined;
    /** Resolves a request's `webhooks[]` entry to a signed target. */
    webhookTargetFor: (config: { url: string; signingKey: string }) => WebhookTarget;
    defaults: { activateAfterMs: number; finalizeAfterMs: number };
    onTimerError: (error: unknown) => void;
  }) {
    this.#clock = options.clock;
    this.#timers = options.timers;
    this.#rooms = options.rooms;
    this.#webhooks = options.webhooks;
    this.#events = options.events;
    this.#logger = options.logger;
    this.#recordingsDir = options.recordingsDir;
    this.#storage = options.storage;
    this.#behaviourFor = options.behaviourFor;
    this.#webhookTargetFor = options.webhookTargetFor;
    this.#defaults = options.defaults;
    this.#onTimerError = options.onTimerError;
  }

  /** StartRoomCompositeEgress: validates like the server and egress worker, then STARTING. */
  start(request: RoomCompositeEgressRequest): EgressInfo {
    const room = this.#rooms.get(request.roomName);
    if (!room) throw TwirpErrors.roomNotFound();
    this.#failStartIfAsked(request.roomName);
    const file = this.#validatedFileOutput(request);
    const storage = resolveEgressStorage({
      file,
      server: this.#storage.server,
      requireStorage: this.#storage.requireStorage,
    });

    const nowMs = this.#clock();
    const egressId = newGuid('EG_');
    const storageFilepath = egressStorageFilepath({
      filepath: file.filepath,
      roomName: room.name,
      roomId: room.sid,
      nowMs,
    });
    const destination: FileDestination = storage
      ? {
          kind: 'upload',
          resolved: storage,
          storage: describeStorage(storage, objectKey(storage.prefix, storageFilepath)),
        }
      : {
          kind: 'local',
          absolutePath: resolveRecordingPath({ recordingsDir: this.#recordingsDir, storageFilepath }),
        };
    const fileInfo = new FileInfo({ filename: storageFilepath });
    const usesSdkSource = request.audioOnly && request.layout === '' && request.customBaseUrl === '';
    const info = new EgressInfo({
      egressId,
      roomId: room.sid,
      roomName: room.name,
      sourceType: usesSdkSource ? EgressSourceType.SDK : EgressSourceType.WEB,
      status: EgressStatus.EGRESS_STARTING,
      startedAt: unixNanos(nowMs),
      updatedAt: unixNanos(nowMs),
      request: { case: 'roomComposite', value: redactedRequest(request) },
      fileResults: [fileInfo],
      result: { case: 'file', value: fileInfo },
    });
    const record: EgressRecord = {
      info,
      file: fileInfo,
      destination,
      roomName: room.name,
      extraTargets: request.webhooks.map((config) => this.#webhookTargetFor(config)),
      activeAtMs: undefined,
      endingAtMs: undefined,
      endReason: undefined,
      awaitingAudio: false,
      timer: undefined,
    };
    this.#egresses.set(egressId, record);
    this.#publish(record, 'egress_started');
    // The recorder joins the room as a hidden participant named after the egress.
    this.#rooms.join(room.name, { identity: egressId, kind: ParticipantInfo_Kind.EGRESS });
    record.timer = this.#timers.schedule({
      delayMs: this.#behaviourFor(room.name)?.activateAfterMs ?? this.#defaults.activateAfterMs,
      callback: () => this.#onActivationDue(record),
      onError: this.#onTimerError,
    });
    return info.clone();
  }

  /** ListEgress: an `egressId` selects that one egress (404 if unknown), else room/active filters. */
  list(filter: ListEgressFilter): EgressInfo[] {
    if (filter.egressId) {
      const record = this.#egresses.get(filter.egressId);
      if (!record) throw TwirpErrors.egressNotFound();
      return [record.info.clone()];
    }
    return [...this.#egresses.values()]
      .filter((record) => !filter.roomName || record.roomName === filter.roomName)
      .filter((record) => !filter.active || !isTerminal(record.info.status))
      .map((record) => record.info.clone());
  }

  get(egressId: string): EgressInfo | undefined {
    return this.#egresses.get(egressId)?.info.clone();
  }

  /** The unredacted storage an egress uploads to; null for local files, undefined if unknown. */
  storageOf(egressId: string): EgressStorage | null | undefined {
    const record = this.#egresses.get(egressId);
    if (!record) return undefined;
    return record.destination.kind === 'upload' ? structuredClone(record.destination.storage) : null;
  }

  /** StopEgress: the state as of the stop; 412 once the egress has ended. */
  stop(egressId: string): EgressInfo {
    const record = this.#egresses.get(egressId);
    if (!record) throw TwirpErrors.egressNotFound();
    if (isTerminal(record.info.status)) {
      throw new TwirpError(
        'failed_precondition',
        `egress with status ${EgressStatus[record.info.status]} cannot be stopped`,
      );
    }
    this.#end(record, 'api');
    return record.info.clone();
  }

  /** Hook: the room is closing, its egresses lose their source. */
  onRoomClosing(roomName: string): void {
    for (const record of this.#egresses.values()) {
      if (record.roomName === roomName && !isTerminal(record.info.status)) this.#end(record, 'sourceClosed');
    }
  }

  /** Hook: audio now flows for egresses that were waiting for something to record. */
  onAudioPublished(roomName: string): void {
    for (const record of this.#egresses.values()) {
      if (record.roomName === roomName && record.awaitingAudio) this.#onActivationDue(record);
    }
  }

  /** Waits for in-flight file writes; no state changes are published afterwards. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#finalizing]);
  }

  #outcome(record: EgressRecord): EgressOutcome {
    return this.#behaviourFor(record.roomName)?.egressOutcome ?? 'complete';
  }

  #failStartIfAsked(roomName: string): void {
    const failure = this.#behaviourFor(roomName)?.failStarts;
    if (!failure) return;
    const failed = this.#failedStarts.get(roomName) ?? 0;
    if (failure.count !== undefined && failed >= failure.count) return;
    this.#failedStarts.set(roomName, failed + 1);
    if (failure.error === 'not_connected') {
      throw new TwirpError('internal', 'egress not connected (redis required)');
    }
    throw new TwirpError('unavailable', 'no response from servers');
  }

  #validatedFileOutput(request: RoomCompositeEgressRequest): EncodedFileOutput {
    if (request.audioOnly && request.videoOnly) throw TwirpErrors.invalidField('audio_only and video_only');
    if (request.fileOutputs.length > 1) throw TwirpErrors.invalidField('multiple file outputs');
    const file =
      request.fileOutputs[0] ?? (request.output.case === 'file' ? request.output.value : undefined);
    const otherOutputs =
      request.streamOutputs.length +
      request.segmentOutputs.length +
      request.imageOutputs.length +
      (request.output.case === 'stream' || request.output.case === 'segments' ? 1 : 0);
    if (otherOutputs > 0) {
      throw new TwirpError(
        'unimplemented',
        'the LiveKit emulator only records to files (stream, segment and image outputs are not emulated)',
      );
    }
    if (!file) throw TwirpErrors.invalidField('output');
    if (!request.audioOnly) {
      throw new TwirpError('unimplemented', 'the LiveKit emulator only records audio_only room composites');
    }
    if (file.fileType !== EncodedFileType.OGG && file.fileType !== EncodedFileType.DEFAULT_FILETYPE) {
      throw new TwirpError(
        'unimplemented',
        `the LiveKit emulator only records OGG files, not ${EncodedFileType[file.fileType]}`,
      );
    }
    return file;
  }

  #onActivationDue(record: EgressRecord): void {
    record.timer = undefined;
    record.awaitingAudio = false;
    if (this.#closed || record.info.status !== EgressStatus.EGRESS_STARTING) return;
    switch (this.#outcome(record)) {
      case 'stuck_starting':
        return;
      case 'aborted':
        this.#abort(record, MSG_START_NOT_RECEIVED);
        return;
      default:
        if (this.#rooms.hasAudio(record.roomName)) {
          this.#activate(record);
        } else {
          record.awaitingAudio = true;
        }
    }
  }

  #activate(record: EgressRecord): void {
    const nowMs = this.#clock();
    record.activeAtMs = nowMs;
    record.file.startedAt = unixNanos(nowMs);
    this.#setStatus(record, EgressStatus.EGRESS_ACTIVE, nowMs);
    this.#publish(record, 'egress_updated');
    if (this.#outcome(record) === 'limit_reached') {
      record.timer = this.#timers.schedule({
        delayMs: this.#behaviourFor(record.roomName)?.limitReachedAfterMs ?? DEFAULT_LIMIT_REACHED_AFTER_MS,
        callback: () => {
          record.timer = undefined;
          this.#end(record, 'limit');
        },
        onError: this.#onTimerError,
      });
    }
  }

  #end(record: EgressRecord, reason: EndReason): void {
    if (this.#closed) return;
    switch (record.info.status) {
      case EgressStatus.EGRESS_STARTING:
        record.info.details = `End reason: ${END_REASONS[reason]}`;
        this.#abort(
          record,
          reason === 'limit' ? MSG_LIMIT_REACHED_WITHOUT_START : MSG_STOPPED_BEFORE_STARTED,
        );
        return;
      case EgressStatus.EGRESS_ACTIVE: {
        this.#timers.cancel(record.timer);
        const nowMs = this.#clock();
        record.endReason = reason;
        record.endingAtMs = nowMs;
        record.info.details = `End reason: ${END_REASONS[reason]}`;
        this.#setStatus(record, EgressStatus.EGRESS_ENDING, nowMs);
        this.#publish(record, 'egress_updated');
        this.#leaveRoom(record);
        record.timer = this.#timers.schedule({
          delayMs: this.#behaviourFor(record.roomName)?.finalizeAfterMs ?? this.#defaults.finalizeAfterMs,
          callback: () => this.#trackFinalize(record),
          onError: this.#onTimerError,
        });
        return;
      }
      default:
        return; // ENDING already, or ended
    }
  }

  #trackFinalize(record: EgressRecord): Promise<void> {
    record.timer = undefined;
    const finalizing = this.#finalize(record);
    this.#finalizing.add(finalizing);
    return finalizing.finally(() => this.#finalizing.delete(finalizing));
  }

  async #finalize(record: EgressRecord): Promise<void> {
    if (this.#closed || record.info.status !== EgressStatus.EGRESS_ENDING) return;
    const behaviour = this.#behaviourFor(record.roomName);
    const outcome = this.#outcome(record);
    if (outcome === 'stuck_ending') return;
    if (outcome === 'failed') {
      this.#fail(record, {
        error: behaviour?.failure?.error ?? DEFAULT_FAILURE_ERROR,
        errorCode: behaviour?.failure?.errorCode ?? HTTP_INTERNAL_SERVER_ERROR,
        details: behaviour?.failure?.details ?? `End reason: ${END_REASONS.failure}`,
      });
      return;
    }

    const activeMs = (record.endingAtMs ?? 0) - (record.activeAtMs ?? 0);
    const durationSeconds = behaviour?.recordingSeconds ?? Math.max(0, activeMs) / 1000;
    const finalized =
      record.destination.kind === 'upload'
        ? await this.#writeAndUpload(record, record.destination, durationSeconds)
        : await this.#writeLocally(record, record.destination.absolutePath, durationSeconds);
    if (this.#closed) return;

    const nowMs = this.#clock();
    if (finalized.kind === 'write_failed') {
      this.#fail(record, {
        error: `upload failed: ${finalized.reason}`,
        errorCode: HTTP_INTERNAL_SERVER_ERROR,
      });
      return;
    }
    record.file.duration = secondsToNanos(finalized.durationSeconds);
    record.file.endedAt = record.file.startedAt + record.file.duration;
    if (finalized.kind === 'upload_failed') {
      this.#fail(record, { error: finalized.error, errorCode: HTTP_BAD_REQUEST });
      return;
    }
    record.file.size = BigInt(finalized.sizeBytes);
    record.file.location = finalized.location;
    if (outcome === 'failed_with_file') {
      this.#fail(record, {
        error: behaviour?.failure?.error ?? MSG_ROOM_CONNECTION_FAILED,
        errorCode: behaviour?.failure?.errorCode ?? HTTP_SERVICE_UNAVAILABLE,
        details: behaviour?.failure?.details ?? `End reason: ${END_REASONS.failure}`,
      });
    } else if (record.endReason === 'limit') {
      record.info.error = MSG_LIMIT_REACHED;
      record.info.errorCode = HTTP_REQUEST_ENTITY_TOO_LARGE;
      this.#finish(record, EgressStatus.EGRESS_LIMIT_REACHED, nowMs);
    } else {
      this.#finish(record, EgressStatus.EGRESS_COMPLETE, nowMs);
    }
  }

  async #writeLocally(
    record: EgressRecord,
    absolutePath: string,
    durationSeconds: number,
  ): Promise<FinalizedFile> {
    try {
      const written = await writeOggOpusRecording(absolutePath, { durationSeconds });
      return { kind: 'file', ...written, location: absolutePath };
    } catch (error) {
      this.#logger.error({ egressId: record.info.egressId, err: error }, 'writing the recording failed');
      return { kind: 'write_failed', reason: errorMessage(error) };
    }
  }

  /** Temp file → store → temp file removed; the egress stays ENDING throughout. */
  async #writeAndUpload(
    record: EgressRecord,
    upload: Extract<FileDestination, { kind: 'upload' }>,
    durationSeconds: number,
  ): Promise<FinalizedFile> {
    const { egressId } = record.info;
    const { target } = upload.resolved;
    const { key } = upload.storage;
    let tempDir: string | undefined;
    let localPath: string;
    let written: { sizeBytes: number; durationSeconds: number };
    try {
      try {
        tempDir = await mkdtemp(join(tmpdir(), 'livekit-emulator-egress-'));
        localPath = join(tempDir, posix.basename(key));
        written = await writeOggOpusRecording(localPath, { durationSeconds });
      } catch (error) {
        this.#logger.error({ egressId, err: error }, 'writing the recording failed');
        return { kind: 'write_failed', reason: errorMessage(error) };
      }
      const bucket = target.provider === 'azure' ? target.settings.containerName : target.settings.bucket;
      try {
        const { sizeBytes } = await uploadEgressFile({
          target,
          localPath,
          key,
          endpoints: this.#storage.endpoints,
        });
        const location = egressLocation(target, key);
        this.#logger.info(
          { egressId, provider: target.provider, bucket, key, sizeBytes },
          'egress file uploaded',
        );
        if (!this.#closed) {
          this.#events.emit('egress:uploaded', {
            egressId,
            storage: structuredClone(upload.storage),
            location,
            sizeBytes,
          });
        }
        return { kind: 'file', sizeBytes, durationSeconds: written.durationSeconds, location };
      } catch (error) {
        // Only the store's message: the settings (and so the credentials) are never logged.
        const message = `${PROVIDER_NAMES[target.provider]} upload failed: ${errorMessage(error)}`;
        this.#logger.warn(
          { egressId, provider: target.provider, bucket, key, error: message },
          'egress upload failed',
        );
        if (!this.#closed) {
          this.#events.emit('egress:upload-failed', {
            egressId,
            storage: structuredClone(upload.storage),
            error: message,
          });
        }
        return { kind: 'upload_failed', durationSeconds: written.durationSeconds, error: message };
      }
    } finally {
      if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
    }
  }

  #abort(record: EgressRecord, message: string): void {
    record.info.error = message;
    record.info.errorCode = HTTP_PRECONDITION_FAILED;
    this.#finish(record, EgressStatus.EGRESS_ABORTED, this.#clock());
  }

  #fail(record: EgressRecord, failure: { error: string; errorCode: number; details?: string }): void {
    record.info.error = failure.error;
    record.info.errorCode = failure.errorCode;
    if (failure.details !== undefined) record.info.details = failure.details;
    this.#finish(record, EgressStatus.EGRESS_FAILED, this.#clock());
  }

  #finish(record: EgressRecord, status: EgressStatus, nowMs: number): void {
    this.#timers.cancel(record.timer);
    record.timer = undefined;
    record.awaitingAudio = false;
    record.info.endedAt = unixNanos(nowMs);
    this.#setStatus(record, status, nowMs);
    this.#publish(record, 'egress_ended');
    this.#leaveRoom(record);
  }

  #setStatus(record: EgressRecord, status: EgressStatus, nowMs: number): void {
    record.info.status = status;
    record.info.updatedAt = unixNanos(nowMs);
  }

  #leaveRoom(record: EgressRecord): void {
    this.#rooms.leave(record.roomName, record.info.egressId, { reason: DisconnectReason.CLIENT_INITIATED });
  }

  #publish(record: EgressRecord, event: 'egress_started' | 'egress_updated' | 'egress_ended'): void {
    this.#webhooks.emit({
      event: new WebhookEvent({ event, egressInfo: record.info.clone() }),
      roomName: record.roomName,
      extraTargets: record.extraTargets,
    });
    this.#events.emit('egress:updated', { info: record.info.clone() });
  }
}
