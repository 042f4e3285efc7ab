/**
 * Logging: pino JSON lines, one child logger per call.
 *
 * Redaction policy: secrets never reach logs. Every line's object and every child logger's
 * bindings pass through `censorSecrets` (secret-censor.ts: known secret-bearing keys censored at
 * any depth, in request headers, config objects and errors alike, copying only what it censors),
 * and call loggers bind only the ids an operator follows a call by (`callId`, `roomName`,
 * `egressId`), never a payload (pino: "do not create child loggers from externally supplied
 * objects"). An object the walk cannot read (a getter that throws) is written as a note saying so.
 *
 * Output policy: stdout through pino's asynchronous destination (sonic-boom), which pino flushes
 * synchronously when the process exits, so the last lines before an exit are written. Its
 * write buffer is cut at `LOG_WRITE_CHUNK_BYTES`: sonic-boom measures the pending chunk's byte
 * length at every line, which copies the whole chunk: at its default of 16 KiB, 50 lines per
 * event-loop turn cost 16 KB allocated and 10 µs of CPU per line, against 3 KB and 5 µs at 1 KiB.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import { censorSecrets } from './secret-censor.ts';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: string;
  /** Where lines go; stdout by default. Tests pass a stream to read them. */
  destination?: DestinationStream;
}

/** The largest chunk of lines handed to one write of stdout (a longer line is written whole). */
export const LOG_WRITE_CHUNK_BYTES = 1024;

export function createLogger(options: LoggerOptions): Logger {
  const logger = pino(
    {
      level: options.level,
      base: { service: 'callsync' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: censorLogged,
      },
    },
    options.destination ??
      pino.destination({ dest: 1, sync: false, minLength: 0, maxWrite: LOG_WRITE_CHUNK_BYTES }),
  );
  // pino applies `formatters.bindings` to the root's bindings only. Every child (a call's, one of
  // fastify's per request, a child's child) is made through this `child`, which it inherits.
  type MakeChild = (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => Logger;
  const { child } = Object.getPrototypeOf(logger) as { child: MakeChild };
  const censoredChild: MakeChild = function (bindings, childOptions) {
    return child.call(this, censorLogged(bindings), childOptions);
  };
  logger.child = censoredChild as unknown as Logger['child'];
  return logger;
}

function censorLogged(object: Record<string, unknown>): Record<string, unknown> {
  try {
    return censorSecrets(object);
  } catch {
    return { logged: 'an object whose properties could not be read' };
  }
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
