/**
 * PostgreSQL for the benchmark: a fresh database per scenario, dropped afterwards, on a
 * server the caller names (DATABASE_URL) or the local one (--postgres).
 */
import pg from 'pg';

/** Where --postgres looks when DATABASE_URL names no PostgreSQL server. */
export const LOCAL_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres';

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Null when PostgreSQL at `url` answers, else why not. */
export async function postgresProblem(url: string): Promise<string | null> {
  try {
    await withClient(url, (c) => c.query('SELECT 1'));
    return null;
  } catch (err) {
    return (err as Error).message || String(err);
  }
}

/** `url` with its database name replaced. */
export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** The server's version string, for the report. */
export async function postgresVersion(url: string): Promise<string> {
  return withClient(url, async (c) => String((await c.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ?? '?'));
}

/** Creates an empty database `name` on the server of `adminUrl`; answers its URL. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a safe database name: ${name}`);
  await withClient(adminUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  return withDatabase(adminUrl, name);
}

/** Drops database `name`, closing any connection a stopped server left behind. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a safe database name: ${name}`);
  await withClient(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}
