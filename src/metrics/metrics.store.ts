/**
 * Times the call store's writes (`callsync_store_write_duration_seconds{operation}`) without the
 * store knowing about metrics: the supervisor wraps whatever store it opened.
 *
 * Only writes are timed: they sit on every accepted event's path (the API answers after the
 * commit), so a slow disk or a distant PostgreSQL shows up here before it shows up as late
 * deliveries. Reads happen at start-up and on operator requests. Every other member passes
 * through unchanged, so the wrapper keeps working when the store interface grows.
 */
import type { CallStore } from '../store/call-store.ts';
import type { StoreOperation } from './metrics.ts';
import type { MetricsRecorder } from './metrics.recorder.ts';

const TIMED_WRITES: Readonly<Record<string, StoreOperation>> = {
  createCall: 'create_call',
  commit: 'commit',
};

/** A monotonic clock in milliseconds (`performance.now` by default). */
export type MonotonicMs = () => number;

export function withStoreMetrics<S extends CallStore>(
  store: S,
  recorder: Pick<MetricsRecorder, 'storeWrite'>,
  nowMs: MonotonicMs = () => performance.now(),
): S {
  return new Proxy(store, {
    get(target, property) {
      // The store itself is the receiver: its getters read private fields.
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      const operation = typeof property === 'string' ? TIMED_WRITES[property] : undefined;
      if (operation === undefined) return (value as (...args: unknown[]) => unknown).bind(target);
      const write = value as (...args: unknown[]) => Promise<unknown>;
      return async (...args: unknown[]) => {
        const startedMs = nowMs();
        let ok = false;
        try {
          const result = await write.apply(target, args);
          ok = true;
          return result;
        } finally {
          recorder.storeWrite({ operation, durationSeconds: (nowMs() - startedMs) / 1000, ok });
        }
      };
    },
  });
}
