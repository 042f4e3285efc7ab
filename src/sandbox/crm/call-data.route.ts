/**
 * `POST /call-data`: the call-data JSON document, validated with the very schema callsync
 * builds it with (`callDataSchema`), so a drift between builder and contract shows up as a 400
 * naming the field, exactly as a strict CRM would answer. A valid document is kept in memory
 * (for read-out) and written to `<storageDir>/call-data/<id>.json` (for people to look at).
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { z } from 'zod';
import { callDataSchema } from '../../payload/call-data.ts';
import { BodyTooLargeError, ClientGoneError, drainRequest, headerValue, readBodyCapped } from './http.ts';
import { refused, type HandlerResult } from './results.ts';
import type { ReceivedCallData } from './types.ts';

export interface CallDataRouteContext {
  callDataDir: string;
  maxJsonBytes: number;
  idempotencyKey: string | null;
}

export async function receiveCallData(
  req: IncomingMessage,
  ctx: CallDataRouteContext,
): Promise<HandlerResult<ReceivedCallData>> {
  const contentType = headerValue(req, 'content-type') ?? '';
  if (!/^application\/(?:[\w.+-]+\+)?json\b/i.test(contentType)) {
    await drainRequest(req);
    return refused(415, 'unsupported_media_type', 'expected Content-Type: application/json');
  }
  let raw: Buffer;
  try {
    raw = await readBodyCapped(req, ctx.maxJsonBytes);
  } catch (error) {
    if (error instanceof BodyTooLargeError) {
      return refused(413, 'body_too_large', `the body is larger than ${ctx.maxJsonBytes} bytes`);
    }
    if (error instanceof ClientGoneError) return { kind: 'gone' };
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (error) {
    return refused(400, 'invalid_json', error instanceof Error ? error.message : 'the body is not JSON');
  }
  const result = callDataSchema.safeParse(json);
  if (!result.success) {
    return refused(400, 'validation_failed', z.prettifyError(result.error), {
      issues: result.error.issues.map((issue) => ({
        path: issue.path.map(String).join('.'),
        code: issue.code,
        message: issue.message,
      })),
    });
  }
  const id = randomUUID();
  const document = result.data;
  await writeFile(join(ctx.callDataDir, `${id}.json`), JSON.stringify(document, null, 2));
  return {
    kind: 'stored',
    answer: { status: 201, body: { success: true, data: { id, callId: document.callDetails.callId } } },
    record: {
      idempotencyKey: ctx.idempotencyKey,
      callId: document.callDetails.callId,
      document,
      receivedAt: new Date().toISOString(),
    },
  };
}
