/**
 * Runs the LiveKit emulator on its own: `node --import tsx src/sandbox/livekit/main.ts`.
 *
 * Environment: `LIVEKIT_API_KEY` / `LIVEKIT_API_SECRET` (default devkey / secret, like
 * `livekit-server --dev`), `LIVEKIT_EMULATOR_HOST` (default 127.0.0.1), `LIVEKIT_EMULATOR_PORT`
 * (default 7880, LiveKit's port), `LIVEKIT_EMULATOR_RECORDINGS_DIR` (default ./recordings),
 * `LIVEKIT_WEBHOOK_URL` (comma-separated receivers), `LIVEKIT_WEBHOOK_INCLUDE_EVENTS` (the only
 * events they get, comma-separated, as `webhook.filter_params.include_events`),
 * `LIVEKIT_EMULATOR_DEPARTURE_TIMEOUT_MS` (default 20000), `LOG_LEVEL` (default info). Point
 * `LIVEKIT_URL` at the printed URL, then script calls with the `/_emulator/...` endpoints (see
 * control-routes.ts), for example `curl -XPOST $URL/_emulator/rooms/call-1/sip-calls -d '{"callerNumber":"+15551234567"}'`.
 * Stops on SIGINT/SIGTERM.
 *
 * Storage (see emulator-options.ts): `LIVEKIT_EMULATOR_REQUIRE_STORAGE=true` refuses file
 * outputs without upload settings, like LiveKit Cloud. A server default `storage:` block is one
 * of `LIVEKIT_EMULATOR_S3_BUCKET` (+ `_S3_ENDPOINT`, `_S3_REGION`, `_S3_ACCESS_KEY`,
 * `_S3_SECRET`, `_S3_FORCE_PATH_STYLE=true`), `LIVEKIT_EMULATOR_GCP_BUCKET` (+
 * `_GCP_CREDENTIALS`, the service-account JSON) or `LIVEKIT_EMULATOR_AZURE_CONTAINER` (+
 * `_AZURE_ACCOUNT_NAME`, `_AZURE_ACCOUNT_KEY`), with `LIVEKIT_EMULATOR_STORAGE_PREFIX`.
 * `LIVEKIT_EMULATOR_GCS_ENDPOINT` / `LIVEKIT_EMULATOR_AZURE_BLOB_ENDPOINT` point GCS and Azure
 * uploads at local servers. For s3rver (`node node_modules/s3rver/bin/s3rver.js -d /tmp/s3
 * -a 127.0.0.1 -p 4568 --configure-bucket recordings`): `LIVEKIT_EMULATOR_S3_BUCKET=recordings
 * LIVEKIT_EMULATOR_S3_ENDPOINT=http://127.0.0.1:4568 LIVEKIT_EMULATOR_S3_FORCE_PATH_STYLE=true
 * LIVEKIT_EMULATOR_S3_ACCESS_KEY=S3RVER LIVEKIT_EMULATOR_S3_SECRET=S3RVER`. Secrets are never
 * printed.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { createLogger } from '../../logging/logger.ts';
import type { ServerStorageConfig } from './egress-storage.ts';
import { createLiveKitEmulator } from './emulator.ts';

const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value === '' ? undefined : value));
const flag = z
  .enum(['true', 'false', ''])
  .default('')
  .transform((value) => value === 'true');

/** A comma-separated variable: its entries, trimmed, the empty ones left out. */
const commaList = z
  .string()
  .default('')
  .transform((value) =>
    value
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== ''),
  );

const envSchema = z.object({
  LIVEKIT_API_KEY: z.string().min(1).default('devkey'),
  LIVEKIT_API_SECRET: z.string().min(1).default('secret'),
  LIVEKIT_EMULATOR_HOST: z.string().min(1).default('127.0.0.1'),
  LIVEKIT_EMULATOR_PORT: z.coerce.number().int().min(0).max(65_535).default(7880),
  LIVEKIT_EMULATOR_RECORDINGS_DIR: z.string().min(1).default('./recordings'),
  LIVEKIT_WEBHOOK_URL: commaList.pipe(z.array(z.url({ protocol: /^https?$/ }))),
  LIVEKIT_WEBHOOK_INCLUDE_EVENTS: commaList,
  LIVEKIT_EMULATOR_DEPARTURE_TIMEOUT_MS: z.coerce.number().int().min(0).optional(),
  LIVEKIT_EMULATOR_REQUIRE_STORAGE: flag,
  LIVEKIT_EMULATOR_STORAGE_PREFIX: optionalText,
  LIVEKIT_EMULATOR_S3_BUCKET: optionalText,
  LIVEKIT_EMULATOR_S3_ENDPOINT: optionalText,
  LIVEKIT_EMULATOR_S3_REGION: optionalText,
  LIVEKIT_EMULATOR_S3_ACCESS_KEY: optionalText,
  LIVEKIT_EMULATOR_S3_SECRET: optionalText,
  LIVEKIT_EMULATOR_S3_FORCE_PATH_STYLE: flag,
  LIVEKIT_EMULATOR_GCP_BUCKET: optionalText,
  LIVEKIT_EMULATOR_GCP_CREDENTIALS: optionalText,
  LIVEKIT_EMULATOR_AZURE_CONTAINER: optionalText,
  LIVEKIT_EMULATOR_AZURE_ACCOUNT_NAME: optionalText,
  LIVEKIT_EMULATOR_AZURE_ACCOUNT_KEY: optionalText,
  LIVEKIT_EMULATOR_GCS_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  LIVEKIT_EMULATOR_AZURE_BLOB_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  LOG_LEVEL: z.string().min(1).default('info'),
});

