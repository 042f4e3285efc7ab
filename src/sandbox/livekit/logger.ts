/**
 * The logging surface the emulator needs; a pino logger fits it as is. Silent by default so
 * tests stay quiet.
 */

type LogMethod = (bindings: Record<string, unknown>, message: string) => void;

export interface EmulatorLogger {
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
}

const noop: LogMethod = () => undefined;

export const silentLogger: EmulatorLogger = { debug: noop, info: noop, warn: noop, error: noop };
