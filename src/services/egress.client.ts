/**
 * One call's LiveKit egress client: starts the call's audio-only room-composite recording to
 * an Ogg file, stops it, and reads its status, over livekit-server-sdk's `EgressClient`.
 *
 * Lifecycle policy: a call actor opens one of these when the call starts and closes it exactly
 * once when the call is done or failed (or the actor stops). After `close()` every method
 * throws `LIVEKIT_CLIENT_CLOSED`: the original design closed its client right after starting
 * the recording and used it again later, and that must fail loudly, not half-work.
 *
 * Error policy: SDK failures become `LiveKitError`s with a stable `code` and a `retryable`
 * flag decided here, from the Twirp code and HTTP status: timeouts, network errors, 429 and
 * 5xx are worth repeating; a missing room or egress, a 412 on a finished egress, bad
 * credentials or a bad request are not. Callers retry; this client makes one attempt.
 *
 * Output policy: audio-only room composite with no layout (LiveKit then records with the SDK
 * source, no Chrome), passed as `{ file }` so the SDK sends only `fileOutputs`, Ogg forced, no
 * manifest, with the recording storage's upload settings when it has them (LiveKit Cloud
 * refuses a file output without). Those settings hold secrets: they travel only in the request
 * body; LiveKit redacts them in every `EgressInfo` it answers.
 */
import {
  EgressClient,
  EgressStatus,
  EncodedFileOutput,
  EncodedFileType,
  type EgressInfo,
} from 'livekit-server-sdk';
import type { FileInfo } from '@livekit/protocol';
import { CallsyncError, type CallsyncErrorOptions } from '../errors.ts';
import type { EgressFile } from '../machines/call.types.ts';
import { LiveKitTokenSource } from './livekit-token.ts';

/** The SDK's own default; kept explicit because egress start can be slow when workers are busy. */
export const LIVEKIT_REQUEST_TIMEOUT_SECONDS = 10;
const NANOSECONDS_PER_SECOND = 1e9;

export type EgressState =
  'starting' | 'active' | 'ending' | 'complete' | 'failed' | 'aborted' | 'limit_reached';

/** States after which an egress never changes again. */
export const FINAL_EGRESS_STATES: ReadonlySet<EgressState> = new Set([
  'complete',
  'failed',
  'aborted',
  'limit_reached',
]);

/** An egress's status in the JSON-safe form the call actor keeps and persists. */
export interface EgressSnapshot {
  egressId: string;
  roomName: string;
  /** The room instance the egress records (`RM_…`). */
  roomId: string;
  state: EgressState;
  /** The file it wrote (the one JSON-safe `EgressFile`; size and duration once it is final). */
  file: EgressFile | null;
  /** LiveKit's error text for failed or aborted egresses. */
  error: string | null;
  /** Unix milliseconds, when LiveKit reported the egress ended. */
  endedAtMs: number | null;
}

const STATE_BY_STATUS: Record<EgressStatus, EgressState> = {
  [EgressStatus.EGRESS_STARTING]: 'starting',
  [EgressStatus.EGRESS_ACTIVE]: 'active',
  [EgressStatus.EGRESS_ENDING]: 'ending',
  [EgressStatus.EGRESS_COMPLETE]: 'complete',
  [EgressStatus.EGRESS_FAILED]: 'failed',
  [EgressStatus.EGRESS_ABORTED]: 'aborted',
  [EgressStatus.EGRESS_LIMIT_REACHED]: 'limit_reached',
};

function positiveOrNull(value: bigint): number | null {
  return value > 0n ? Number(value) : null;
}

/** Size and duration only once LiveKit knows them (it reports 0 until the egress is final). */
function toEgressFile(file: FileInfo): EgressFile {
  const sizeBytes = positiveOrNull(file.size);
  const durationNs = positiveOrNull(file.duration);
  return {
    filename: file.filename,
    location: file.location,
    ...(sizeBytes === null ? {} : { sizeBytes }),
    ...(durationNs === null ? {} : { durationSeconds: durationNs / NANOSECONDS_PER_SECOND }),
  };
}

