/**
 * A Google Cloud Storage stand-in for tests: a loopback node:http server that answers the JSON
 * API requests the real `@google-cloud/storage` 7.x client sends, for one bucket. No emulator
 * of GCS can run here (the notes' §5: firebase-tools downloads a rules runtime from Google,
 * fake-gcs-server is Go), so this fake is kept faithful where a client could tell:
 *
 *   GET    /storage/v1/b/:bucket                      bucket resource
 *   GET    /storage/v1/b/:bucket/o?prefix=            object list
 *   GET    /storage/v1/b/:bucket/o/:object            object resource: size as a string, md5Hash,
 *                                                     crc32c (base64), generation
 *   GET    /storage/v1/b/:bucket/o/:object?alt=media  content, with content-length, x-goog-hash
 *                                                     (crc32c and md5), x-goog-stored-content-
 *                                                     encoding (the SDK validates only with it),
 *                                                     and Range `bytes=a-b|a-|-N` → 206
 *   DELETE /storage/v1/b/:bucket/o/:object
 *   POST   /upload/storage/v1/b/:bucket/o?uploadType=multipart|media|resumable
 *   PUT    /upload/storage/v1/b/:bucket/o?upload_id=  resumable session data (Content-Range)
 *   POST   /token                                     the service account's token_uri
 *
 * Missing objects and buckets answer GCS's JSON error `{ error: { code: 404, message, errors } }`.
 * Objects live in a temp directory and are streamed to and from disk, hashed on the way in, so a
 * 200 MB recording never sits in memory. With a custom `apiEndpoint` the SDK sends no
 * credentials; a request that does carry a bearer token must carry one this fake issued from
 * `/token` (for which the JWT must be signed with the credentials' private key).
 */
import { createHash, createVerify, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

export interface GcsTestServer {
  /** `http://127.0.0.1:<port>`: the SDK's `apiEndpoint`. */
  endpoint: string;
  bucket: string;
  /** A service-account key whose `token_uri` is this fake; its RSA key is real (2048 bits). */
  credentialsJson: string;
  /** Every request in arrival order: method, request target (path and query), Range header. */
  requests: { method: string; path: string; range?: string }[];
  close(): Promise<void>;
}

const DEFAULT_BUCKET = 'recordings';
const PROJECT_ID = 'test';
const CLIENT_EMAIL = `gcs-fake@${PROJECT_ID}.iam.gserviceaccount.com`;
const RSA_MODULUS_BITS = 2048;
/** Upper bound for JSON bodies and multipart metadata parts; media parts are streamed. */
const MAX_JSON_BODY_BYTES = 1024 * 1024;
const ACCESS_TOKEN_LIFETIME_SECONDS = 3600;
const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
const HTTP_RESUME_INCOMPLETE = 308;

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum GCS reports. */
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export class Crc32c {
  #crc = 0xffffffff;

  update(bytes: Uint8Array): this {
    let crc = this.#crc;
    for (const byte of bytes) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
    this.#crc = crc;
    return this;
  }

  value(): number {
    return (this.#crc ^ 0xffffffff) >>> 0;
  }

  /** Big-endian, base64: how GCS writes `crc32c` in metadata and `x-goog-hash`. */
  base64(): string {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(this.value());
    return bytes.toString('base64');
  }
}

interface StoredObject {
  name: string;
  path: string;
  size: number;
  md5Hash: string;
  crc32c: string;
  generation: string;
  contentType: string;
  contentDisposition: string | undefined;
  metadata: Record<string, string> | undefined;
  timeCreated: string;
}

interface ObjectFields {
  contentType?: string;
  contentDisposition?: string;
  metadata?: Record<string, string>;
}

class GcsError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

/** Streams bytes to a new file while hashing them; `finish` yields the object's digest. */
class HashingFile {
  readonly #out: WriteStream;
  readonly #md5 = createHash('md5');
  readonly #crc32c = new Crc32c();
  size = 0;

  constructor(readonly path: string) {
    this.#out = createWriteStream(path);
  }

  async write(bytes: Buffer): Promise<void> {
    if (bytes.length === 0) return;
    this.#md5.update(bytes);
    this.#crc32c.update(bytes);
    this.size += bytes.length;
    if (!this.#out.write(bytes)) await once(this.#out, 'drain');
  }

  async finish(): Promise<{ size: number; md5Hash: string; crc32c: string }> {
    await new Promise<void>((resolve, reject) => {
      this.#out.once('error', reject);
      this.#out.end(() => resolve());
    });
    return { size: this.size, md5Hash: this.#md5.digest('base64'), crc32c: this.#crc32c.base64() };
  }

  async discard(): Promise<void> {
    this.#out.destroy();
    await rm(this.path, { force: true });
  }
}

interface ResumableSession {
  name: string;
  fields: ObjectFields;
  file: HashingFile;
  done: StoredObject | undefined;
}

let serviceAccountKey: { privateKeyPem: string; publicKeyPem: string } | undefined;

/** One RSA key per process: generating it takes a while and every fake may share it. */
function sharedServiceAccountKey(): { privateKeyPem: string; publicKeyPem: string } {
  serviceAccountKey ??= (() => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: RSA_MODULUS_BITS });
    return {
      privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    };
  })();
  return serviceAccountKey;
}

async function readSmallBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > MAX_JSON_BODY_BYTES) throw new GcsError(413, 'Request body too large', 'uploadTooLarge');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function parseJsonObject(bytes: Buffer): Record<string, unknown> {
  if (bytes.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new GcsError(400, 'Parse Error', 'parseError');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new GcsError(400, 'Invalid JSON payload: expected an object', 'invalid');
  }
  return parsed as Record<string, unknown>;
}

