/**
 * Logging: pino JSON lines, one child logger per call.
 *
 * Redaction policy: secrets never reach logs. Everything pino writes passes through
 * secret-censor.ts first (known secret-bearing keys censored at any depth, in request headers,
 * config objects and errors alike, copying only what it censors): each line's merge object
 * (`formatters.log`, also behind a child's own), the values a message interpolates (`%j`, `%o`:
 * `hooks.logMethod`), and the bindings of every child and of `setBindings`. Call loggers bind
 * only the ids an operator follows a call by (`callId`, `roomName`, `egressId`), never a payload
 * (pino: "do not create child loggers from externally supplied objects"). An object the walk
 * cannot read at all (a proxy that throws) is written as a note saying so.
 *
 * Output policy: stdout through pino's asynchronous destination (sonic-boom), which pino flushes
 * synchronously when the process exits, so the last lines before an exit are written. Its
 * write buffer is cut at `LOG_WRITE_CHUNK_BYTES`: sonic-boom measures the pending chunk's byte
 * length at every line, which copies the whole chunk: at its default of 16 KiB, 50 lines per
 * event-loop turn cost 16 KB allocated and 10 µs of CPU per line, against 3 KB and 5 µs at 1 KiB.
 */
import { EventEmitter, once } from 'node:events';
import pino, { type DestinationStream, type Logger } from 'pino';
import { censorLine, censorSecrets } from './secret-censor.ts';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: string;
  /** Where lines go; stdout by default. Tests pass a stream to read them. */
  destination?: DestinationStream;
}

/** The largest chunk of lines handed to one write of stdout (a longer line is written whole). */
export const LOG_WRITE_CHUNK_BYTES = 1024;
/** How long `flushLogs` waits for stdout to take the lines (a reader that stopped reading). */
export const LOG_FLUSH_TIMEOUT_MS = 5_000;

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
      hooks: {
        logMethod(args, method) {
          // The merge object goes through `formatters.log`; what the message interpolates does not.
          for (let index = 1; index < args.length; index++) {
            if (typeof args[index] === 'object' && args[index] !== null) {
              args[index] = censorLoggedValue(args[index]);
            }
          }
          method.apply(this, args);
        },
      },
    },
    options.destination ??
      pino.destination({ dest: 1, sync: false, minLength: 0, maxWrite: LOG_WRITE_CHUNK_BYTES }),
  );
  // pino applies `formatters.bindings` to the root's bindings only. Every child (a call's, one of
  // fastify's per request, a child's child) is made through these two, which it inherits.
  type MakeChild = (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => Logger;
  type SetBindings = (this: Logger, bindings: pino.Bindings) => void;
  const { child, setBindings } = Object.getPrototypeOf(logger) as {
    child: MakeChild;
    setBindings: SetBindings;
  };
  const censoredChild: MakeChild = function (bindings, childOptions) {
    const ownLog = childOptions?.formatters?.log;
    const censoredOptions =
      ownLog === undefined
        ? childOptions
        : {
            ...childOptions,
            formatters: {
              ...childOptions?.formatters,
              log: (o: Record<string, unknown>) => censorLogged(ownLog(o) as Record<string, unknown>),
            },
          };
    return child.call(this, censorLogged(bindings), censoredOptions as pino.ChildLoggerOptions | undefined);
  };
  const censoredSetBindings: SetBindings = function (bindings) {
    setBindings.call(this, censorLogged(bindings));
  };
  logger.child = censoredChild as unknown as Logger['child'];
  logger.setBindings = censoredSetBindings;
  return logger;
}

const UNREADABLE_NOTE = 'an object whose properties could not be read';

function censorLogged(object: Record<string, unknown>): Record<string, unknown> {
  try {
    return censorLine(object);
  } catch {
    return { logged: UNREADABLE_NOTE };
  }
}

function censorLoggedValue(value: unknown): unknown {
  try {
    return censorSecrets(value);
  } catch {
    return UNREADABLE_NOTE;
  }
}

/**
 * Resolves once every line logged so far has been written (or after `LOG_FLUSH_TIMEOUT_MS`).
 * Exit after it: pino writes what is still buffered synchronously at exit, but a write already
 * handed to libuv's thread pool (busy with file reads, DNS or crypto) would come out after those
 * lines, or not at all.
 */
export async function flushLogs(logger: Logger): Promise<void> {
  const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym];
  if (
    !(stream instanceof EventEmitter) ||
    typeof (stream as { flushSync?: unknown }).flushSync !== 'function'
  ) {
    return; // not pino's asynchronous destination: nothing of its own is pending
  }
  const drained = once(stream, 'drain', { signal: AbortSignal.timeout(LOG_FLUSH_TIMEOUT_MS) });
  // An empty write ends in 'drain' once the writes before it are done, writing or not.
  (stream as unknown as { write(data: string): boolean }).write('');
  await drained.catch(() => undefined);
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
