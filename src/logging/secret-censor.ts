/**
 * Secret censoring for log lines: a value under a secret-bearing key (`SECRET_KEYS`, any case) is
 * written as `[redacted]` at any depth, wherever pino would write it. The walk follows what pino
 * writes of each value: through `JSON.stringify` (own enumerable keys, or what `toJSON` returns,
 * applied once), or, for an error under the line's `err` key, through pino's error serializer
 * (enumerable keys, own and inherited, errors among them serialized the same way, and an
 * AggregateError's `errors`).
 *
 * Policy: copy on write. A line that holds no secret passes through as it is, nothing copied;
 * the object a caller logged is never changed, and a copy is made only along the path to a
 * secret: a plain object or array where `JSON.stringify` would write one, an object of the same
 * prototype for an error, so it stays an error for pino's serializer. Reason: pino's own wildcard
 * redaction (`*.token`, `*.*.token`) cloned every line's objects for every path, and in a
 * 1,000-call burst that was 30 % of all the bytes callsync allocated.
 *
 * Bounds, so no value can hide a secret or stall the loop: an object met again on its own path is
 * written `[Circular]`, one met again elsewhere is walked once; deeper than
 * `LOG_CENSOR_MAX_DEPTH` levels it is written `[too deep]`; past `LOG_CENSOR_MAX_OBJECTS` objects
 * in one line, `[too large]`; a property whose getter (or `toJSON`) throws is written
 * `[unreadable]`. A request or reply under `req` or `res` is left to pino's serializers, which
 * write its method, URL, addresses and status only. Typed arrays and buffers are written as
 * their bytes.
 */
import { IncomingMessage, ServerResponse } from 'node:http';

/** Keys whose values never reach a log line, compared in lower case. */
export const SECRET_KEYS: readonly string[] = [
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'idempotency-key',
  'x-api-key',
  'x-auth-token',
  'x-amz-security-token',
  'secret',
  'apisecret',
  'api_secret',
  'apikey',
  'api_key',
  'token',
  'ingesttoken',
  'admintoken',
  'sessiontoken',
  'password',
  'secretaccesskey',
  'accountkey',
  'private_key',
  'privatekey',
  'credentials',
  'livekit_api_secret',
  'crm_api_key',
  'callsync_ingest_token',
  'callsync_admin_token',
  'callsync_s3_secret_access_key',
  'callsync_s3_session_token',
  'callsync_azure_account_key',
];

export const CENSORED = '[redacted]';
export const CIRCULAR = '[Circular]';
export const TOO_DEEP = '[too deep]';
export const TOO_LARGE = '[too large]';
export const UNREADABLE = '[unreadable]';
/** Levels of nesting below a line's own keys that are walked (a line's keys are level 1). */
export const LOG_CENSOR_MAX_DEPTH = 12;
/** Objects walked in one line; a request's whole object graph is a few thousand. */
export const LOG_CENSOR_MAX_OBJECTS = 10_000;
/** The line key pino hands to its error serializer (pino's `errorKey`). */
const ERROR_KEY = 'err';

const SECRET = new Set(SECRET_KEYS);

function isSecretKey(key: string): boolean {
  return SECRET.has(key) || SECRET.has(key.toLowerCase());
}

/** What one line's walk has seen. */
interface Walk {
  objects: number;
  /** The object the walk began at, and those below it on the current path (made on first use). */
  root: object;
  path: object[] | undefined;
  /** Objects with objects inside, walked to the end, with what they became (themselves if unchanged). */
  done: Map<object, unknown> | undefined;
}

/** How pino writes a value: `JSON.stringify`, or its error serializer (`err`, and errors within). */
type Writer = 'json' | 'error';
/** How the value under `key` is written; undefined: left to a serializer, not walked. */
type WriterOf = (key: string, value: unknown) => Writer | undefined;

/** A getter or `toJSON` threw: written as `UNREADABLE`. */
const THREW: unique symbol = Symbol('threw');

const hasOwn = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);

/** A line's keys: `err` through pino's error serializer, a request or reply through its own. */
const lineWriter: WriterOf = (key, value) => {
  if (key === ERROR_KEY && isErrorLike(value)) return 'error';
  if ((key === 'req' || key === 'res') && isHttpMessage(value)) return undefined;
  return 'json';
};
const jsonWriter: WriterOf = () => 'json';
const errorWriter: WriterOf = (_key, value) => (isErrorLike(value) ? 'error' : 'json');

/**
 * A line's merge object (or a child's bindings) as pino writes it, its own keys one by one:
 * itself when it holds nothing to censor, else a copy.
 */
export function censorLine(line: Record<string, unknown>): Record<string, unknown> {
  const walk: Walk = { objects: 0, root: line, path: undefined, done: undefined };
  return censorKeys(line, line, 0, walk, lineWriter) as Record<string, unknown>;
}

/** Any value as `JSON.stringify` writes it: itself when it holds nothing to censor, else a copy. */
export function censorSecrets<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  const walk: Walk = { objects: 1, root: value, path: undefined, done: undefined };
  return censorJson(value, 0, walk) as T;
}

function censorValue(value: unknown, depth: number, writer: Writer, walk: Walk): unknown {
  if (value === null || typeof value !== 'object') return value;
  const known = walk.done?.get(value);
  if (known !== undefined) return known;
  if (value === walk.root || walk.path?.includes(value)) return CIRCULAR;
  if (depth > LOG_CENSOR_MAX_DEPTH) return TOO_DEEP;
  if (++walk.objects > LOG_CENSOR_MAX_OBJECTS) return TOO_LARGE;
  const objectsBefore = walk.objects;
  (walk.path ??= []).push(value);
  let censored: unknown;
  try {
    censored = writer === 'error' ? censorError(value, depth, walk) : censorJson(value, depth, walk);
  } finally {
    walk.path.pop();
  }
  // Walked once however often it is met; an object of plain values is cheaper walked again.
  if (walk.objects > objectsBefore) (walk.done ??= new Map()).set(value, censored);
  return censored;
}

