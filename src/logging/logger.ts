/**
 * Logging: pino JSON lines, one child logger per call.
 *
 * Redaction policy: secrets never reach logs. Known secret-bearing keys are censored at any
 * depth pino can address (request headers, config objects, errors' details), and call loggers
 * bind only the ids an operator follows a call by (`callId`, `roomName`, `egressId`), never a
 * payload (pino: "do not create child loggers from externally supplied objects").
 */
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

const SECRET_KEYS = [
  'authorization',
  'Authorization',
  'apiSecret',
  'apiKey',
  'api_secret',
  'secret',
  'token',
  'ingestToken',
  'password',
  'LIVEKIT_API_SECRET',
  'CRM_API_KEY',
  'CALLSYNC_INGEST_TOKEN',
];

export const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((key) => `*.${key}`),
  ...SECRET_KEYS.map((key) => `*.*.${key}`),
  'req.headers.authorization',
  'req.headers["idempotency-key"]',
];

export interface LoggerOptions {
  level: string;
  /** Where lines go; stdout by default. Tests pass a stream to read them. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'callsync' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination,
  );
}

/** The ids a call's log lines carry, so an operator can follow one call from start to CRM. */
export interface CallLogScope {
  callId: string;
  roomName: string;
  egressId?: string | null;
}

export function callLogger(base: Logger, scope: CallLogScope): Logger {
  return base.child({ callId: scope.callId, roomName: scope.roomName, egressId: scope.egressId ?? null });
}
