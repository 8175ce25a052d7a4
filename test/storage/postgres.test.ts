/**
 * The Storage contract on PostgreSQL (a fresh schema per test), then what only a shared
 * database can show: several instances writing and listening at once, and outages.
 *
 * Without a reachable PostgreSQL the suite is skipped, saying why; under CI (CI=true) that
 * is a failure instead, so a broken service can never pass as a green run.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { AppError } from '../../src/errors.js';
import { MIGRATIONS } from '../../src/storage/postgres/migrations.js';
import { openPostgresStorage, type PostgresOptions, type PostgresStorage } from '../../src/storage/postgres/postgres-storage.js';
import type { Storage, StoreEvent } from '../../src/storage/storage.js';
import { TEST_PG_URL, createSchema, pgUnreachable, type TestSchema } from '../helpers/pg.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { until } from '../helpers/wait.js';
import { objects, storageContract } from './storage.contract.js';

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
  postgresSpecifics();
}

/** Runs `fn` with a fresh schema and the stores it opens, closing them all and dropping the schema after. */
async function withSchema(fn: (schema: TestSchema, track: (s: PostgresStorage) => PostgresStorage) => Promise<void>): Promise<void> {
  const schema = await createSchema();
  const opened: PostgresStorage[] = [];
  try {
    await fn(schema, (s) => {
      opened.push(s);
      return s;
    });
  } finally {
    await Promise.all(opened.map((s) => s.close()));
    await schema.drop();
  }
}

function isUnavailable(err: unknown): boolean {
  assert.ok(err instanceof AppError, `an AppError, not ${String(err)}`);
  assert.equal(err.code, 'storage_unavailable');
  assert.equal(err.status, 503);
  assert.deepEqual(err.headers, { 'Retry-After': '1' });
  return true;
}

function storedId(out: Awaited<ReturnType<Storage['send']>>): number {
  assert.equal(out.kind, 'stored');
  return out.kind === 'stored' ? Number(out.message.id) : NaN;
}