/** As `JSON.stringify` writes an object: what its `toJSON` returns, once, else its own keys. */
function censorJson(value: object, depth: number, walk: Walk): unknown {
  if (ArrayBuffer.isView(value)) return value;
  let source: object = value;
  const toJSON = read(value, 'toJSON');
  if (toJSON === THREW) return UNREADABLE;
  if (typeof toJSON === 'function') {
    let json: unknown;
    try {
      json = (toJSON as (key: string) => unknown).call(value, '');
    } catch {
      return UNREADABLE;
    }
    if (json === null || typeof json !== 'object') return value;
    source = json;
  }
  if (Array.isArray(source)) return censorArray(value, source, depth, walk, jsonWriter);
  return censorKeys(value, source, depth, walk, jsonWriter);
}

/**
 * `source`'s own enumerable keys, censored: `original` when nothing changed (`source` is
 * `original`, or what its `toJSON` returned), else a plain object with every key.
 */
function censorKeys(
  original: object,
  source: object,
  depth: number,
  walk: Walk,
  writerOf: WriterOf,
): unknown {
  let copy: Record<string, unknown> | undefined;
  for (const key in source) {
    if (!hasOwn(source, key)) continue;
    const item = read(source, key);
    const censored = censorItem(key, item, depth, walk, writerOf);
    if (copy === undefined) {
      if (censored === item) continue;
      copy = {};
      for (const earlier in source) {
        if (earlier === key) break;
        if (hasOwn(source, earlier)) copy[earlier] = outputOf(read(source, earlier));
      }
    }
    copy[key] = censored;
  }
  return copy ?? original;
}

function censorArray(
  original: object,
  array: readonly unknown[],
  depth: number,
  walk: Walk,
  writerOf: WriterOf,
): unknown {
  let copy: unknown[] | undefined;
  for (let index = 0; index < array.length; index++) {
    const key = String(index);
    const item = read(array, key);
    const censored = censorItem(key, item, depth, walk, writerOf, false);
    if (censored === item) continue;
    copy ??= array.slice();
    copy[index] = censored;
  }
  return copy ?? original;
}

/** An error as pino's serializer writes it: its enumerable keys, own and inherited, and `errors`. */
function censorError(error: object, depth: number, walk: Walk): unknown {
  // pino's serializer tags each error it writes, which throws on a frozen one: such an error is copied.
  let copy = Object.isExtensible(error) ? undefined : errorCopyOf(error);
  for (const key in error) {
    const item = read(error, key);
    const censored = censorItem(key, item, depth, walk, errorWriter);
    if (censored === item) continue;
    copy ??= errorCopyOf(error);
    Object.defineProperty(copy, key, {
      value: censored,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  const errors = error instanceof Error ? read(error, 'errors') : undefined;
  if (Array.isArray(errors)) {
    // pino's serializer writes each of them as an error, and anything else as it is.
    const censored = censorArray(errors, errors, depth, walk, errorWriter);
    if (censored !== errors) {
      copy ??= errorCopyOf(error);
      Object.defineProperty(copy, 'errors', {
        value: censored,
        enumerable: false,
        writable: true,
        configurable: true,
      });
    }
  }
  return copy ?? error;
}

/** One property's value as written: censored by its key, walked by its writer, or unreadable. */
function censorItem(
  key: string,
  item: unknown,
  depth: number,
  walk: Walk,
  writerOf: WriterOf,
  byKey = true,
): unknown {
  if (item === THREW) return UNREADABLE;
  if (byKey && isSecretKey(key)) return CENSORED;
  const writer = writerOf(key, item);
  return writer === undefined ? item : censorValue(item, depth + 1, writer, walk);
}

const outputOf = (item: unknown): unknown => (item === THREW ? UNREADABLE : item);

/**
 * A shallow copy of an error with the same prototype and properties, each configurable (a frozen
 * error's copy can still be censored), its message and stack as values: since Node 21 `stack` is
 * an accessor that reads nothing off another object.
 */
function errorCopyOf(error: object): Record<string, unknown> {
  const descriptors = Object.getOwnPropertyDescriptors(error) as Record<PropertyKey, PropertyDescriptor>;
  for (const key of Reflect.ownKeys(descriptors)) {
    const descriptor = descriptors[key]!;
    descriptor.configurable = true;
    if ('value' in descriptor) descriptor.writable = true;
  }
  for (const key of ['message', 'stack'] as const) {
    const text = read(error, key);
    if (typeof text === 'string') {
      descriptors[key] = { value: text, enumerable: false, writable: true, configurable: true };
    }
  }
  return Object.create(Object.getPrototypeOf(error) as object | null, descriptors) as Record<string, unknown>;
}

function read(value: object, key: string): unknown {
  try {
    return (value as Record<string, unknown>)[key];
  } catch {
    return THREW;
  }
}

/** What pino's error serializer treats as an error. */
function isErrorLike(value: unknown): value is object {
  return typeof value === 'object' && value !== null && typeof read(value, 'message') === 'string';
}

function isHttpMessage(value: unknown): boolean {
  if (value instanceof IncomingMessage || value instanceof ServerResponse) return true;
  // fastify's request and reply wrap node's (`raw`).
  const raw = typeof value === 'object' && value !== null ? read(value, 'raw') : undefined;
  return raw instanceof IncomingMessage || raw instanceof ServerResponse;
}
