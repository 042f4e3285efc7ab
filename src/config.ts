/**
 * callsync's configuration: parsed once, at start-up, from the environment, with zod.
 *
 * Policy: a bad value stops start-up before anything listens, with one line that names the
 * variable and what was wrong (`ConfigError`); secrets are never echoed in that line. The
 * variables and defaults are those of the README's environment table; the ones
 * marked "tuning" are ours, with defaults sized for the 30-second delivery target.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
import {
  DELIVERY_TARGET_SECONDS_DEFAULT,
  EGRESS_DEADLINE_SECONDS_DEFAULT,
  MAX_CALL_DURATION_SECONDS_DEFAULT,
} from './machines/defaults.ts';
import type { EgressStorageSettings, StorageSettings } from './services/storage/storage-settings.ts';

/**
 * What is wrong with the environment: every problem at once, one line each naming the variable
 * and what it expects, so a person fixes them in one go. Never holds a secret's value.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'CONFIG_INVALID';
  /** `VARIABLE what is wrong`, one per variable. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(
      problems.length === 1
        ? `invalid configuration: ${problems[0]}`
        : [`invalid configuration (${problems.length} problems):`, ...problems.map((p) => `  ${p}`)].join(
            '\n',
          ),
    );
    this.problems = problems;
  }
}

/** Problems found so far, by variable (the first problem of each). */
type Problems = Map<string, string>;

