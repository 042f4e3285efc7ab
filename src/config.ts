/**
 * callsync's configuration: parsed once, at start-up, from the environment, with zod.
 *
 * Policy: a bad value stops start-up before anything listens, with one line that names the
 * variable and what was wrong (`ConfigError`); secrets are never echoed in that line. The
 * variables and defaults are those of the public contract (shared/api-contract.md); the ones
 * marked "tuning" are ours, with defaults sized for the 30-second delivery target.
 */
import { z } from 'zod';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'CONFIG_INVALID';
}

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

const positiveSeconds = z.coerce.number().positive().finite();
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
  );

const envSchema = z.object({
  LIVEKIT_URL: httpUrl(['http:', 'https:', 'ws:', 'wss:']),
  LIVEKIT_API_KEY: z.string().trim().min(1, 'is required'),
  LIVEKIT_API_SECRET: z.string().min(1, 'is required'),
  CRM_BASE_URL: httpUrl(['http:', 'https:']).transform((value) => value.replace(/\/+$/, '')),
  CRM_API_KEY: optionalSecret,
  CALLSYNC_HOST: z.string().trim().min(1).default('127.0.0.1'),
  CALLSYNC_PORT: z.coerce.number().int().min(0).max(65_535).default(8080),
  CALLSYNC_STORE: storeUrl.default('sqlite:./data/callsync.db'),
  CALLSYNC_RECORDINGS_DIR: z.string().trim().min(1).default('./recordings'),
  CALLSYNC_INGEST_TOKEN: optionalSecret,
  CALLSYNC_UPLOAD_TARGET_SECONDS: positiveSeconds.default(30),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // tuning
  /** A call whose agent never says `end` (and no room_finished arrives) is ended after this. */
  CALLSYNC_MAX_CALL_DURATION_SECONDS: positiveSeconds.default(4 * 60 * 60),
  /** How long after call end to wait for the egress's final status before delivering without audio. */
  CALLSYNC_EGRESS_DEADLINE_SECONDS: positiveSeconds.default(120),
  /** On SIGTERM, how long in-flight steps may run before the rest is left persisted for the next start. */
  CALLSYNC_DRAIN_TIMEOUT_SECONDS: positiveSeconds.default(20),
  /** Egress filepath template, relative to the egress's storage (the shared recordings volume). */
  CALLSYNC_RECORDING_FILEPATH: z.string().trim().min(1).default('callsync/{room_name}-{time}.ogg'),
});

export interface Config {
  liveKit: { url: string; apiKey: string; apiSecret: string };
  crm: { baseUrl: string; apiKey: string | undefined };
  http: { host: string; port: number; ingestToken: string | undefined };
  store: { url: string };
  recordingsDir: string;
  recordingFilepath: string;
  uploadTargetSeconds: number;
  maxCallDurationSeconds: number;
  egressDeadlineSeconds: number;
  drainTimeoutSeconds: number;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
}

/** Parses the environment. Throws a `ConfigError` whose message is one line naming the variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings count as unset, as shells and .env files produce them for "no value".
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value !== ''),
  );
  const result = envSchema.safeParse(present);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'environment');
    const message =
      issue.code === 'invalid_type' && present[variable] === undefined ? 'is required' : issue.message;
    throw new ConfigError(`invalid configuration: ${variable} ${message}`);
  }
  const e = result.data;
  return {
    liveKit: { url: e.LIVEKIT_URL, apiKey: e.LIVEKIT_API_KEY, apiSecret: e.LIVEKIT_API_SECRET },
    crm: { baseUrl: e.CRM_BASE_URL, apiKey: e.CRM_API_KEY },
    http: { host: e.CALLSYNC_HOST, port: e.CALLSYNC_PORT, ingestToken: e.CALLSYNC_INGEST_TOKEN },
    store: { url: e.CALLSYNC_STORE },
    recordingsDir: e.CALLSYNC_RECORDINGS_DIR,
    recordingFilepath: e.CALLSYNC_RECORDING_FILEPATH,
    uploadTargetSeconds: e.CALLSYNC_UPLOAD_TARGET_SECONDS,
    maxCallDurationSeconds: e.CALLSYNC_MAX_CALL_DURATION_SECONDS,
    egressDeadlineSeconds: e.CALLSYNC_EGRESS_DEADLINE_SECONDS,
    drainTimeoutSeconds: e.CALLSYNC_DRAIN_TIMEOUT_SECONDS,
    logLevel: e.LOG_LEVEL,
  };
}
