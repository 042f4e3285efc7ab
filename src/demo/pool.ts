/**
 * Bounded, staggered concurrency for the simulated calls: at most `concurrency` calls in
 * progress, and call i never starts before i × `staggerMs` after the first, so calls arrive
 * spread out as real traffic does instead of all in the same millisecond.
 */
import { setTimeout as delay } from 'node:timers/promises';

export interface PoolOptions {
  concurrency: number;
  /** Minimum spacing between starts, in milliseconds; 0 starts each as soon as a slot frees. */
  staggerMs: number;
  signal?: AbortSignal | undefined;
}

/** Runs `task` on every item; results come back in input order. `task` should not reject. */
export async function runPooled<T, R>(
  items: readonly T[],
  options: PoolOptions,
  task: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  const startedAtMs = Date.now();
  let next = 0;
  async function worker(): Promise<void> {
    for (let index = next++; index < items.length; index = next++) {
      const waitMs = startedAtMs + index * options.staggerMs - Date.now();
      if (waitMs > 0) await delay(waitMs, undefined, { signal: options.signal });
      options.signal?.throwIfAborted();
      results[index] = await task(items[index]!, index);
    }
  }
  const workers = Math.max(1, Math.min(options.concurrency, items.length));
  await Promise.all(Array.from({ length: workers }, () => worker()));
  return results;
}