function fieldsOf(resource: Record<string, unknown>, contentTypeHeader?: string): ObjectFields {
  const fields: ObjectFields = {};
  const contentType = typeof resource.contentType === 'string' ? resource.contentType : contentTypeHeader;
  if (contentType) fields.contentType = contentType;
  if (typeof resource.contentDisposition === 'string')
    fields.contentDisposition = resource.contentDisposition;
  if (typeof resource.metadata === 'object' && resource.metadata !== null) {
    fields.metadata = Object.fromEntries(
      Object.entries(resource.metadata as Record<string, unknown>).map(([k, v]) => [k, String(v)]),
    );
  }
  return fields;
}

/** `multipart/related; boundary=...` → the boundary (quotes removed). */
function boundaryOf(contentType: string | undefined): string {
  const match = /^multipart\/related\s*;.*boundary=("?)([^";]+)\1/i.exec(contentType ?? '');
  if (!match?.[2]) throw new GcsError(400, 'Invalid multipart request: no boundary', 'invalid');
  return match[2];
}

function headerValue(headerBlock: string, name: string): string | undefined {
  for (const line of headerBlock.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === name) return line.slice(colon + 1).trim();
  }
  return undefined;
}

/**
 * Reads a two-part multipart/related upload (JSON resource, then media) as teeny-request
 * frames it, streaming the media part into `file`. A CRLF is prepended so every delimiter,
 * the first included, reads `\r\n--boundary`.
 */
