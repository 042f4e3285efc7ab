/**
 * `callsync config check`: the environment as `npm start` would load it (`src/config.ts`),
 * then each dependency reached once with those settings, one verdict a line. Changes nothing:
 * LiveKit gets a ListEgress, the CRM a GET of its base URL, the storage its `check()`, and the
 * store is opened on a copy (SQLite) or opened as a start would (PostgreSQL: the schema DDL is
 * idempotent and runs only when the recorded schema version differs, see postgres-store.ts).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { EgressClient } from 'livekit-server-sdk';
import { request } from 'undici';
import { ConfigError, loadConfig, type Config } from '../config.ts';
import { createRecordingStorage } from '../services/storage/index.ts';
import { createCallStore } from '../store/open-store.ts';
import { SqliteCallStore } from '../store/sqlite-store.ts';
import { EXIT_FAILURE, EXIT_OK, print, printJson } from './output.ts';

/** Each dependency gets this long to answer. */
export const CHECK_TIMEOUT_MS = 5_000;

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

function messageOf(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return messageOf(error.errors[0]);
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
    return `${error.message || error.name}${cause}`;
  }
  return String(error);
}

async function withDeadline<T>(what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms from ${what}`)),
      CHECK_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function check(name: string, run: () => Promise<string>): Promise<CheckResult> {
  try {
    return { name, ok: true, detail: await run() };
  } catch (error) {
    return { name, ok: false, detail: messageOf(error) };
  }
}

function checkLiveKit(config: Config): Promise<CheckResult> {
  return check('livekit', async () => {
    const client = new EgressClient(config.liveKit.url, config.liveKit.apiKey, config.liveKit.apiSecret, {
      requestTimeout: CHECK_TIMEOUT_MS / 1_000,
    });
    const active = await withDeadline('LiveKit', client.listEgress({ active: true }));
    return `${config.liveKit.url} answered ListEgress (${active.length} active egress)`;
  });
}

function checkCrm(config: Config): Promise<CheckResult> {
  return check('crm', async () => {
    // Any HTTP answer means the CRM is there; only the delivery itself proves the key and routes.
    const answer = await request(config.crm.baseUrl, {
      method: 'GET',
      headers: config.crm.apiKey ? { authorization: `Bearer ${config.crm.apiKey}` } : {},
      headersTimeout: CHECK_TIMEOUT_MS,
      bodyTimeout: CHECK_TIMEOUT_MS,
      signal: AbortSignal.timeout(CHECK_TIMEOUT_MS),
    });
    await answer.body.dump();
    return `${config.crm.baseUrl} answered HTTP ${answer.statusCode}`;
  });
}

function checkStorage(config: Config): Promise<CheckResult> {
  return check('storage', async () => {
    const storage = createRecordingStorage(config.egressStorage);
    try {
      await storage.check(AbortSignal.timeout(CHECK_TIMEOUT_MS));
      return `${storage.description} reachable`;
    } finally {
      await storage.close();
    }
  });
}

function checkStore(config: Config): Promise<CheckResult> {
  return check('store', async () => {
    const url = config.store.url;
    if (url.startsWith('sqlite:')) {
      const path = resolve(url.slice('sqlite:'.length));
      if (!existsSync(path)) return `${path} does not exist yet; callsync creates it at start`;
      // A copy, so that an older file is not migrated by a check: SQLite's online backup is
      // consistent even while a running callsync writes.
      const dir = await mkdtemp(join(tmpdir(), 'callsync-check-'));
      try {
        const source = new Database(path, { readonly: true, fileMustExist: true });
        try {
          await source.backup(join(dir, 'copy.db'));
        } finally {
          source.close();
        }
        const copy = new SqliteCallStore(join(dir, 'copy.db'));
        try {
          await copy.open();
          await copy.check();
          const failed = await copy.countCalls('failed');
          return `${path} opens and takes writes (on a copy); ${failed} failed call(s)`;
        } finally {
          await copy.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    const store = createCallStore(url, { timeoutMs: Math.min(config.store.timeoutMs, CHECK_TIMEOUT_MS) });
    try {
      await withDeadline('the store', store.open());
      await withDeadline('the store', store.check());
      const failed = await withDeadline('the store', store.countCalls('failed'));
      return `${url.replace(/\/\/[^@/]*@/, '//…@')} opens and takes writes; ${failed} failed call(s)`;
    } finally {
      await store.close();
    }
  });
}

export async function runConfigCheck(
  env: NodeJS.ProcessEnv,
): Promise<{ ok: boolean; checks: CheckResult[] }> {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (error) {
    const problems = error instanceof ConfigError ? error.problems : [messageOf(error)];
    return {
      ok: false,
      checks: problems.map((problem) => ({ name: 'environment', ok: false, detail: problem })),
    };
  }
  const checks = [
    { name: 'environment', ok: true, detail: 'every variable is valid' },
    ...(await Promise.all([
      checkLiveKit(config),
      checkCrm(config),
      checkStorage(config),
      checkStore(config),
    ])),
  ];
  return { ok: checks.every((result) => result.ok), checks };
}

export async function configCheckCommand(
  json: boolean,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const result = await runConfigCheck(env);
  if (json) printJson(result);
  else {
    for (const { name, ok, detail } of result.checks) print(`${ok ? '✓' : '✗'} ${name.padEnd(11)} ${detail}`);
  }
  return result.ok ? EXIT_OK : EXIT_FAILURE;
}