function postgresSpecifics(): void {
  describe('PostgreSQL: several instances on one database', () => {
    it('lets a reader page with after= without skipping or repeating while two instances write', () => withSchema(async (schema, track) => {
      // Two pools, as two server processes would have, and the reader on a third.
      const [a, b, reader] = await Promise.all([1, 2, 3].map(async () => track(await open(schema.url()))));
      const writersPerInstance = 4;
      const perWriter = 60;
      const written: number[] = [];
      let writing = true;
      const writers = Promise.all([a, b].flatMap((store, w) => Array.from({ length: writersPerInstance }, async (_, k) => {
        for (let i = 0; i < perWriter; i++) {
          written.push(storedId(await store!.send({ fromUser: `w${w}-${k}`, toUser: 'reader', message: `${w}:${k}:${i}` })));
        }
      }))).finally(() => (writing = false));
      const seen: number[] = [];
      let after: number | undefined;
      for (;;) {
        const finished = !writing;
        const page = objects(await reader!.inbox('reader', { after, limit: 7 }));
        for (const m of page.messages) seen.push(Number(m.id));
        if (page.messages.length > 0) after = seen[seen.length - 1];
        if (finished && !page.more) break;
      }
      await writers;
      assert.equal(written.length, 2 * writersPerInstance * perWriter);
      assert.equal(new Set(seen).size, seen.length, 'no message seen twice');
      assert.deepEqual([...seen].sort((x, y) => x - y), seen, 'pages come in id order');
      assert.deepEqual(seen, [...written].sort((x, y) => x - y), 'every committed message seen');
    }));

    it('tells listeners on every instance of every change, in commit order, once each', () => withSchema(async (schema, track) => {
      const [a, b, c] = await Promise.all([1, 2, 3].map(async () => track(await open(schema.url()))));
      const heard = new Map<Storage, StoreEvent[]>([[a!, []], [b!, []], [c!, []]]);
      for (const [store, events] of heard) store.onEvents((evs) => events.push(...evs));

      // A send through A is heard on B, whole, even past what a notification can carry.
      const big = 'é'.repeat(40_000);
      const small = await a!.send({ fromUser: 'x', toUser: 'y', message: 'hello' });
      const large = await a!.send({ fromUser: 'x', toUser: 'y', message: big });
      assert.ok(small.kind === 'stored' && large.kind === 'stored');
      await until(() => heard.get(b!)!.length >= 2, 'B to hear A\'s sends');
      assert.deepEqual(heard.get(b!)!.slice(0, 2), [
        { type: 'message', message: small.message },
        { type: 'message', message: large.message },
      ]);

      // Both instances writing at once; a third only listening.
      const outs = await Promise.all(Array.from({ length: 60 }, (_, i) =>
        (i % 2 === 0 ? a! : b!).send({ fromUser: `s${i % 3}`, toUser: 'y', message: i % 10 === 0 ? big : `m${i}` })));
      const ids = outs.map(storedId);
      await b!.markRead('y', { upTo: Math.max(...ids) });
      await a!.deleteMessage(ids[0]!);
      const total = 2 + 60 + 2;
      await until(() => [...heard.values()].every((evs) => evs.length >= total), 'every instance to hear everything');
      for (const [store, events] of heard) {
        const name = store === a ? 'A' : store === b ? 'B' : 'C';
        assert.equal(events.length, total, `${name} heard each change once`);
        const messageIds = events.flatMap((e) => (e.type === 'message' ? [Number(e.message.id)] : []));
        assert.deepEqual(messageIds, [...messageIds].sort((x, y) => x - y), `${name} heard message ids increasing`);
        assert.equal(new Set(messageIds).size, 62, `${name} heard every message once`);
        assert.deepEqual(events.slice(-2).map((e) => e.type), ['read', 'deleted'], `${name} heard the rest in commit order`);
        const bigOnes = events.filter((e) => e.type === 'message' && e.message.message === big);
        assert.equal(bigOnes.length, 1 + 6, `${name} heard large messages whole`);
      }
    }));

    it('stores one message for concurrent repeats of one key through different instances', () => withSchema(async (schema, track) => {
      const [a, b] = await Promise.all([1, 2].map(async () => track(await open(schema.url()))));
      const claim = { key: 'burst', fingerprint: 'f' };
      const outs = await Promise.all(Array.from({ length: 20 }, (_, i) =>
        (i % 2 === 0 ? a! : b!).send({ fromUser: 'a', toUser: 'b', message: 'burst' }, claim)));
      assert.equal(outs.filter((o) => o.kind === 'stored').length, 1);
      assert.equal(outs.filter((o) => o.kind === 'replayed').length, 19);
      assert.equal((objects(await a!.inbox('b', { limit: 50 }))).messages.length, 1);
    }));

    it('migrates once when instances start together', () => withSchema(async (schema, track) => {
      const stores = await Promise.all([1, 2, 3].map(async () => track(await open(schema.url()))));
      assert.equal(stores.length, 3);
      const client = new pg.Client({ connectionString: schema.url() });
      await client.connect();
      try {
        const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
        assert.deepEqual(rows.map((r) => r.version), MIGRATIONS.map((m) => m.version), 'each applied once');
      } finally {
        await client.end();
      }
    }));
  });

  describe('PostgreSQL: outages', () => {
    it('refuses to open, with storage_unavailable, when the database cannot be reached', async () => {
      const proxy = await startTcpProxy({ host: '127.0.0.1', port: 1 });
      const port = proxy.port;
      await proxy.close(); // nothing listens there now
      const url = new URL(TEST_PG_URL);
      url.port = String(port);
      await assert.rejects(open(url.toString()), isUnavailable);
    });

    it('answers 503 when no pooled connection frees up in time, and carries on once one does', () => withSchema(async (schema, track) => {
      const store = track(await open(schema.url(), { poolSize: 1, connectTimeoutMs: 300 }));
      const blocker = new pg.Client({ connectionString: schema.url() });
      await blocker.connect();
      try {
        // The one pooled connection goes to a send that then waits on this lock.
        await blocker.query('BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE');
        const sending = store.send({ fromUser: 'a', toUser: 'b', message: 'waits' });
        await assert.rejects(store.inbox('b', { limit: 5 }), isUnavailable);
        await assert.rejects(store.ping(), isUnavailable);
        await blocker.query('COMMIT');
        storedId(await sending);
        await store.ping();
        assert.equal((objects(await store.inbox('b', { limit: 5 }))).messages.length, 1);
      } finally {
        await blocker.end();
      }
    }));

    it('answers 503 while the database is away and recovers by itself, with a resync', () => withSchema(async (schema, track) => {
      const target = new URL(TEST_PG_URL);
      const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
      try {
        const store = track(await open(schema.url(proxy.port), { reconnectMinMs: 20, reconnectMaxMs: 200 }));
        // Another instance that keeps its connection: it writes while this one is cut off.
        const other = track(await open(schema.url()));
        const events: StoreEvent[] = [];
        store.onEvents((evs) => events.push(...evs));
        const before = storedId(await store.send({ fromUser: 'a', toUser: 'b', message: 'before' }));
        await until(() => events.length === 1, 'the first message event');

        proxy.cut();
        await assert.rejects(store.send({ fromUser: 'a', toUser: 'b', message: 'during' }), isUnavailable);
        await assert.rejects(store.ping(), isUnavailable);
        await assert.rejects(store.inbox('b', { limit: 5 }), isUnavailable);
        await assert.rejects(store.markRead('b', { upTo: before }), isUnavailable);
        const missed = storedId(await other.send({ fromUser: 'c', toUser: 'b', message: 'while cut off' }));
        await assert.rejects(store.ping(), isUnavailable, 'still away');

        proxy.restore();
        await until(() => events.some((e) => e.type === 'resync'), 'a resync once listening again');
        assert.deepEqual(events.map((e) => e.type), ['message', 'resync'], 'nothing heard from the gap, then resync');
        // What a listener does on resync: re-read after its cursor, finding what it missed.
        assert.deepEqual((objects(await store.inbox('b', { after: before, limit: 5 }))).messages.map((m) => Number(m.id)), [missed]);
        await store.ping();
        const after = storedId(await store.send({ fromUser: 'a', toUser: 'b', message: 'after' }));
        assert.ok(after > missed);
        await until(() => events.length === 3, 'the new message event');
        assert.ok(events[2]?.type === 'message' && Number(events[2].message.id) === after);
      } finally {
        await proxy.close();
      }
    }));
  });
}
