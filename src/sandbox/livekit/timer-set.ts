/**
 * The emulator's timers, owned in one place so `close()` can cancel every pending activation,
 * finalisation and departure at once and leave no handle keeping the process alive.
 */

export type TimerHandle = symbol;

export class TimerSet {
  readonly #timers = new Map<TimerHandle, NodeJS.Timeout>();
  #closed = false;

  /** Runs `callback` after `delayMs`; errors it throws or rejects with go to `onError`. */
  schedule(options: {
    delayMs: number;
    callback: () => void | Promise<void>;
    onError: (error: unknown) => void;
  }): TimerHandle {
    const handle: TimerHandle = Symbol('timer');
    if (this.#closed) return handle;
    const timer = setTimeout(
      () => {
        this.#timers.delete(handle);
        try {
          Promise.resolve(options.callback()).catch(options.onError);
        } catch (error) {
          options.onError(error);
        }
      },
      Math.max(0, options.delayMs),
    );
    this.#timers.set(handle, timer);
    return handle;
  }

  cancel(handle: TimerHandle | undefined): void {
    if (handle === undefined) return;
    const timer = this.#timers.get(handle);
    if (timer !== undefined) clearTimeout(timer);
    this.#timers.delete(handle);
  }

  /** Cancels everything and refuses new timers. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
  }
}
