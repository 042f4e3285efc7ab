/**
 * A PostgreSQL schema of its own for each test run, on the machines' PostgreSQL (trust auth,
 * database `test`), dropped afterwards: `CALLSYNC_STORE=<url>?schema=<unique>`.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const POSTGRES_URL =
  process.env.CALLSYNC_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface PostgresSchemas {
  /** A `CALLSYNC_STORE` value in a new, unique schema (created by the store when it opens). */
  storeUrl(): string;
  /** Drops every schema handed out so far. */
  dropAll(): Promise<void>;
}

export function postgresSchemas(prefix: string): PostgresSchemas {
  const schemas: string[] = [];
  return {
    storeUrl() {
      const schema = `${prefix}_${randomBytes(6).toString('hex')}`;
      schemas.push(schema);
      return `${POSTGRES_URL}?schema=${schema}`;
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