async function receiveMultipart(
  req: IncomingMessage,
  file: HashingFile,
): Promise<{ resource: Record<string, unknown>; mediaContentType: string | undefined }> {
  const delimiter = Buffer.from(`\r\n--${boundaryOf(req.headers['content-type'])}`);
  const headerEnd = Buffer.from('\r\n\r\n');
  let pending: Buffer = Buffer.from('\r\n');
  // Widened on purpose: `step` advances it, which control-flow narrowing cannot see.
  let phase = 'preamble' as
    'preamble' | 'resourceHeaders' | 'resource' | 'mediaHeaders' | 'media' | 'epilogue';
  let resourceBytes: Buffer | undefined;
  let mediaContentType: string | undefined;

  const step = async (): Promise<boolean> => {
    switch (phase) {
      case 'preamble': {
        const at = pending.indexOf(delimiter);
        if (at < 0) return false;
        pending = pending.subarray(at + delimiter.length);
        phase = 'resourceHeaders';
        return true;
      }
      case 'resourceHeaders':
      case 'mediaHeaders': {
        const at = pending.indexOf(headerEnd);
        if (at < 0) return false;
        const headers = pending.subarray(0, at).toString('latin1');
        if (phase === 'mediaHeaders') mediaContentType = headerValue(headers, 'content-type');
        pending = pending.subarray(at + headerEnd.length);
        phase = phase === 'resourceHeaders' ? 'resource' : 'media';
        return true;
      }
      case 'resource': {
        const at = pending.indexOf(delimiter);
        if (at < 0) return false;
        resourceBytes = pending.subarray(0, at);
        pending = pending.subarray(at + delimiter.length);
        phase = 'mediaHeaders';
        return true;
      }
      case 'media': {
        const at = pending.indexOf(delimiter);
        if (at >= 0) {
          await file.write(pending.subarray(0, at));
          pending = Buffer.alloc(0);
          phase = 'epilogue';
          return false;
        }
        // Keep enough of the tail to recognise a delimiter split across chunks.
        const safe = pending.length - (delimiter.length - 1);
        if (safe > 0) {
          await file.write(pending.subarray(0, safe));
          pending = pending.subarray(safe);
        }
        return false;
      }
      case 'epilogue':
        pending = Buffer.alloc(0);
        return false;
    }
  };

  for await (const chunk of req as AsyncIterable<Buffer>) {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (await step()) {
      /* advance through every part boundary this chunk completes */
    }
    if (phase !== 'media' && phase !== 'epilogue' && pending.length > MAX_JSON_BODY_BYTES) {
      throw new GcsError(400, 'Invalid multipart request: metadata part too large', 'invalid');
    }
  }
  if (phase !== 'epilogue' || resourceBytes === undefined) {
    throw new GcsError(400, 'Invalid multipart request: incomplete body', 'invalid');
  }
  return { resource: parseJsonObject(resourceBytes), mediaContentType };
}