const httpUrl = (protocols: readonly string[]) =>
  z
    .string()
    .trim()
    .refine(
      (value) => {
        try {
          return protocols.includes(new URL(value).protocol);
        } catch {
          return false;
        }
      },
      `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
    );

const positiveSeconds = z.coerce
  .number({ error: 'must be a number of seconds' })
  .positive('must be a positive number of seconds')
  .finite('must be a positive number of seconds');
const optionalSecret = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === '' ? undefined : value));

const storeUrl = z
  .string()
  .trim()
  .refine(
    (value) =>
      value.startsWith('sqlite:') || value.startsWith('postgres://') || value.startsWith('postgresql://'),
    'must be sqlite:<path> or postgres://…',
  )
  .refine((value) => value !== 'sqlite:', 'sqlite: needs a path, e.g. sqlite:./data/callsync.db');

const flag = z
  .string()
  .trim()
  .toLowerCase()
  .refine((value) => ['true', 'false', '1', '0', 'yes', 'no'].includes(value), 'must be true or false')
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const optionalText = z.string().trim().min(1).optional();

const envSchema = z.object({
  LIVEKIT_URL: httpUrl(['http:', 'https:', 'ws:', 'wss:']),
  LIVEKIT_API_KEY: z.string().trim().min(1, 'is required'),
  LIVEKIT_API_SECRET: z.string().min(1, 'is required'),
  CRM_BASE_URL: httpUrl(['http:', 'https:']).transform((value) => value.replace(/\/+$/, '')),
  CRM_API_KEY: optionalSecret,
  CALLSYNC_HOST: z.string().trim().min(1).default('127.0.0.1'),
  CALLSYNC_PORT: z.coerce
    .number({ error: 'must be a port number (0 to 65535)' })
    .int('must be a port number (0 to 65535)')
    .min(0, 'must be a port number (0 to 65535)')
    .max(65_535, 'must be a port number (0 to 65535)')
    .default(8080),
  CALLSYNC_STORE: storeUrl.default('sqlite:./data/callsync.db'),
  CALLSYNC_RECORDINGS_DIR: z.string().trim().min(1).default('./recordings'),
  CALLSYNC_EGRESS_STORAGE: z
    .enum(['local', 's3', 'gcs', 'azure'], { error: 'must be local, s3, gcs or azure' })
    .default('local'),
  CALLSYNC_EGRESS_SEND_STORAGE: flag.default(true),
  CALLSYNC_S3_BUCKET: optionalText,
  CALLSYNC_S3_REGION: z.string().trim().min(1).default('us-east-1'),
  CALLSYNC_S3_ENDPOINT: httpUrl(['http:', 'https:']).optional(),
  CALLSYNC_S3_FORCE_PATH_STYLE: flag.default(false),
  CALLSYNC_S3_ACCESS_KEY_ID: optionalSecret,
  CALLSYNC_S3_SECRET_ACCESS_KEY: optionalSecret,
  CALLSYNC_S3_SESSION_TOKEN: optionalSecret,
  CALLSYNC_GCS_BUCKET: optionalText,
  CALLSYNC_GCS_CREDENTIALS_FILE: optionalText,
  CALLSYNC_GCS_ENDPOINT: httpUrl(['http:', 'https:']).optional(),
  CALLSYNC_AZURE_ACCOUNT_NAME: optionalText,
  CALLSYNC_AZURE_ACCOUNT_KEY: optionalSecret,
  CALLSYNC_AZURE_CONTAINER: optionalText,
  CALLSYNC_AZURE_BLOB_ENDPOINT: httpUrl(['http:', 'https:']).optional(),
  CALLSYNC_INGEST_TOKEN: optionalSecret,
  CALLSYNC_ADMIN_TOKEN: optionalSecret,
  CALLSYNC_UPLOAD_TARGET_SECONDS: positiveSeconds.default(DELIVERY_TARGET_SECONDS_DEFAULT),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // tuning
  /** A call whose agent never says `end` (and no room_finished arrives) is ended after this. */
  CALLSYNC_MAX_CALL_DURATION_SECONDS: positiveSeconds.default(MAX_CALL_DURATION_SECONDS_DEFAULT),
  /** How long after call end to wait for the egress's final status before delivering without audio. */
  CALLSYNC_EGRESS_DEADLINE_SECONDS: positiveSeconds.default(EGRESS_DEADLINE_SECONDS_DEFAULT),
  /** On SIGTERM, how long in-flight steps may run before the rest is left persisted for the next start. */
  CALLSYNC_DRAIN_TIMEOUT_SECONDS: positiveSeconds.default(20),
  /** Egress filepath template, relative to the egress's storage (the shared recordings volume). */
  CALLSYNC_RECORDING_FILEPATH: z.string().trim().min(1).default('callsync/{room_name}-{time}.ogg'),
  /** PostgreSQL: deadline for each connection attempt and query before the store counts as unavailable. */
  CALLSYNC_STORE_TIMEOUT_MS: z.coerce
    .number({ error: 'must be a whole number of milliseconds' })
    .int('must be a whole number of milliseconds')
    .positive('must be a positive number of milliseconds')
    .default(5_000),
  /** Calls that finished `done` this many days ago are pruned from the store (failed ones stay). */
  CALLSYNC_RETENTION_DAYS: z.coerce
    .number({ error: 'must be a number of days' })
    .positive('must be a positive number of days')
    .finite('must be a positive number of days')
    .default(30),
  /** HTTP connections served at once; by default half the open-files limit (`http/connection-cap.ts`). */
  CALLSYNC_MAX_CONNECTIONS: z.coerce
    .number({ error: 'must be a whole number of connections' })
    .int('must be a whole number of connections')
    .positive('must be a positive number of connections')
    .optional(),
  // a fleet (PostgreSQL)
  /** This supervisor's name in a fleet: logs, metrics and call ownership. */
  CALLSYNC_INSTANCE_ID: z
    .string()
    .trim()
    .regex(/^[\w.:@-]{1,128}$/, 'must be 1–128 letters, digits or . _ : @ -')
    .optional(),
  /** How long a supervisor that stopped renewing keeps its calls before another takes them over. */
  CALLSYNC_LEASE_SECONDS: positiveSeconds
    .min(1, 'must be at least 1 second (renewals run every fifth of it)')
    .max(300, 'must be at most 300 seconds (a dead instance keeps its calls that long)')
    .default(5),
});

export interface Config {
  liveKit: { url: string; apiKey: string; apiSecret: string };
  crm: { baseUrl: string; apiKey: string | undefined };
  http: {
    host: string;
    port: number;
    ingestToken: string | undefined;
    adminToken: string | undefined;
    /** Unset: half the open-files limit. */
    maxConnections: number | undefined;
  };
  store: { url: string; timeoutMs: number };
  retentionDays: number;
  /** Used when the store is PostgreSQL: several supervisors may share it. */
  fleet: { instanceId: string; leaseSeconds: number };
  recordingsDir: string;
  /** Where the egress writes recordings and callsync reads them back. Holds secrets: never log it. */
  egressStorage: EgressStorageSettings;
  recordingFilepath: string;
  uploadTargetSeconds: number;
  maxCallDurationSeconds: number;
  egressDeadlineSeconds: number;
  drainTimeoutSeconds: number;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
}

/**
 * Parses the environment. Throws a `ConfigError` listing every problem (each variable is parsed
 * on its own, so one bad value does not hide the next).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings count as unset, as shells and .env files produce them for "no value".
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value !== ''),
  );
  const problems: Problems = new Map();
  const values: Record<string, unknown> = {};
  for (const [variable, schema] of Object.entries(envSchema.shape)) {
    const result = (schema as z.ZodType).safeParse(present[variable]);
    if (result.success) {
      values[variable] = result.data;
    } else {
      const issue = result.error.issues[0];
      const missing = present[variable] === undefined && issue?.code === 'invalid_type';
      problems.set(variable, missing ? 'is required' : (issue?.message ?? 'is invalid'));
    }
  }
  const e = values as Env;
  const storage = storageSettingsOf(e, problems);
  if (problems.size > 0) {
    throw new ConfigError([...problems].map(([variable, message]) => `${variable} ${message}`));
  }
  return {
    egressStorage: { storage, sendToEgress: e.CALLSYNC_EGRESS_SEND_STORAGE },
    liveKit: { url: e.LIVEKIT_URL, apiKey: e.LIVEKIT_API_KEY, apiSecret: e.LIVEKIT_API_SECRET },
    crm: { baseUrl: e.CRM_BASE_URL, apiKey: e.CRM_API_KEY },
    http: {
      host: e.CALLSYNC_HOST,
      port: e.CALLSYNC_PORT,
      ingestToken: e.CALLSYNC_INGEST_TOKEN,
      adminToken: e.CALLSYNC_ADMIN_TOKEN,
      maxConnections: e.CALLSYNC_MAX_CONNECTIONS,
    },
    store: { url: e.CALLSYNC_STORE, timeoutMs: e.CALLSYNC_STORE_TIMEOUT_MS },
    retentionDays: e.CALLSYNC_RETENTION_DAYS,
    fleet: {
      instanceId: e.CALLSYNC_INSTANCE_ID ?? `${hostname()}-${process.pid}`,
      leaseSeconds: e.CALLSYNC_LEASE_SECONDS,
    },
    recordingsDir: e.CALLSYNC_RECORDINGS_DIR,
    recordingFilepath: e.CALLSYNC_RECORDING_FILEPATH,
    uploadTargetSeconds: e.CALLSYNC_UPLOAD_TARGET_SECONDS,
    maxCallDurationSeconds: e.CALLSYNC_MAX_CALL_DURATION_SECONDS,
    egressDeadlineSeconds: e.CALLSYNC_EGRESS_DEADLINE_SECONDS,
    drainTimeoutSeconds: e.CALLSYNC_DRAIN_TIMEOUT_SECONDS,
    logLevel: e.LOG_LEVEL,
  };
}

type Env = z.infer<typeof envSchema>;

/** The value, or a problem noted (unless the variable already has one) and a placeholder. */
function required<T>(problems: Problems, value: T | undefined, variable: string, why: string): T {
  if (value === undefined && !problems.has(variable)) problems.set(variable, `is required ${why}`);
  return value as T;
}

/** Reads a service-account key file; its content is never echoed, only what is wrong with it. */
function gcsCredentialsOf(problems: Problems, path: string | undefined): string {
  const variable = 'CALLSYNC_GCS_CREDENTIALS_FILE';
  if (path === undefined) return '';
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    problems.set(variable, `${path} cannot be read (${code})`);
    return '';
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    problems.set(variable, `${path} is not JSON (a service-account key file)`);
    return '';
  }
  const key = parsed as { client_email?: unknown; private_key?: unknown } | null;
  if (typeof key?.client_email !== 'string' || typeof key.private_key !== 'string') {
    problems.set(variable, `${path} is not a service-account key (client_email and private_key missing)`);
    return '';
  }
  return text;
}

function storageSettingsOf(e: Env, problems: Problems): StorageSettings {
  const need = <T>(value: T | undefined, variable: string, why: string) =>
    required(problems, value, variable, why);
  switch (e.CALLSYNC_EGRESS_STORAGE) {
    case 'local':
      return { kind: 'local', recordingsDir: e.CALLSYNC_RECORDINGS_DIR };
    case 's3': {
      const forS3 = 'when CALLSYNC_EGRESS_STORAGE is s3';
      const keyId = e.CALLSYNC_S3_ACCESS_KEY_ID;
      const secret = e.CALLSYNC_S3_SECRET_ACCESS_KEY;
      // The egress needs keys in its request; callsync alone may use the SDK's default chain.
      const why = e.CALLSYNC_EGRESS_SEND_STORAGE
        ? 'when the egress request carries the storage (CALLSYNC_EGRESS_SEND_STORAGE=true)'
        : 'with CALLSYNC_S3_ACCESS_KEY_ID';
      if (e.CALLSYNC_EGRESS_SEND_STORAGE || keyId !== undefined || secret !== undefined) {
        need(keyId, 'CALLSYNC_S3_ACCESS_KEY_ID', why);
        need(secret, 'CALLSYNC_S3_SECRET_ACCESS_KEY', why);
      }
      return {
        kind: 's3',
        bucket: need(e.CALLSYNC_S3_BUCKET, 'CALLSYNC_S3_BUCKET', forS3),
        region: e.CALLSYNC_S3_REGION,
        endpoint: e.CALLSYNC_S3_ENDPOINT?.replace(/\/+$/, ''),
        forcePathStyle: e.CALLSYNC_S3_FORCE_PATH_STYLE,
        accessKeyId: keyId,
        secretAccessKey: secret,
        sessionToken: e.CALLSYNC_S3_SESSION_TOKEN,
      };
    }
    case 'gcs': {
      const forGcs = 'when CALLSYNC_EGRESS_STORAGE is gcs';
      return {
        kind: 'gcs',
        bucket: need(e.CALLSYNC_GCS_BUCKET, 'CALLSYNC_GCS_BUCKET', forGcs),
        credentialsJson: gcsCredentialsOf(
          problems,
          need(e.CALLSYNC_GCS_CREDENTIALS_FILE, 'CALLSYNC_GCS_CREDENTIALS_FILE', forGcs),
        ),
        endpoint: e.CALLSYNC_GCS_ENDPOINT?.replace(/\/+$/, ''),
      };
    }
    case 'azure': {
      const forAzure = 'when CALLSYNC_EGRESS_STORAGE is azure';
      const accountName = need(e.CALLSYNC_AZURE_ACCOUNT_NAME, 'CALLSYNC_AZURE_ACCOUNT_NAME', forAzure);
      return {
        kind: 'azure',
        accountName,
        accountKey: need(e.CALLSYNC_AZURE_ACCOUNT_KEY, 'CALLSYNC_AZURE_ACCOUNT_KEY', forAzure),
        container: need(e.CALLSYNC_AZURE_CONTAINER, 'CALLSYNC_AZURE_CONTAINER', forAzure),
        blobEndpoint: (
          e.CALLSYNC_AZURE_BLOB_ENDPOINT ?? `https://${accountName}.blob.core.windows.net`
        ).replace(/\/+$/, ''),
      };
    }
  }
}