/** Maps the SDK's `EgressInfo` (bigint nanoseconds, enums) to an `EgressSnapshot`. */
export function toEgressSnapshot(info: EgressInfo): EgressSnapshot {
  const file = info.fileResults[0] ?? (info.result.case === 'file' ? info.result.value : undefined);
  const endedAtNs = positiveOrNull(info.endedAt);
  return {
    egressId: info.egressId,
    roomName: info.roomName,
    roomId: info.roomId,
    // An unknown enum value (newer server) is read as 0 by protobuf-es; treat it as not final.
    state: STATE_BY_STATUS[info.status] ?? 'starting',
    file: file ? toEgressFile(file) : null,
    error: info.error === '' ? null : info.error,
    endedAtMs: endedAtNs === null ? null : Math.floor(endedAtNs / 1e6),
  };
}

export class LiveKitError extends CallsyncError {}

/** Twirp error codes that name a permanent condition, with our code for each. */
const PERMANENT_TWIRP_CODES: Record<string, string> = {
  not_found: 'LIVEKIT_NOT_FOUND',
  failed_precondition: 'EGRESS_ALREADY_ENDED',
  unauthenticated: 'LIVEKIT_UNAUTHENTICATED',
  permission_denied: 'LIVEKIT_PERMISSION_DENIED',
  invalid_argument: 'LIVEKIT_INVALID_REQUEST',
  malformed: 'LIVEKIT_INVALID_REQUEST',
  bad_route: 'LIVEKIT_BAD_ROUTE',
  already_exists: 'LIVEKIT_ALREADY_EXISTS',
};

function isServerError(error: unknown): error is Error & { status: number; code?: string } {
  return error instanceof Error && typeof (error as { status?: unknown }).status === 'number';
}

/** Classifies anything the SDK threw. `operation` names the call for the message. */
export function toLiveKitError(error: unknown, operation: string): LiveKitError {
  if (error instanceof LiveKitError) return error;
  const fail = (code: string, message: string, options: Omit<CallsyncErrorOptions, 'cause'>) =>
    new LiveKitError(code, `LiveKit ${operation}: ${message}`, { ...options, cause: error });

  if (isServerError(error)) {
    const { status, code: twirpCode } = error;
    const details = { twirpCode: twirpCode ?? null, status };
    const permanentCode = twirpCode === undefined ? undefined : PERMANENT_TWIRP_CODES[twirpCode];
    if (permanentCode) return fail(permanentCode, error.message, { retryable: false, status, details });
    if (status === 401)
      return fail('LIVEKIT_UNAUTHENTICATED', error.message, { retryable: false, status, details });
    if (status === 404)
      return fail('LIVEKIT_NOT_FOUND', error.message, { retryable: false, status, details });
    if (status === 412)
      return fail('EGRESS_ALREADY_ENDED', error.message, { retryable: false, status, details });
    if (status === 429)
      return fail('LIVEKIT_RATE_LIMITED', error.message, { retryable: true, status, details });
    if (status === 408 || status >= 500) {
      return fail('LIVEKIT_UNAVAILABLE', error.message, { retryable: true, status, details });
    }
    return fail('LIVEKIT_REJECTED', error.message, { retryable: false, status, details });
  }
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return fail('LIVEKIT_TIMEOUT', `no answer within ${LIVEKIT_REQUEST_TIMEOUT_SECONDS} s`, {
      retryable: true,
    });
  }
  // fetch rejects with a TypeError ("fetch failed") for refused connections, DNS and TLS errors.
  const message = error instanceof Error ? error.message : String(error);
  return fail('LIVEKIT_NETWORK_ERROR', message, { retryable: true });
}

export interface CallEgressClientOptions {
  /** LiveKit server, http(s):// or ws(s)://. */
  url: string;
  apiKey: string;
  apiSecret: string;
  requestTimeoutSeconds?: number;
  /** The process's LiveKit token (`livekit-token.ts`), shared by every call; else one of its own. */
  tokens?: LiveKitTokenSource | undefined;
}

export interface StartRecordingOptions {
  roomName: string;
  /** Egress filepath template, e.g. `calls/{room_name}-{time}.ogg`; `.ogg` is forced by LiveKit. */
  filepath: string;
  /**
   * Where the egress uploads the file (`S3Upload`, `GCPUpload`, `AzureBlobUpload`); absent: the
   * egress server's own `storage:` block, or its local disk.
   */
  upload?: EncodedFileOutput['output'] | undefined;
}

