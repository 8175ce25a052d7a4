/**
 * A real PostgreSQL for tests: each store gets its own schema, created for it and dropped
 * afterwards, so tests never share data and need no cleanup of the whole database.
 */
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import pg from 'pg';

/** The server the tests use; POSTBOX_TEST_PG_URL overrides the local default. */
export const TEST_PG_URL = process.env.POSTBOX_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Why PostgreSQL cannot be used, or null when it answers. */
export async function pgUnreachable(url = TEST_PG_URL): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (err) {
    return (err as Error).message || String(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Declares a suite that needs PostgreSQL. Without a reachable server the suite is skipped,
 * saying why; under CI (CI=true) it fails instead, so a broken service never passes as green.
 */
export async function describeWithPostgres(title: string, body: () => void): Promise<void> {
  const unreachable = await pgUnreachable();
  if (unreachable === null) {
    describe(title, body);
    return;
  }
  const reason = `PostgreSQL is not reachable at ${TEST_PG_URL} (${unreachable})`;
  describe(title, () => {
    if (process.env.CI === 'true') {
      it('needs PostgreSQL, which CI must provide', () => {
        throw new Error(`${reason}; set POSTBOX_TEST_PG_URL or start the service`);
      });
    } else {
      it('runs against a real PostgreSQL', { skip: reason }, () => undefined);
    }
  });
}

/** A URL whose connections use `schema` for everything (libpq's `options`, which node-postgres honours). */
export function urlWithSchema(url: string, schema: string, port?: number): string {
  const u = new URL(url);
  if (port !== undefined) u.port = String(port);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

/** A fresh, empty schema. */
export interface TestSchema {
  name: string;
  /** A URL that puts every connection in this schema, optionally through another port (a proxy). */
  url(port?: number): string;
  /** Drops the schema and everything in it. */
  drop(): Promise<void>;
}

/** Creates a schema with a random name. */
export async function createSchema(url = TEST_PG_URL): Promise<TestSchema> {
  const name = `pbt_${randomBytes(6).toString('hex')}`;
  await runSql(url, `CREATE SCHEMA ${name}`);
  return {
    name,
    url: (port) => urlWithSchema(url, name, port),
    drop: () => runSql(url, `DROP SCHEMA IF EXISTS ${name} CASCADE`),
  };
}

/** Runs one SQL text on its own connection to `url` (a test schema's URL puts it in that schema). */
export async function runSql(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
