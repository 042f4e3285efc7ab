/**
 * `POST /upload`: a multipart/form-data upload whose `file` part is streamed to disk.
 *
 * The file is never held in memory: busboy hands over the part as a stream, which is hashed
 * (sha256) and counted on its way to `<storageDir>/uploads/<uuid>-<safe name>`. A part over
 * `maxUploadBytes` is cut off by busboy, deleted, and answered 413. Anything that does not end in
 * a complete file (malformed multipart, client gone) leaves no file behind. Other parts named
 * `file` after the first, and other file parts, are read and discarded.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { basename, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';
import { ClientGoneError, drainRequest, headerValue } from './http.ts';
import { refused, type HandlerResult } from './results.ts';
import type { ReceivedUpload, UploadAnswerShape } from './types.ts';

const MAX_STORED_NAME_CHARS = 100;
const MAX_FIELDS = 50;
const MAX_FIELD_BYTES = 64 * 1024;

export interface UploadRouteContext {
  uploadsDir: string;
  maxUploadBytes: number;
  /** The public URL of a stored file. */
  fileUrl(storedName: string): string;
  answerShape: Required<UploadAnswerShape>;
  idempotencyKey: string | null;
}

interface StoredFile {
  storedName: string;
  path: string;
  fileName: string;
  contentType: string;
  sizeBytes: number;
  sha256: string;
  truncated: boolean;
}

/** A name safe on any filesystem and in a URL path, keeping the original's look. */
export function safeStoredName(fileName: string): string {
  const cleaned = basename(fileName)
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^\.+/, '')
    .slice(-MAX_STORED_NAME_CHARS);
  return `${randomUUID()}-${cleaned === '' ? 'upload' : cleaned}`;
}

async function storeFile(stream: Readable, info: busboy.FileInfo, uploadsDir: string): Promise<StoredFile> {
  const storedName = safeStoredName(info.filename ?? '');
  const path = join(uploadsDir, storedName);
  const hash = createHash('sha256');
  let sizeBytes = 0;
  let truncated = false;
  stream.once('limit', () => (truncated = true));
  const measure = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      sizeBytes += chunk.length;
      callback(null, chunk);
    },
  });
  try {
    await pipeline(stream, measure, createWriteStream(path, { flags: 'wx' }));
  } catch (error) {
    await rm(path, { force: true });
    throw error;
  }
  return {
    storedName,
    path,
    fileName: info.filename ?? '',
    contentType: info.mimeType,
    sizeBytes,
    sha256: hash.digest('hex'),
    truncated,
  };
}

export async function receiveUpload(
  req: IncomingMessage,
  ctx: UploadRouteContext,
): Promise<HandlerResult<ReceivedUpload>> {
  const contentType = headerValue(req, 'content-type') ?? '';
  if (!/^multipart\/form-data\s*;/i.test(contentType)) {
    await drainRequest(req);
    return refused(415, 'unsupported_media_type', 'expected multipart/form-data with a "file" part');
  }
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: req.headers,
      defParamCharset: 'utf8',
      limits: { fileSize: ctx.maxUploadBytes, fields: MAX_FIELDS, fieldSize: MAX_FIELD_BYTES },
    });
  } catch (error) {
    await drainRequest(req);
    return refused(400, 'bad_multipart', error instanceof Error ? error.message : String(error));
  }

  let filePart: Readable | undefined;
  let stored: Promise<StoredFile> | undefined;
  const fields: Record<string, string> = {};
  parser.on('file', (name, stream, info) => {
    if (name !== 'file' || stored !== undefined) {
      stream.resume();
      return;
    }
    filePart = stream;
    stored = storeFile(stream, info, ctx.uploadsDir);
    // Observed below; this keeps an early failure from being reported as unhandled meanwhile.
    stored.catch(() => undefined);
  });
  parser.on('field', (name, value) => (fields[name] = value));

  const parsed = new Promise<void>((resolve, reject) => {
    parser.once('close', resolve);
    parser.once('error', reject);
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new ClientGoneError());
    });
  });
  req.pipe(parser);
  try {
    await parsed;
  } catch (error) {
    req.unpipe(parser);
    filePart?.destroy(error instanceof Error ? error : new Error(String(error)));
    await stored?.catch(() => undefined);
    if (error instanceof ClientGoneError || req.destroyed) return { kind: 'gone' };
    await drainRequest(req);
    return refused(400, 'bad_multipart', error instanceof Error ? error.message : String(error));
  }

  if (stored === undefined) return refused(400, 'missing_file', 'the multipart part "file" is required');
  let file: StoredFile;
  try {
    file = await stored;
  } catch (error) {
    return refused(500, 'storage_failed', error instanceof Error ? error.message : String(error));
  }
  if (file.truncated) {
    await rm(file.path, { force: true });
    return refused(413, 'file_too_large', `the file is larger than ${ctx.maxUploadBytes} bytes`);
  }

  const url = ctx.fileUrl(file.storedName);
  const { status, urlField, underData } = ctx.answerShape;
  const fileFacts = { [urlField]: url, id: file.storedName, fileName: file.fileName, size: file.sizeBytes };
  const contentLength = headerValue(req, 'content-length');
  const record: ReceivedUpload = {
    idempotencyKey: ctx.idempotencyKey,
    fileName: file.fileName,
    contentType: file.contentType,
    sizeBytes: file.sizeBytes,
    sha256: file.sha256,
    storedName: file.storedName,
    path: file.path,
    url,
    fields,
    contentLength: contentLength === null ? null : Number(contentLength),
    chunked: /\bchunked\b/i.test(headerValue(req, 'transfer-encoding') ?? ''),
    receivedAt: new Date().toISOString(),
  };
  return {
    kind: 'stored',
    answer: { status, body: underData ? { success: true, data: fileFacts } : fileFacts },
    record,
  };
}