export class CallEgressClient {
  readonly #options: CallEgressClientOptions;
  readonly #tokens: LiveKitTokenSource;
  /** The SDK client for the token it was made with (a renewed token gets a new one). */
  #client: { token: string; sdk: EgressClient } | undefined;
  #closed = false;

  constructor(options: CallEgressClientOptions) {
    this.#options = options;
    this.#tokens = options.tokens ?? new LiveKitTokenSource(options);
  }

  async #sdk(): Promise<EgressClient> {
    const token = await this.#tokens.current();
    if (this.#client?.token !== token) {
      this.#client = {
        token,
        sdk: new EgressClient(this.#options.url, undefined, undefined, {
          token,
          requestTimeout: this.#options.requestTimeoutSeconds ?? LIVEKIT_REQUEST_TIMEOUT_SECONDS,
        }),
      };
    }
    return this.#client.sdk;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Starts the call's audio-only Ogg recording. */
  async startRecording({ roomName, filepath, upload }: StartRecordingOptions): Promise<EgressSnapshot> {
    this.#assertOpen('startRecording');
    const output = new EncodedFileOutput({
      fileType: EncodedFileType.OGG,
      filepath,
      // The manifest (<dir>/<egressId>.json next to the recording) is of no use to the CRM.
      disableManifest: true,
      ...(upload === undefined ? {} : { output: upload }),
    });
    try {
      return toEgressSnapshot(
        await (await this.#sdk()).startRoomCompositeEgress(roomName, { file: output }, { audioOnly: true }),
      );
    } catch (error) {
      throw toLiveKitError(error, `start recording of room ${roomName}`);
    }
  }

  /**
   * The room's egresses that have not finished yet, oldest first. Used before starting a
   * recording after a restart, so a call never records twice.
   */
  async listActive(roomName: string): Promise<EgressSnapshot[]> {
    this.#assertOpen('listActive');
    try {
      const infos = await (await this.#sdk()).listEgress({ roomName, active: true });
      return infos.sort((a, b) => (a.startedAt < b.startedAt ? -1 : 1)).map(toEgressSnapshot);
    } catch (error) {
      throw toLiveKitError(error, `list egresses of room ${roomName}`);
    }
  }

  /** Reads one egress's status; `LIVEKIT_NOT_FOUND` when LiveKit does not know it (or forgot it). */
  async status(egressId: string): Promise<EgressSnapshot> {
    this.#assertOpen('status');
    let infos: EgressInfo[];
    try {
      infos = await (await this.#sdk()).listEgress({ egressId });
    } catch (error) {
      throw toLiveKitError(error, `read egress ${egressId}`);
    }
    const info = infos.find((candidate) => candidate.egressId === egressId);
    if (!info) {
      throw new LiveKitError('LIVEKIT_NOT_FOUND', `LiveKit read egress ${egressId}: egress does not exist`, {
        retryable: false,
      });
    }
    return toEgressSnapshot(info);
  }

  /**
   * Asks LiveKit to stop the egress; it answers with the status as of the stop (ENDING, or
   * ABORTED if it never started), never COMPLETE. An egress that already ended throws
   * `EGRESS_ALREADY_ENDED` (Twirp 412).
   */
  async stop(egressId: string): Promise<EgressSnapshot> {
    this.#assertOpen('stop');
    try {
      return toEgressSnapshot(await (await this.#sdk()).stopEgress(egressId));
    } catch (error) {
      throw toLiveKitError(error, `stop egress ${egressId}`);
    }
  }

  /** Safe to call twice. The SDK holds no sockets of its own (it uses fetch), so this only fences. */
  close(): void {
    this.#closed = true;
  }

  #assertOpen(operation: string): void {
    if (this.#closed) {
      throw new LiveKitError(
        'LIVEKIT_CLIENT_CLOSED',
        `LiveKit ${operation}: the call's LiveKit client is closed`,
        {
          retryable: false,
        },
      );
    }
  }
}
