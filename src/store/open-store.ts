/** Picks the call store from `CALLSYNC_STORE`: `sqlite:<path>` (embedded) or `postgres://…` (fleet). */
import type { CallStore } from './call-store.ts';
import type { PostgresCallStoreOptions } from './postgres-store.ts';
import { PostgresCallStore } from './postgres-store.ts';
import { SqliteCallStore } from './sqlite-store.ts';

export function createCallStore(
  url: string,
  options: { timeoutMs?: number; fleet?: PostgresCallStoreOptions['fleet'] } = {},
): CallStore {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length);
    if (path === '') throw new Error('CALLSYNC_STORE sqlite: needs a path, e.g. sqlite:./data/callsync.db');
    return new SqliteCallStore(path);
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    return new PostgresCallStore({
      connectionString: url,
      timeoutMs: options.timeoutMs,
      fleet: options.fleet,
    });
  }
  throw new Error(`CALLSYNC_STORE must be sqlite:<path> or postgres://…, got ${url.split(':')[0]}:…`);
}
