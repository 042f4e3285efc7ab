/**
 * Runs the LiveKit emulator on its own: `node --import tsx src/sandbox/livekit/main.ts`.
 *
 * Environment: `LIVEKIT_API_KEY` / `LIVEKIT_API_SECRET` (default devkey / secret, like
 * `livekit-server --dev`), `LIVEKIT_EMULATOR_HOST` (default 127.0.0.1), `LIVEKIT_EMULATOR_PORT`
 * (default 7880, LiveKit's port), `LIVEKIT_EMULATOR_RECORDINGS_DIR` (default ./recordings),
 * `LIVEKIT_WEBHOOK_URL` (comma-separated receivers), `LIVEKIT_EMULATOR_DEPARTURE_TIMEOUT_MS`
 * (default 20000), `LOG_LEVEL` (default info). Point `LIVEKIT_URL` at the printed URL, then
 * script calls with the `/_emulator/...` endpoints (see control-routes.ts), for example
 * `curl -XPOST $URL/_emulator/rooms/call-1/sip-calls -d '{"callerNumber":"+15551234567"}'`.
 * Stops on SIGINT/SIGTERM.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { createLogger } from '../../logging/logger.ts';
import { createLiveKitEmulator } from './emulator.ts';

const envSchema = z.object({
  LIVEKIT_API_KEY: z.string().min(1).default('devkey'),
  LIVEKIT_API_SECRET: z.string().min(1).default('secret'),
  LIVEKIT_EMULATOR_HOST: z.string().min(1).default('127.0.0.1'),
  LIVEKIT_EMULATOR_PORT: z.coerce.number().int().min(0).max(65_535).default(7880),
  LIVEKIT_EMULATOR_RECORDINGS_DIR: z.string().min(1).default('./recordings'),
  LIVEKIT_WEBHOOK_URL: z
    .string()
    .default('')
    .transform((value) =>
      value
        .split(',')
        .map((url) => url.trim())
        .filter((url) => url !== ''),
    )
    .pipe(z.array(z.url({ protocol: /^https?$/ }))),
  LIVEKIT_EMULATOR_DEPARTURE_TIMEOUT_MS: z.coerce.number().int().min(0).optional(),
  LOG_LEVEL: z.string().min(1).default('info'),
});

const parsed = envSchema.safeParse(process.env);
if (!parsed.success) {
  console.error(`livekit-emulator: invalid environment\n${z.prettifyError(parsed.error)}`);
  process.exit(1);
}
const env = parsed.data;
const recordingsDir = resolve(env.LIVEKIT_EMULATOR_RECORDINGS_DIR);

const emulator = createLiveKitEmulator({
  keys: { [env.LIVEKIT_API_KEY]: env.LIVEKIT_API_SECRET },
  recordingsDir,
  host: env.LIVEKIT_EMULATOR_HOST,
  port: env.LIVEKIT_EMULATOR_PORT,
  webhookUrls: env.LIVEKIT_WEBHOOK_URL,
  ...(env.LIVEKIT_EMULATOR_DEPARTURE_TIMEOUT_MS === undefined
    ? {}
    : { departureTimeoutMs: env.LIVEKIT_EMULATOR_DEPARTURE_TIMEOUT_MS }),
  logger: createLogger({ level: env.LOG_LEVEL }).child({ component: 'livekit-emulator' }),
});
const { url } = await emulator.start();
console.log(
  `livekit-emulator listening on ${url} (key ${env.LIVEKIT_API_KEY}, recordings ${recordingsDir}, ` +
    `webhooks ${env.LIVEKIT_WEBHOOK_URL.length === 0 ? 'none' : env.LIVEKIT_WEBHOOK_URL.join(', ')})`,
);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void emulator.close().then(() => process.exit(0));
  });
}
