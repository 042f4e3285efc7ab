/**
 * Request bodies of the HTTP API (shared/api-contract.md), as zod schemas. Anything that does
 * not match is refused with 400 and the path of the first offending field, before it reaches
 * a call: bad input never changes what was already accepted.
 */
import { z } from 'zod';
import { callDirection } from '../payload/call-data.ts';
import { personaConfigSchema } from '../payload/persona-config.ts';

const isoTime = z.iso.datetime({ offset: true });
const id = z.string().trim().min(1).max(200);

export const createCallBody = z.object({
  roomName: id,
  callerNumber: z.string().trim().max(64),
  config: personaConfigSchema,
  direction: callDirection.optional(),
  startedAt: isoTime.optional(),
  callId: id.regex(/^[A-Za-z0-9._:-]+$/, 'may hold only letters, digits and . _ : -').optional(),
  sessionId: id.optional(),
});
export type CreateCallBody = z.infer<typeof createCallBody>;

export const transcriptBody = z.object({
  items: z
    .array(
      z.object({
        id,
        role: z.enum(['user', 'assistant']),
        content: z.string().max(100_000),
        timestamp: isoTime,
        transcriptConfidence: z.number().min(0).max(1).nullable().optional(),
      }),
    )
    .min(1)
    .max(1000),
});
export type TranscriptBody = z.infer<typeof transcriptBody>;

export const leadBody = z.object({
  leadId: id,
  data: z.record(z.string(), z.unknown()).optional(),
});
export type LeadBody = z.infer<typeof leadBody>;

export const endCallBody = z
  .object({
    endedAt: isoTime.optional(),
    status: z.enum(['completed', 'failed', 'no-answer', 'busy']).optional(),
    reason: z.string().max(1000).optional(),
  })
  .default({});
export type EndCallBody = z.infer<typeof endCallBody>;

export const listCallsQuery = z.object({
  state: z.string().trim().min(1).max(100).optional(),
  limit: z.coerce.number().int().min(1).max(5000).optional(),
});

/** "items.2.timestamp: Invalid ISO datetime" — the first issue, with its field path. */
export function describeIssue(error: z.ZodError): { field: string; message: string } {
  const issue = error.issues[0];
  if (!issue) return { field: '', message: 'invalid body' };
  const field = issue.path.map(String).join('.');
  return { field, message: field ? `${field}: ${issue.message}` : issue.message };
}
