/**
 * Fault injection for the CRM sandbox: per endpoint, a queue of faults consumed one per request,
 * in arrival order, before anything else looks at the request (auth, idempotency, parsing), so
 * a script of N faults deterministically shapes the next N requests.
 *
 * Kinds:
 * - `{ status, body?, headers?, retryAfterSeconds? }` answers that status (after reading the
 *   request body, as a real server would) instead of handling the request;
 * - `{ hang: true }` never answers (the body is not read either);
 * - `{ reset: true }` resets the TCP connection (RST, the client sees ECONNRESET);
 * - `{ delayMs }` waits, then handles the request normally.
 *
 * `afterProcessing: true` on status, hang and reset faults handles and stores the request first
 * and only then loses or replaces the answer: the "CRM stored it but the acknowledgement never
 * arrived" case that idempotency keys exist for. The answer it would have sent is still the one
 * replayed to a retry with the same key.
 */
import { z } from 'zod';
import { CRM_SANDBOX_ENDPOINTS, type CrmSandboxEndpoint } from './types.ts';

const statusFaultSchema = z.strictObject({
  status: z.number().int().min(200).max(599),
  /** A string is sent as text/plain; anything else as JSON. Default: a JSON error. */
  body: z.unknown().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  /** Sets `Retry-After: <seconds>`. For an HTTP-date, use `headers: {"retry-after": …}`. */
  retryAfterSeconds: z.number().int().nonnegative().optional(),
  afterProcessing: z.boolean().optional(),
});

const hangFaultSchema = z.strictObject({ hang: z.literal(true), afterProcessing: z.boolean().optional() });
const resetFaultSchema = z.strictObject({ reset: z.literal(true), afterProcessing: z.boolean().optional() });
const delayFaultSchema = z.strictObject({ delayMs: z.number().int().nonnegative().max(600_000) });

export const crmFaultSchema = z.union([
  statusFaultSchema,
  hangFaultSchema,
  resetFaultSchema,
  delayFaultSchema,
]);

export type CrmStatusFault = z.infer<typeof statusFaultSchema>;
export type CrmHangFault = z.infer<typeof hangFaultSchema>;
export type CrmResetFault = z.infer<typeof resetFaultSchema>;
export type CrmDelayFault = z.infer<typeof delayFaultSchema>;
export type CrmFault = z.infer<typeof crmFaultSchema>;

/** The body of `POST /_sandbox/faults`. */
export const faultScriptSchema = z.strictObject({
  endpoint: z.enum(CRM_SANDBOX_ENDPOINTS as [CrmSandboxEndpoint, ...CrmSandboxEndpoint[]]),
  faults: z.array(crmFaultSchema),
});

export class FaultQueues {
  private readonly queues: Record<CrmSandboxEndpoint, CrmFault[]> = { upload: [], 'call-data': [] };

  /** Validates and appends; throws a `z.ZodError` naming the bad fault. */
  push(endpoint: CrmSandboxEndpoint, faults: readonly unknown[]): void {
    const parsed = z.array(crmFaultSchema).parse(faults);
    this.queues[endpoint].push(...parsed);
  }

  next(endpoint: CrmSandboxEndpoint): CrmFault | undefined {
    return this.queues[endpoint].shift();
  }

  clear(endpoint?: CrmSandboxEndpoint): void {
    for (const name of endpoint === undefined ? CRM_SANDBOX_ENDPOINTS : [endpoint]) this.queues[name] = [];
  }

  pending(): Record<CrmSandboxEndpoint, number> {
    return { upload: this.queues.upload.length, 'call-data': this.queues['call-data'].length };
  }
}
