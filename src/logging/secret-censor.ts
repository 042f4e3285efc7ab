/**
 * Secret censoring for log lines: a value under a secret-bearing key (`SECRET_KEYS`, any case) is
 * written as `[redacted]` at any depth: in plain objects, arrays, class instances, what an object's
 * `toJSON` returns, and errors (their enumerable properties and an AggregateError's `errors`,
 * which is what pino's error serializer writes of them).
 *
 * Policy: copy on write. A line that holds no secret passes through as it is and costs a walk of
 * its keys, nothing allocated; the object a caller logged is never changed, a copy is made only
 * along the path to a secret, with the original's prototype and properties, so an error stays an
 * error for pino's serializer. Reason: pino's own wildcard redaction (`*.token`, `*.*.token`)
 * cloned every line's objects for every path, and in a 1,000-call burst that was 30 % of all the
 * bytes callsync allocated. An object nested deeper than `LOG_CENSOR_MAX_DEPTH` is written as
 * `[too deep]`: a cyclic or pathological value can neither hide a secret nor stall the loop.
 */

/** Keys whose values never reach a log line, compared in lower case. */
export const SECRET_KEYS: readonly string[] = [
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'idempotency-key',
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
export const TOO_DEEP = '[too deep]';
/** Levels of nesting below a line's own keys that are walked (a line's keys are level 1). */
export const LOG_CENSOR_MAX_DEPTH = 12;

const SECRET = new Set(SECRET_KEYS);

export function isSecretKey(key: string): boolean {
  return SECRET.has(key) || SECRET.has(key.toLowerCase());
}

/** `value` itself when it holds no secret (nor anything too deep), else a censored copy. */
export function censorSecrets<T>(value: T): T {
  return censor(value, 0) as T;
}

function censor(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth > LOG_CENSOR_MAX_DEPTH) return TOO_DEEP;
  if (Array.isArray(value)) return censorArray(value, depth);
  if (ArrayBuffer.isView(value) || value instanceof Date || value instanceof Map || value instanceof Set) {
    return value; // no keys of their own that pino writes
  }
  if (!(value instanceof Error)) {
    // JSON.stringify writes what `toJSON` returns (a protobuf message, a URL), not the object's keys.
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      const json: unknown = toJSON.call(value, '');
      const censored = censor(json, depth);
      return censored === json ? value : censored;
    }
  }
  let copy: object | undefined;
  // for…in, as pino's error serializer walks an error: own and inherited enumerable keys.
  for (const key in value) {
    const item = (value as Record<string, unknown>)[key];
    const censored = isSecretKey(key) ? CENSORED : censor(item, depth + 1);
    if (censored === item) continue;
    copy ??= copyOf(value);
    Object.defineProperty(copy, key, {
      value: censored,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  if (value instanceof Error && Array.isArray((value as AggregateError).errors)) {
    const errors = (value as AggregateError).errors;
    const censored = censorArray(errors, depth);
    if (censored !== errors) {
      copy ??= copyOf(value);
      Object.defineProperty(copy, 'errors', {
        value: censored,
        enumerable: false,
        writable: true,
        configurable: true,
      });
    }
  }
  return copy ?? value;
}

function censorArray(array: readonly unknown[], depth: number): readonly unknown[] {
  let copy: unknown[] | undefined;
  for (let index = 0; index < array.length; index++) {
    const item = array[index];
    const censored = censor(item, depth + 1);
    if (censored === item) continue;
    copy ??= array.slice();
    copy[index] = censored;
  }
  return copy ?? array;
}

/**
 * A shallow copy with the same prototype and properties (an error keeps its message and stack),
 * each one configurable, so a frozen original's copy can still be censored.
 */
function copyOf(value: object): object {
  const descriptors = Object.getOwnPropertyDescriptors(value) as Record<PropertyKey, PropertyDescriptor>;
  for (const key of Reflect.ownKeys(descriptors)) {
    const descriptor = descriptors[key]!;
    descriptor.configurable = true;
    if ('value' in descriptor) descriptor.writable = true;
  }
  return Object.create(Object.getPrototypeOf(value) as object | null, descriptors) as object;
}
