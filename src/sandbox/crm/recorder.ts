/**
 * What the CRM sandbox received, and awaitable conditions on it.
 *
 * Tests and the demo never poll or sleep: `waitFor(select)` re-evaluates `select` on the
 * read-out after every change and resolves with its first result that is not undefined, null
 * or false. A wait has a deadline (default 10 s) so a missing delivery fails a test with a
 * message instead of hanging it.
 */
import { CRM_SANDBOX_ENDPOINTS, type CrmSandboxEndpoint, type CrmSandboxReceived } from './types.ts';

export const WAIT_TIMEOUT_MS_DEFAULT = 10_000;

export interface WaitOptions {
  /** Default 10 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Named in the timeout error. */
  description?: string;
}

interface Waiter {
  check(received: CrmSandboxReceived): boolean;
  fail(error: Error): void;
}

function perEndpoint<T>(value: () => T): Record<CrmSandboxEndpoint, T> {
  return Object.fromEntries(CRM_SANDBOX_ENDPOINTS.map((endpoint) => [endpoint, value()])) as Record<
    CrmSandboxEndpoint,
    T
  >;
}

function emptyReceived(): CrmSandboxReceived {
  return {
    requests: perEndpoint(() => 0),
    uploads: [],
    callData: [],
    duplicates: perEndpoint(() => 0),
    duplicateRequests: [],
    rejected: [],
    faults: [],
  };
}

export class ReceivedLog {
  private state = emptyReceived();
  private readonly waiters = new Set<Waiter>();
  private closedError: Error | undefined;

  /** A deep copy, safe to keep and to serialise. */
  snapshot(): CrmSandboxReceived {
    return structuredClone(this.state);
  }

  /** Applies a change to the live state, then wakes the waiters. */
  update(change: (state: CrmSandboxReceived) => void): void {
    change(this.state);
    if (this.waiters.size === 0) return;
    const snapshot = this.snapshot();
    for (const waiter of [...this.waiters]) waiter.check(snapshot);
  }

  reset(): void {
    this.update((state) => Object.assign(state, emptyReceived()));
  }

  waitFor<T>(
    select: (received: CrmSandboxReceived) => T | undefined | null | false,
    options: WaitOptions = {},
  ): Promise<T> {
    const timeoutMs = options.timeoutMs ?? WAIT_TIMEOUT_MS_DEFAULT;
    const what = options.description ?? 'the awaited condition';
    return new Promise<T>((resolve, reject) => {
      if (this.closedError) {
        reject(this.closedError);
        return;
      }
      const cleanup = () => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(waiter);
      };
      const waiter: Waiter = {
        check: (received) => {
          let selected: T | undefined | null | false;
          try {
            selected = select(received);
          } catch (error) {
            cleanup();
            reject(error instanceof Error ? error : new Error(String(error)));
            return true;
          }
          if (selected === undefined || selected === null || selected === false) return false;
          cleanup();
          resolve(selected);
          return true;
        },
        fail: (error) => {
          cleanup();
          reject(error);
        },
      };
      const onAbort = () => waiter.fail(new Error(`CRM sandbox: stopped waiting for ${what} (aborted)`));
      const timer = setTimeout(
        () => waiter.fail(new Error(`CRM sandbox: ${what} did not happen within ${timeoutMs} ms`)),
        timeoutMs,
      );
      if (options.signal?.aborted) {
        onAbort();
        return;
      }
      options.signal?.addEventListener('abort', onAbort, { once: true });
      if (waiter.check(this.snapshot())) return;
      this.waiters.add(waiter);
    });
  }

  /** Fails every pending wait and every later one. */
  close(): void {
    this.closedError = new Error('CRM sandbox closed');
    for (const waiter of [...this.waiters]) waiter.fail(this.closedError);
  }
}
