/**
 * Retention's claim across instances of one store, on SQLite (two storages on one file) and
 * PostgreSQL (two storages on one schema): a run holds its claim for as long as it lasts, so
 * another instance's timer firing meanwhile never prunes alongside it; once it ends the next
 * period runs; and a crashed instance's claim runs out after its lease. And a run is many
 * small writes that sends commit between, never one that holds them up to its end.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { openPostgresStorage } from '../../src/storage/postgres/postgres-storage.js';
import { Retention, RETENTION_TASK } from '../../src/storage/retention.js';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import type { ExportRecord, Storage } from '../../src/storage/storage.js';
import { createSchema, describeWithPostgres } from '../helpers/pg.js';
import { tempDir } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

const DAY = 86_400_000;

/** Two instances of one store, and their disposal. */
interface Pair {
  a: Storage;
  b: Storage;
  done: () => Promise<void>;
}

/** `n` messages two days old, one millisecond apart in id order, so pruning takes them in that order. */
function oldMessages(n: number): AsyncIterable<ExportRecord> {
  const base = Date.now() - 2 * DAY;
  const records = Array.from({ length: n }, (_, k): ExportRecord => {
    const i = k + 1;
    const sentAt = new Date(base + i).toISOString();
    return { type: 'message', message: { id: String(i), fromUser: `s${i % 7}`, toUser: `r${i % 5}`, message: `old ${i}`, sentAt, readAt: null } };
  });
  return Readable.from(records) as AsyncIterable<ExportRecord>;
}

async function stored(s: Storage): Promise<number> {
  return (await s.stats()).messages;
}

/**
 * `storage`, with every prune write it answers noted in `log`: a write is answered once it
 * has committed, so the order of answers is the order of commits, on every backend (store
 * events would not do: PostgreSQL's arrive through its change feed, after the answer).
 */
function notingPrunes(storage: Storage, log: string[]): Storage {
  return new Proxy(storage, {
    get(target, prop) {
      if (prop === 'prune') {
        return async (which: Parameters<Storage['prune']>[0]) => {
          const result = await target.prune(which);
          log.push('prune');
          return result;
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function claimSuite(open: () => Promise<Pair>): void {
  it('lets a send commit between two of its prune writes: a send waits for one small write, never the whole run', async () => {
    const { a, done } = await open();
    const log: string[] = [];
    // In the server's batches (PRUNE_BATCH, 100), a run of ten prune writes. Were a run one
    // write of them all, no send could come between two, and this test fails (tried with
    // PRUNE_BATCH at 1,000,000, and with batch: 1,000,000 here).
    const old = 1000;
    const retention = new Retention(notingPrunes(a, log), { maxAgeMs: DAY }, { periodMs: 60_000 });
    try {
      await a.importAll(oldMessages(old));
      let ended = false;
      const run = retention.runOnce().finally(() => (ended = true));
      // Sends one after another for as long as the run lasts, as clients would.
      let sent = 0;
      while (!ended) {
        await a.send({ fromUser: 'x', toUser: 'y', message: `during ${sent++}` });
        log.push('send');
      }
      const result = await run;
      assert.equal(result?.removed, old, 'the run removed every old message');
      // A send answered after some prune write and before at least two more: it committed
      // between two prune writes (the one answered just after it may have shared its batch).
      const between = log.findIndex((e, i) => e === 'send' && log.slice(0, i).includes('prune') &&
        log.slice(i + 1).filter((f) => f === 'prune').length >= 2);
      assert.ok(between >= 0, `a send committed while the prune went on: ${log.join(' ')}`);
      assert.equal(await stored(a), sent, 'every send is stored, and nothing old');
    } finally {
      await retention.stop();
      await done();
    }
  });

  it('holds the claim for a whole long run: another instance\'s timer does not prune meanwhile, and takes the next period after it', async () => {
    const { a, b, done } = await open();
    // Many small batches make the first run long (hundreds of writes); B's timer fires every 20 ms.
    const first = new Retention(a, { maxAgeMs: DAY }, { periodMs: 60_000, batch: 5 });
    const second = new Retention(b, { maxAgeMs: DAY }, { periodMs: 20, batch: 5 });
    try {
      await a.importAll(oldMessages(3000));
      let firstEnded: number | undefined;
      const run = first.runOnce().then((r) => {
        firstEnded = Date.now();
        return r;
      });
      // The first run holds the claim once it has pruned anything (message 1 goes first).
      await until(async () => (await b.getMessage(1)) === null, 'the first run to start pruning');
      second.start();
      await until(() => second.skipped >= 3 || firstEnded !== undefined, 'the second instance\'s timer to fire a few times');
      assert.equal(firstEnded, undefined, 'the second instance\'s timer fired while the first run was still under way');
      assert.equal(second.last, undefined, 'the second instance did not run while the first held the claim');
      const result = await run;
      assert.equal(result?.removed, 3000, 'the first run removed everything, alone');
      assert.equal(second.removed, 0);
      // After the first run ends, the next period's run is the second instance's.
      await until(() => second.last !== undefined, 'the second instance to run the next period');
      assert.ok(second.last!.at >= firstEnded! - 5, 'its run started after the first ended');
      assert.equal(second.removed, 0, 'nothing was left to remove');
      assert.equal(await stored(a), 0);
    } finally {
      await first.stop();
      await second.stop();
      await done();
    }
  });

  it('lets another instance run once a crashed instance\'s lease has run out', async () => {
    const { a, b, done } = await open();
    const survivor = new Retention(b, { maxAgeMs: DAY }, { periodMs: 20, batch: 50 });
    try {
      await a.importAll(oldMessages(200));
      // What a crashed instance leaves behind: a claim it will never renew nor release.
      assert.equal(await a.claimTask(RETENTION_TASK, { holder: 'crashed', everyMs: 10, leaseMs: 1500 }), true);
      survivor.start();
      await until(() => survivor.skipped >= 3, 'the survivor\'s timer to find the claim held');
      assert.equal(survivor.last, undefined);
      assert.equal(await stored(b), 200, 'nothing pruned while the lease lasts');
      await until(() => survivor.last !== undefined, 'the survivor to run once the lease ran out');
      assert.equal(survivor.removed, 200);
      // The crashed holder, were it to wake, finds its claim gone: its writes remove nothing.
      const late = await a.prune({ before: Date.now(), limit: 10, lease: { task: RETENTION_TASK, holder: 'crashed', leaseMs: 1500 } });
      assert.deepEqual(late, { removed: 0, more: false, lost: true });
    } finally {
      await survivor.stop();
      await done();
    }
  });
}

describe('retention claims on SQLite', () => {
  claimSuite(async () => {
    const dir = await tempDir('postbox-retention-');
    const path = join(dir, 'store.db');
    const a = openSqliteStorage({ path, durability: 'relaxed' });
    const b = openSqliteStorage({ path, durability: 'relaxed' });
    return {
      a, b,
      done: async () => {
        await a.close();
        await b.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
});

await describeWithPostgres('retention claims on PostgreSQL', () => {
  claimSuite(async () => {
    const schema = await createSchema();
    const a = await openPostgresStorage({ url: schema.url(), durability: 'relaxed', poolSize: 2 });
    const b = await openPostgresStorage({ url: schema.url(), durability: 'relaxed', poolSize: 2 });
    return {
      a, b,
      done: async () => {
        await a.close();
        await b.close();
        await schema.drop();
      },
    };
  });
});