const parsed = envSchema.safeParse(process.env);
if (!parsed.success) {
  console.error(`livekit-emulator: invalid environment\n${z.prettifyError(parsed.error)}`);
  process.exit(1);
}
const env = parsed.data;
const recordingsDir = resolve(env.LIVEKIT_EMULATOR_RECORDINGS_DIR);

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** The server `storage:` block from the environment, and a secret-free line describing it. */
function serverStorageFromEnv(): { storage: ServerStorageConfig | undefined; description: string } {
  const prefix = env.LIVEKIT_EMULATOR_STORAGE_PREFIX;
  const withPrefix = (where: string) => (prefix === undefined ? where : `${where} (prefix ${prefix})`);
  const base = prefix === undefined ? {} : { prefix };
  if (env.LIVEKIT_EMULATOR_S3_BUCKET !== undefined) {
    const s3 = withoutUndefined({
      bucket: env.LIVEKIT_EMULATOR_S3_BUCKET,
      endpoint: env.LIVEKIT_EMULATOR_S3_ENDPOINT,
      region: env.LIVEKIT_EMULATOR_S3_REGION,
      accessKey: env.LIVEKIT_EMULATOR_S3_ACCESS_KEY,
      secret: env.LIVEKIT_EMULATOR_S3_SECRET,
      forcePathStyle: env.LIVEKIT_EMULATOR_S3_FORCE_PATH_STYLE,
    });
    return {
      storage: { ...base, s3 },
      description: withPrefix(`s3 bucket ${s3.bucket}${s3.endpoint ? ` at ${s3.endpoint}` : ''}`),
    };
  }
  if (env.LIVEKIT_EMULATOR_GCP_BUCKET !== undefined) {
    const gcp = withoutUndefined({
      bucket: env.LIVEKIT_EMULATOR_GCP_BUCKET,
      credentials: env.LIVEKIT_EMULATOR_GCP_CREDENTIALS,
    });
    return { storage: { ...base, gcp }, description: withPrefix(`gcp bucket ${gcp.bucket}`) };
  }
  if (env.LIVEKIT_EMULATOR_AZURE_CONTAINER !== undefined) {
    const azure = {
      containerName: env.LIVEKIT_EMULATOR_AZURE_CONTAINER,
      accountName: env.LIVEKIT_EMULATOR_AZURE_ACCOUNT_NAME ?? '',
      accountKey: env.LIVEKIT_EMULATOR_AZURE_ACCOUNT_KEY ?? '',
    };
    return {
      storage: { ...base, azure },
      description: withPrefix(`azure container ${azure.containerName} of ${azure.accountName}`),
    };
  }
  return {
    storage: undefined,
    description: env.LIVEKIT_EMULATOR_REQUIRE_STORAGE ? 'request storage required' : `local ${recordingsDir}`,
  };
}
const { storage: serverStorage, description: storageDescription } = serverStorageFromEnv();

const emulator = createLiveKitEmulator({
  keys: { [env.LIVEKIT_API_KEY]: env.LIVEKIT_API_SECRET },
  recordingsDir,
  host: env.LIVEKIT_EMULATOR_HOST,
  port: env.LIVEKIT_EMULATOR_PORT,
  webhookUrls: env.LIVEKIT_WEBHOOK_URL,
  webhookFilter: { includeEvents: env.LIVEKIT_WEBHOOK_INCLUDE_EVENTS },
  ...(env.LIVEKIT_EMULATOR_DEPARTURE_TIMEOUT_MS === undefined
    ? {}
    : { departureTimeoutMs: env.LIVEKIT_EMULATOR_DEPARTURE_TIMEOUT_MS }),
  requireStorage: env.LIVEKIT_EMULATOR_REQUIRE_STORAGE,
  ...(serverStorage === undefined ? {} : { serverStorage }),
  ...(env.LIVEKIT_EMULATOR_GCS_ENDPOINT === undefined
    ? {}
    : { gcsEndpoint: env.LIVEKIT_EMULATOR_GCS_ENDPOINT }),
  ...(env.LIVEKIT_EMULATOR_AZURE_BLOB_ENDPOINT === undefined
    ? {}
    : { azureBlobEndpoint: env.LIVEKIT_EMULATOR_AZURE_BLOB_ENDPOINT }),
  logger: createLogger({ level: env.LOG_LEVEL }).child({ component: 'livekit-emulator' }),
});
const { url } = await emulator.start();
console.log(
  `livekit-emulator listening on ${url} (key ${env.LIVEKIT_API_KEY}, storage ${storageDescription}, ` +
    `webhooks ${env.LIVEKIT_WEBHOOK_URL.length === 0 ? 'none' : env.LIVEKIT_WEBHOOK_URL.join(', ')})`,
);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void emulator.close().then(() => process.exit(0));
  });
}
