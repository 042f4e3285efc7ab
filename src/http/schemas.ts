/**
 * Request bodies of the HTTP API (the public contract), as zod schemas. Anything that does not
 * match is refused with 400 and the path of the first offending field, before it reaches a
 * call: bad input never changes what was already accepted.
 *
 * Input limits (documented in the README), each so that no request can reach a code path that
 * throws outside it or make one call hold unbounded memory:
 * - text: no NUL and no lone UTF-16 surrogate in any string (PostgreSQL's jsonb cannot hold a
 *   NUL, and a lone surrogate is not UTF-8 at all), refused with the field named;
 * - lead `data`: nested at most `LEAD_DATA_MAX_DEPTH` levels, at most `LEAD_DATA_MAX_BYTES` as JSON;
 * - the persona `config` (kept whole, unknown fields included): the same depth, at most
 *   `CONFIG_MAX_BYTES` as JSON;
 * - transcript: at most `TRANSCRIPT_BATCH_MAX_ITEMS` items a batch, `TRANSCRIPT_ITEM_MAX_CHARS` a text;
 * - timestamps: ISO-8601, at most `FUTURE_SKEW_MAX_MS` ahead of the server's clock.
 * Per-call totals (items, leads) and an end before the start are checked by the supervisor,
 * which knows the call.
 *
 * The body types are the supervisor's (`src/supervisor/call-api.ts`); each schema `satisfies`
 * the type it produces, so the two cannot drift apart.
 */
import { z } from 'zod';
import { callDirection } from '../payload/call-data.ts';
import { personaConfigSchema } from '../payload/persona-config.ts';
import { DISMISSED_STATE } from '../store/call-store.ts';
import {
  CALL_LIST_PAGE_MAX,
  type CallListQuery,
  type CreateCallBody,
  type DismissBody,
  type EndCallBody,
  type LeadBody,
  type TranscriptBody,
} from '../supervisor/call-api.ts';
import { CALL_STATE_NAMES } from '../supervisor/call-state.ts';

export const LEAD_DATA_MAX_DEPTH = 32;
export const LEAD_DATA_MAX_BYTES = 64 * 1024;
/** A persona config with many campaigns and agents is a few KiB; 256 KiB leaves room for prompts. */
export const CONFIG_MAX_BYTES = 256 * 1024;
export const TRANSCRIPT_BATCH_MAX_ITEMS = 1000;
export const TRANSCRIPT_ITEM_MAX_CHARS = 100_000;
/** How far ahead of our clock a timestamp may be (agents' clocks drift; a year ahead is a bug). */
export const FUTURE_SKEW_MAX_MS = 5 * 60_000;

/** A NUL, or a UTF-16 surrogate that is not half of a pair. */
// eslint-disable-next-line no-control-regex -- the NUL is exactly what is refused
const UNSTORABLE_TEXT = /\u0000|\p{Cs}/u; // in u-mode a well-formed pair is one code point, never Cs
const UNSTORABLE_MESSAGE = 'must not contain NUL characters or unpaired UTF-16 surrogates';

function storable(value: string): boolean {
  return !UNSTORABLE_TEXT.test(value);
}

const text = z.string().refine(storable, UNSTORABLE_MESSAGE);
const isoTime = z.iso
  .datetime({ offset: true })
  .refine(
    (value) => Date.parse(value) <= Date.now() + FUTURE_SKEW_MAX_MS,
    `must not be more than ${FUTURE_SKEW_MAX_MS / 60_000} minutes in the future`,
  );
const id = z.string().trim().min(1).max(200).refine(storable, UNSTORABLE_MESSAGE);

/**
 * The first problem of a JSON value that is too deep or holds unstorable text, with its path;
 * iterative, so a value nested 10,000 levels costs no stack.
 */
function jsonProblem(
  value: unknown,
  maxDepth: number,
): { path: (string | number)[]; message: string } | null {
  const stack: { value: unknown; path: (string | number)[] }[] = [{ value, path: [] }];
  while (stack.length > 0) {
    const { value: current, path } = stack.pop()!;
    if (typeof current === 'string') {
      if (!storable(current)) return { path, message: UNSTORABLE_MESSAGE };
      continue;
    }
    if (typeof current !== 'object' || current === null) continue;
    if (path.length >= maxDepth) return { path, message: `is nested deeper than ${maxDepth} levels` };
    for (const [key, child] of Object.entries(current)) {
      if (!storable(key)) return { path: [...path, key], message: `key ${UNSTORABLE_MESSAGE}` };
      stack.push({ value: child, path: [...path, Array.isArray(current) ? Number(key) : key] });
    }
  }
  return null;
}

