/**
 * Observers for agent-side tests: the reporter's events (to await "it has retried twice"
 * instead of sleeping) and its log lines (to assert what it says, and what it never says).
 */
import type { ReporterEvent, ReporterLogger } from '../../src/agent/reporter.ts';

export interface EventRecorder {
  readonly events: ReporterEvent[];
  onEvent(event: ReporterEvent): void;
  /** Resolves once `predicate` holds over the events so far (checked now and after each event). */
  waitFor(predicate: (events: readonly ReporterEvent[]) => boolean): Promise<void>;
  count(type: ReporterEvent['type']): number;
}

export function recordReporterEvents(): EventRecorder {
  const events: ReporterEvent[] = [];
  const waiters = new Set<() => void>();
  return {
    events,
    onEvent(event) {
      events.push(event);
      for (const check of [...waiters]) check();
    },
    waitFor(predicate) {
      return new Promise((resolve) => {
        const check = () => {
          if (!predicate(events)) return;
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
        check();
      });
    },
    count(type) {
      return events.filter((event) => event.type === type).length;
    },
  };
}

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  fields: object;
  msg: string;
}

export interface CapturingLogger extends ReporterLogger {
  readonly lines: LogLine[];
  /** Every line as JSON, for "this never appears" assertions. */
  text(): string;
}

export function captureLogs(): CapturingLogger {
  const lines: LogLine[] = [];
  const at =
    (level: LogLine['level']) =>
    (fields: object, msg: string): void => {
      lines.push({ level, fields, msg });
    };
  return {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    text: () =>
      lines.map((line) => JSON.stringify(line, (_key, value: unknown) => serializable(value))).join('\n'),
  };
}

function serializable(value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}