async function receiveBody(req: IncomingMessage, file: HashingFile): Promise<void> {
  for await (const chunk of req as AsyncIterable<Buffer>) await file.write(chunk);
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-N` against `size` → inclusive range, or 'unsatisfiable'. */
function byteRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? '');
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/** `Content-Range` of a resumable PUT. */
function contentRange(
  header: string | undefined,
):
  | { kind: 'query'; total: number | undefined }
  | { kind: 'data'; start: number; end: number | undefined; total: number | undefined }
  | undefined {
  if (header === undefined) return undefined;
  const query = /^bytes \*\/(\d+|\*)$/.exec(header.trim());
  if (query) return { kind: 'query', total: query[1] === '*' ? undefined : Number(query[1]) };
  const data = /^bytes (\d+)-(\d+|\*)\/(\d+|\*)$/.exec(header.trim());
  if (!data) throw new GcsError(400, `Invalid Content-Range: ${header}`, 'invalid');
  return {
    kind: 'data',
    start: Number(data[1]),
    end: data[2] === '*' ? undefined : Number(data[2]),
    total: data[3] === '*' ? undefined : Number(data[3]),
  };
}

export async function startGcsFake(options: { bucket?: string } = {}): Promise<GcsTestServer> {
  const bucket = options.bucket ?? DEFAULT_BUCKET;
  const dir = await mkdtemp(join(tmpdir(), 'gcs-fake-'));
  await mkdir(join(dir, 'objects'));
  await mkdir(join(dir, 'incoming'));
  const objects = new Map<string, StoredObject>();
  const sessions = new Map<string, ResumableSession>();
  const issuedTokens = new Set<string>();
  const requests: GcsTestServer['requests'] = [];
  const key = sharedServiceAccountKey();
  const bucketCreated = new Date().toISOString();
  let lastGeneration = 0n;
  let endpoint = '';

  const nextGeneration = (): string => {
    // GCS generations are microsecond timestamps; keep them strictly increasing.
    const now = BigInt(Date.now()) * 1000n;
    lastGeneration = now > lastGeneration ? now : lastGeneration + 1n;
    return lastGeneration.toString();
  };

  const resourceOf = (object: StoredObject): Record<string, unknown> => {
    const encoded = encodeURIComponent(object.name);
    return {
      kind: 'storage#object',
      id: `${bucket}/${object.name}/${object.generation}`,
      selfLink: `${endpoint}/storage/v1/b/${bucket}/o/${encoded}`,
      mediaLink: `${endpoint}/download/storage/v1/b/${bucket}/o/${encoded}?generation=${object.generation}&alt=media`,
      name: object.name,
      bucket,
      generation: object.generation,
      metageneration: '1',
      contentType: object.contentType,
      storageClass: 'STANDARD',
      size: String(object.size),
      md5Hash: object.md5Hash,
      crc32c: object.crc32c,
      etag: Buffer.from(object.generation).toString('base64'),
      timeCreated: object.timeCreated,
      updated: object.timeCreated,
      timeStorageClassUpdated: object.timeCreated,
      ...(object.contentDisposition === undefined ? {} : { contentDisposition: object.contentDisposition }),
      ...(object.metadata === undefined ? {} : { metadata: object.metadata }),
    };
  };

  const newIncomingFile = () => new HashingFile(join(dir, 'incoming', randomUUID()));

  /** Moves a fully received upload into place as the object's new generation. */
  const commit = async (name: string, file: HashingFile, fields: ObjectFields): Promise<StoredObject> => {
    const digest = await file.finish();
    const generation = nextGeneration();
    const path = join(dir, 'objects', generation);
    await rename(file.path, path);
    const previous = objects.get(name);
    const object: StoredObject = {
      name,
      path,
      ...digest,
      generation,
      contentType: fields.contentType ?? DEFAULT_CONTENT_TYPE,
      contentDisposition: fields.contentDisposition,
      metadata: fields.metadata,
      timeCreated: new Date().toISOString(),
    };
    objects.set(name, object);
    if (previous) await rm(previous.path, { force: true });
    return object;
  };

  const requireBucket = (name: string) => {
    if (name !== bucket) throw new GcsError(404, 'The specified bucket does not exist.', 'notFound');
  };

  const requireObject = (name: string, generation: string | null): StoredObject => {
    const object = objects.get(name);
    if (!object || (generation !== null && generation !== object.generation)) {
      throw new GcsError(404, `No such object: ${bucket}/${name}`, 'notFound');
    }
    return object;
  };

  const sendJson = (
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': JSON_CONTENT_TYPE,
      'content-length': Buffer.byteLength(text),
      ...headers,
    });
    res.end(text);
  };

  const sendMedia = async (req: IncomingMessage, res: ServerResponse, object: StoredObject) => {
    const headers: Record<string, string | number> = {
      'content-type': object.contentType,
      'x-goog-hash': `crc32c=${object.crc32c},md5=${object.md5Hash}`,
      'x-goog-generation': object.generation,
      'x-goog-metageneration': '1',
      'x-goog-stored-content-encoding': 'identity',
      'x-goog-stored-content-length': object.size,
      'x-goog-storage-class': 'STANDARD',
      etag: `"${Buffer.from(object.md5Hash, 'base64').toString('hex')}"`,
      'last-modified': new Date(object.timeCreated).toUTCString(),
      'accept-ranges': 'bytes',
    };
    const range = byteRange(req.headers.range, object.size);
    if (range === 'unsatisfiable') {
      res.writeHead(416, { ...headers, 'content-range': `bytes */${object.size}`, 'content-length': 0 });
      res.end();
      return;
    }
    const { start, end } = range ?? { start: 0, end: object.size - 1 };
    const length = Math.max(0, end - start + 1);
    res.writeHead(range ? 206 : 200, {
      ...headers,
      'content-length': length,
      ...(range ? { 'content-range': `bytes ${start}-${end}/${object.size}` } : {}),
    });
    if (length === 0) {
      res.end();
      return;
    }
    // A client that stops reading (or a destroyed SDK stream) ends the pipeline early; fine.
    await pipeline(createReadStream(object.path, { start, end }), res).catch(() => undefined);
  };

  const token = async (req: IncomingMessage, res: ServerResponse) => {
    const form = new URLSearchParams((await readSmallBody(req)).toString('utf8'));
    const [header, payload, signature] = (form.get('assertion') ?? '').split('.');
    const verifier = createVerify('RSA-SHA256').update(`${header}.${payload}`);
    if (!header || !payload || !signature || !verifier.verify(key.publicKeyPem, signature, 'base64url')) {
      sendJson(res, 400, { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' });
      return;
    }
    const accessToken = `gcs-fake.${randomBytes(16).toString('hex')}`;
    issuedTokens.add(accessToken);
    sendJson(res, 200, {
      access_token: accessToken,
      expires_in: ACCESS_TOKEN_LIFETIME_SECONDS,
      token_type: 'Bearer',
    });
  };

  const upload = async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const uploadType = url.searchParams.get('uploadType');
    const queryName = url.searchParams.get('name');
    if (uploadType === 'resumable') {
      const resource = parseJsonObject(await readSmallBody(req));
      const name = queryName ?? (typeof resource.name === 'string' ? resource.name : undefined);
      if (!name) throw new GcsError(400, 'Required', 'required');
      const uploadContentType = req.headers['x-upload-content-type'];
      const id = randomUUID();
      sessions.set(id, {
        name,
        fields: fieldsOf(resource, typeof uploadContentType === 'string' ? uploadContentType : undefined),
        file: newIncomingFile(),
        done: undefined,
      });
      const location = new URL(`${endpoint}/upload/storage/v1/b/${bucket}/o`);
      location.searchParams.set('uploadType', 'resumable');
      location.searchParams.set('name', name);
      location.searchParams.set('upload_id', id);
      sendJson(res, 200, {}, { location: location.toString() });
      return;
    }
    const file = newIncomingFile();
    try {
      let name: string | undefined;
      let fields: ObjectFields;
      if (uploadType === 'multipart') {
        const { resource, mediaContentType } = await receiveMultipart(req, file);
        name = queryName ?? (typeof resource.name === 'string' ? resource.name : undefined);
        fields = fieldsOf(resource, mediaContentType);
      } else if (uploadType === 'media') {
        await receiveBody(req, file);
        name = queryName ?? undefined;
        fields = fieldsOf({}, req.headers['content-type']);
      } else {
        throw new GcsError(400, `Invalid upload type: ${uploadType}`, 'invalidParameter');
      }
      if (!name) throw new GcsError(400, 'Required', 'required');
      sendJson(res, 200, resourceOf(await commit(name, file, fields)));
    } catch (error) {
      await file.discard();
      throw error;
    }
  };

  const resumableData = async (req: IncomingMessage, res: ServerResponse, id: string) => {
    const session = sessions.get(id);
    if (!session) throw new GcsError(404, 'No such upload session', 'notFound');
    const range = contentRange(req.headers['content-range']);
    const incomplete = () => {
      const received = session.file.size;
      res.writeHead(HTTP_RESUME_INCOMPLETE, {
        'content-length': 0,
        ...(received > 0 ? { range: `bytes=0-${received - 1}` } : {}),
      });
      res.end();
    };
    if (session.done) {
      req.resume();
      sendJson(res, 200, resourceOf(session.done));
      return;
    }
    if (range?.kind === 'query') {
      req.resume();
      incomplete();
      return;
    }
    if (range && range.start !== session.file.size) {
      throw new GcsError(400, `Invalid request: expected offset ${session.file.size}`, 'invalid');
    }
    await receiveBody(req, session.file);
    const final =
      range === undefined ||
      range.end === undefined ||
      (range.total !== undefined && session.file.size >= range.total);
    if (!final) {
      incomplete();
      return;
    }
    if (range?.total !== undefined && session.file.size !== range.total) {
      throw new GcsError(
        400,
        `Invalid request: received ${session.file.size} of ${range.total} bytes`,
        'invalid',
      );
    }
    session.done = await commit(session.name, session.file, session.fields);
    sendJson(res, 200, resourceOf(session.done));
  };

  const route = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://gcs-fake');
    const method = req.method ?? 'GET';
    const authorization = req.headers.authorization;
    if (url.pathname === '/token' && method === 'POST') return token(req, res);
    if (authorization !== undefined && !issuedTokens.has(authorization.replace(/^Bearer\s+/i, ''))) {
      throw new GcsError(401, 'Invalid Credentials', 'authError');
    }
    const api = /^\/storage\/v1\/b\/([^/]+)(?:\/o(?:\/(.+))?)?$/.exec(url.pathname);
    const uploads = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
    if (uploads?.[1] !== undefined) {
      requireBucket(decodeURIComponent(uploads[1]));
      const uploadId = url.searchParams.get('upload_id');
      if (method === 'POST' && uploadId === null) return upload(req, res, url);
      if (method === 'PUT' && uploadId !== null) return resumableData(req, res, uploadId);
    }
    if (api?.[1] !== undefined) {
      requireBucket(decodeURIComponent(api[1]));
      const objectPart = api[2];
      const isObjectList = objectPart === undefined && url.pathname.endsWith('/o');
      if (objectPart === undefined && !isObjectList && method === 'GET') {
        return sendJson(res, 200, {
          kind: 'storage#bucket',
          id: bucket,
          name: bucket,
          projectNumber: '0',
          location: 'US',
          storageClass: 'STANDARD',
          timeCreated: bucketCreated,
          updated: bucketCreated,
          metageneration: '1',
        });
      }
      if (isObjectList && method === 'GET') {
        const prefix = url.searchParams.get('prefix') ?? '';
        const items = [...objects.values()]
          .filter((object) => object.name.startsWith(prefix))
          .sort((a, b) => (a.name < b.name ? -1 : 1))
          .map(resourceOf);
        return sendJson(res, 200, { kind: 'storage#objects', items });
      }
      if (objectPart !== undefined) {
        const object = requireObject(decodeURIComponent(objectPart), url.searchParams.get('generation'));
        if (method === 'GET' && url.searchParams.get('alt') === 'media') return sendMedia(req, res, object);
        if (method === 'GET') return sendJson(res, 200, resourceOf(object));
        if (method === 'DELETE') {
          objects.delete(object.name);
          await rm(object.path, { force: true });
          res.writeHead(204).end();
          return;
        }
      }
    }
    throw new GcsError(501, `not implemented by the GCS fake: ${method} ${url.pathname}`, 'notImplemented');
  };

  const server = createServer((req, res) => {
    requests.push({
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      ...(req.headers.range === undefined ? {} : { range: req.headers.range }),
    });
    route(req, res).catch((error: unknown) => {
      req.resume();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const status = error instanceof GcsError ? error.status : 500;
      const message = error instanceof Error ? error.message : String(error);
      const reason = error instanceof GcsError ? error.reason : 'backendError';
      sendJson(res, status, {
        error: { code: status, message, errors: [{ message, domain: 'global', reason }] },
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  endpoint = `http://127.0.0.1:${port}`;

  const credentialsJson = JSON.stringify({
    type: 'service_account',
    project_id: PROJECT_ID,
    private_key_id: randomBytes(20).toString('hex'),
    private_key: key.privateKeyPem,
    client_email: CLIENT_EMAIL,
    client_id: '100000000000000000000',
    auth_uri: `${endpoint}/auth`,
    token_uri: `${endpoint}/token`,
    auth_provider_x509_cert_url: `${endpoint}/certs`,
    client_x509_cert_url: `${endpoint}/certs/${encodeURIComponent(CLIENT_EMAIL)}`,
    universe_domain: 'googleapis.com',
  });

  let closing: Promise<void> | undefined;
  return {
    endpoint,
    bucket,
    credentialsJson,
    requests,
    close() {
      closing ??= (async () => {
        for (const session of sessions.values()) if (!session.done) await session.file.discard();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await rm(dir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}