/** Refuses a JSON value nested too deep, holding unstorable text, or too large, naming the path. */
function boundedJson(maxBytes: number) {
  return (value: unknown, context: z.RefinementCtx) => {
    const problem = jsonProblem(value, LEAD_DATA_MAX_DEPTH);
    if (problem) {
      context.addIssue({ code: 'custom', path: problem.path, message: problem.message });
      return;
    }
    const bytes = Buffer.byteLength(JSON.stringify(value));
    if (bytes > maxBytes) {
      context.addIssue({ code: 'custom', message: `is ${bytes} bytes as JSON, over ${maxBytes}` });
    }
  };
}

const leadData = z.record(z.string(), z.unknown()).superRefine(boundedJson(LEAD_DATA_MAX_BYTES));

export const createCallBody = z.object({
  roomName: id,
  callerNumber: text.max(64),
  // Checked for depth before its shape, so a config nested 10,000 levels costs no stack.
  config: z.unknown().superRefine(boundedJson(CONFIG_MAX_BYTES)).pipe(personaConfigSchema),
  direction: callDirection.optional(),
  startedAt: isoTime.optional(),
  callId: id.regex(/^[A-Za-z0-9._:-]+$/, 'may hold only letters, digits and . _ : -').optional(),
  sessionId: id.optional(),
}) satisfies z.ZodType<CreateCallBody>;

export const transcriptBody = z.object({
  items: z
    .array(
      z.object({
        id,
        role: z.enum(['user', 'assistant']),
        content: text.max(TRANSCRIPT_ITEM_MAX_CHARS),
        timestamp: isoTime,
        transcriptConfidence: z.number().min(0).max(1).nullable().optional(),
      }),
    )
    .min(1)
    .max(TRANSCRIPT_BATCH_MAX_ITEMS),
}) satisfies z.ZodType<TranscriptBody>;

export const leadBody = z.object({
  leadId: id,
  data: leadData.optional(),
}) satisfies z.ZodType<LeadBody>;

export const endCallBody = z
  .object({
    endedAt: isoTime.optional(),
    status: z.enum(['completed', 'failed', 'no-answer', 'busy']).optional(),
    reason: text.max(1000).optional(),
  })
  .default({}) satisfies z.ZodType<EndCallBody>;

const LISTED_STATES: [string, ...string[]] = [DISMISSED_STATE, ...CALL_STATE_NAMES];

export const listCallsQuery = z.strictObject(
  {
    state: z.enum(LISTED_STATES, { error: `must be one of ${LISTED_STATES.join(', ')}` }).optional(),
    since: isoTime.optional(),
    limit: z.coerce
      .number({ error: `must be a whole number from 1 to ${CALL_LIST_PAGE_MAX}` })
      .int(`must be a whole number from 1 to ${CALL_LIST_PAGE_MAX}`)
      .min(1, `must be a whole number from 1 to ${CALL_LIST_PAGE_MAX}`)
      .max(CALL_LIST_PAGE_MAX, `must be a whole number from 1 to ${CALL_LIST_PAGE_MAX}`)
      .optional(),
    cursor: z.string().min(1).max(1000).optional(),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys' ? `unknown filter ${issue.keys.join(', ')}` : undefined,
  },
) satisfies z.ZodType<CallListQuery>;

export const dismissBody = z.object({
  reason: text.min(1, 'reason: say why the call is closed').max(1000),
}) satisfies z.ZodType<DismissBody>;

/** "items.2.timestamp: Invalid ISO datetime" — the first issue, with its field path. */
export function describeIssue(error: z.ZodError): { field: string; message: string } {
  const issue = error.issues[0];
  if (!issue) return { field: '', message: 'invalid body' };
  const field = issue.path.map(String).join('.');
  return { field, message: field ? `${field}: ${issue.message}` : issue.message };
}
