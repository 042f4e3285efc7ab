/**
 * The sandbox's idempotency ledger, per endpoint and `Idempotency-Key`.
 *
 * Policy (after Stripe's): only an answer that changed state (a stored upload or document) is
 * kept and replayed; refusals (auth, validation) and injected faults are not, so a corrected
 * retry with the same key is handled afresh. A request whose key is still being handled waits
 * for that first request and then gets its answer (a 409 would make a well-behaved client fail a
 * call that is in fact being delivered); if the first one ends without storing anything, the
 * waiter is handled itself.
 */
import type { CrmSandboxEndpoint } from './types.ts';

export interface StoredAnswer {
  status: number;
  body: unknown;
}

export type LedgerEntry =
  | {
      kind: 'first';
      /** Settle the key: with the answer to replay, or `undefined` when nothing was stored. */
      finish(answer: StoredAnswer | undefined): void;
    }
  | { kind: 'replay'; answer: StoredAnswer; concurrent: boolean };

type Slot =
  | { state: 'in-flight'; settled: Promise<StoredAnswer | undefined> }
  | { state: 'done'; answer: StoredAnswer };

export class IdempotencyLedger {
  private readonly slots = new Map<string, Slot>();

  async begin(endpoint: CrmSandboxEndpoint, key: string): Promise<LedgerEntry> {
    const id = `${endpoint}\n${key}`;
    let waited = false;
    for (;;) {
      const slot = this.slots.get(id);
      if (slot === undefined) {
        let settle!: (answer: StoredAnswer | undefined) => void;
        const settled = new Promise<StoredAnswer | undefined>((resolve) => (settle = resolve));
        const mine: Slot = { state: 'in-flight', settled };
        this.slots.set(id, mine);
        return {
          kind: 'first',
          finish: (answer) => {
            // Only the holder of the slot may settle it (twice is a no-op; after clear() too).
            if (this.slots.get(id) === mine) {
              if (answer === undefined) this.slots.delete(id);
              else this.slots.set(id, { state: 'done', answer });
            }
            settle(answer);
          },
        };
      }
      if (slot.state === 'done') return { kind: 'replay', answer: slot.answer, concurrent: waited };
      waited = true;
      await slot.settled;
    }
  }

  clear(): void {
    this.slots.clear();
  }
}
