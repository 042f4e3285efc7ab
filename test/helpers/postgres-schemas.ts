/**
 * A PostgreSQL schema of its own for each test run, on the machines' PostgreSQL (trust auth,
 * database `test`), dropped afterwards: `CALLSYNC_STORE=<url>?schema=<unique>`.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const POSTGRES_URL =
  process.env.CALLSYNC_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface PostgresSchemas {
  /**
   * A `CALLSYNC_STORE` value in a new, unique schema (created by the store when it opens);
   * `via` points it at another address in front of the same server (a fault proxy).
   */
  storeUrl(via?: { host: string; port: number }): string;
  /** Drops every schema handed out so far. */
  dropAll(): Promise<void>;
}

export function postgresSchemas(prefix: string): PostgresSchemas {
  const schemas: string[] = [];
  return {
    storeUrl(via) {
      const schema = `${prefix}_${randomBytes(6).toString('hex')}`;
      schemas.push(schema);
      const url = new URL(POSTGRES_URL);
      if (via !== undefined) {
        url.hostname = via.host;
        url.port = String(via.port);
      }
      url.searchParams.set('schema', schema);
      return url.toString();
    },
    async dropAll() {
      if (schemas.length === 0) return;
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      try {
        for (const schema of schemas.splice(0)) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
