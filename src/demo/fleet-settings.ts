/**
 * The fleet demo's fixed settings, apart from fleet.ts so the flags (args.ts) and the usage text
 * can name them without loading the PostgreSQL client.
 */

/** `--fleet N`: how many supervisor processes. */
export const FLEET_SIZE_MIN = 2;
export const FLEET_SIZE_MAX = 5;
/** Where the fleet's store lives unless `DEMO_POSTGRES_URL` says otherwise (the machines' PostgreSQL). */
export const POSTGRES_URL_DEFAULT = 'postgres://postgres@127.0.0.1:5432/test';
/** Short, so a take-over comes within about 4 s (the README: the lease plus about a second). */
export const FLEET_LEASE_SECONDS = 3;
