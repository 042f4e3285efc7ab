/**
 * Twirp wire format, as LiveKit's Go server speaks it.
 *
 * Errors are `{"code","msg"[,"meta"]}` served with `Content-Type: application/json` exactly:
 * livekit-server-sdk parses the body only when the header equals that string, so a charset
 * suffix would turn every error into an opaque message without a `code`. Success bodies are
 * protojson with proto (snake_case) field names and every unpopulated field emitted, which is
 * what Go's twirp produces with LiveKit's settings.
 */
import type { ServerResponse } from 'node:http';

export type TwirpCode =
  | 'canceled'
  | 'unknown'
  | 'invalid_argument'
  | 'malformed'
  | 'deadline_exceeded'
  | 'not_found'
  | 'bad_route'
  | 'already_exists'
  | 'permission_denied'
  | 'unauthenticated'
  | 'resource_exhausted'
  | 'failed_precondition'
  | 'aborted'
  | 'out_of_range'
  | 'unimplemented'
  | 'internal'
  | 'unavailable'
  | 'data_loss';

/** twitchtv/twirp `ServerHTTPStatusFromErrorCode`. */
export const TWIRP_HTTP_STATUS: Readonly<Record<TwirpCode, number>> = {
  canceled: 408,
  unknown: 500,
  invalid_argument: 400,
  malformed: 400,
  deadline_exceeded: 408,
  not_found: 404,
  bad_route: 404,
  already_exists: 409,
  permission_denied: 403,
  unauthenticated: 401,
  resource_exhausted: 429,
  failed_precondition: 412,
  aborted: 409,
  out_of_range: 400,
  unimplemented: 501,
  internal: 500,
  unavailable: 503,
  data_loss: 500,
};

export class TwirpError extends Error {
  override readonly name = 'TwirpError';
  readonly code: TwirpCode;
  readonly meta: Record<string, string> | undefined;

  constructor(code: TwirpCode, msg: string, meta?: Record<string, string>) {
    super(msg);
    this.code = code;
    this.meta = meta;
  }

  get status(): number {
    return TWIRP_HTTP_STATUS[this.code];
  }
}

/** The messages LiveKit's server uses for the errors the emulator can produce. */
export const TwirpErrors = {
  permissionDenied: () => new TwirpError('unauthenticated', 'permissions denied'),
  roomNotFound: () => new TwirpError('not_found', 'requested room does not exist'),
  participantNotFound: () => new TwirpError('not_found', 'participant does not exist'),
  egressNotFound: () => new TwirpError('not_found', 'egress does not exist'),
  invalidField: (field: string) =>
    new TwirpError('invalid_argument', `request has missing or invalid field: ${field}`),
  malformedJson: () => new TwirpError('malformed', 'the json request could not be decoded'),
  malformedProtobuf: () => new TwirpError('malformed', 'the protobuf request could not be decoded'),
} as const;

export function writeTwirpError(res: ServerResponse, error: TwirpError): void {
  const body = JSON.stringify({
    code: error.code,
    msg: error.message,
    ...(error.meta === undefined ? {} : { meta: error.meta }),
  });
  res.writeHead(error.status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** A protobuf-es message, as far as the emulator needs one. */
export interface ProtoMessage {
  toJson(options?: { useProtoFieldName?: boolean; emitDefaultValues?: boolean }): unknown;
  toBinary(): Uint8Array;
}

export type TwirpEncoding = 'json' | 'protobuf';

export function writeTwirpMessage(res: ServerResponse, message: ProtoMessage, encoding: TwirpEncoding): void {
  const body =
    encoding === 'json'
      ? Buffer.from(JSON.stringify(message.toJson({ useProtoFieldName: true, emitDefaultValues: true })))
      : Buffer.from(message.toBinary());
  res.writeHead(200, {
    'Content-Type': encoding === 'json' ? 'application/json' : 'application/protobuf',
    'Content-Length': body.length,
  });
  res.end(body);
}
