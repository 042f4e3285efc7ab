/** The design note's retry: three tries a step, a fixed pause between them, nothing kept. */
import { setTimeout as delay } from 'node:timers/promises';

export const TRIES_PER_STEP = 3;
const PAUSE_BETWEEN_TRIES_MS = 1_000;

/** Runs `step` until it resolves, at most TRIES_PER_STEP times; rethrows the last error. */
export async function withTries<T>(step: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      if (attempt >= TRIES_PER_STEP) throw error;
      await delay(PAUSE_BETWEEN_TRIES_MS);
    }
  }
}
