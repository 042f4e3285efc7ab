/**
 * Runs the CRM sandbox on its own: `node --import tsx src/sandbox/crm/main.ts`.
 *
 * Environment: `CRM_SANDBOX_HOST` (default 127.0.0.1), `CRM_SANDBOX_PORT` (default 4010),
 * `CRM_SANDBOX_STORAGE_DIR` (default ./data/crm-sandbox), `CRM_SANDBOX_API_KEY` (unset: no auth),
 * `CRM_SANDBOX_PUBLIC_URL` (default the listening URL). Point callsync's `CRM_BASE_URL` at the
 * printed URL; script faults with `POST /_sandbox/faults` and read what arrived at
 * `GET /_sandbox/received`. Stops on SIGINT/SIGTERM.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { createCrmSandbox } from './sandbox.ts';

const envSchema = z.object({
  CRM_SANDBOX_HOST: z.string().min(1).default('127.0.0.1'),
  CRM_SANDBOX_PORT: z.coerce.number().int().min(0).max(65_535).default(4010),
  CRM_SANDBOX_STORAGE_DIR: z.string().min(1).default('./data/crm-sandbox'),
  CRM_SANDBOX_API_KEY: z.string().min(1).optional(),
  CRM_SANDBOX_PUBLIC_URL: z.url({ protocol: /^https?$/ }).optional(),
});

const parsed = envSchema.safeParse(process.env);
if (!parsed.success) {
  const issue = parsed.error.issues[0];
  console.error(`crm-sandbox: invalid ${String(issue?.path[0] ?? 'environment')}: ${issue?.message ?? ''}`);
  process.exit(1);
}
const env = parsed.data;

const sandbox = createCrmSandbox({
  host: env.CRM_SANDBOX_HOST,
  port: env.CRM_SANDBOX_PORT,
  storageDir: resolve(env.CRM_SANDBOX_STORAGE_DIR),
  apiKey: env.CRM_SANDBOX_API_KEY,
  publicBaseUrl: env.CRM_SANDBOX_PUBLIC_URL,
});
const { url } = await sandbox.start();
console.log(
  `crm-sandbox listening on ${url} (storage ${resolve(env.CRM_SANDBOX_STORAGE_DIR)}, auth ${env.CRM_SANDBOX_API_KEY === undefined ? 'off' : 'on'})`,
);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void sandbox.close().then(() => process.exit(0));
  });
}
