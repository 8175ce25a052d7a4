/**
 * The import race, made deterministic: `postbox import` plans against the store, then
 * writes; a server writing to the same store may take an id in between. Through the
 * functions the command uses (planImport, then importPlanned), with a write made between the
 * two: a record whose id was taken by the same record is counted as skipped, one taken by a
 * different record is named as a conflict, and nothing is dropped in silence.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { hasConflicts, importPlanned, planImport } from '../../src/domain/import-plan.js';
import { openPostgresStorage } from '../../src/storage/postgres/postgres-storage.js';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import type { ExportRecord, Storage } from '../../src/storage/storage.js';
import { createSchema, describeWithPostgres } from '../helpers/pg.js';
import { tempDir } from '../helpers/server.js';

const at = '2026-01-02T03:04:05.006Z';
const file: ExportRecord[] = [
  { type: 'user', id: 'ann', createdAt: at },
  { type: 'message', message: { id: '1', fromUser: 'ann', toUser: 'bob', message: 'first', sentAt: at, readAt: null } },
  { type: 'message', message: { id: '2', fromUser: 'ann', toUser: 'bob', message: 'second', sentAt: at, readAt: null } },
  { type: 'message', message: { id: '3', fromUser: 'bob', toUser: 'ann', message: 'third', sentAt: at, readAt: null } },
];
const records = () => Readable.from(file) as AsyncIterable<ExportRecord>;

function raceSuite(open: () => Promise<{ storage: Storage; done: () => Promise<void> }>): void {
  it('names a record whose id a server took between the plan and the write, and counts one taken by the same record as skipped', async () => {
    const { storage, done } = await open();
    try {
      const plan = await planImport(storage, records());
      assert.equal(hasConflicts(plan), false, 'the store was empty when planned');
      // Meanwhile: a running server sends a message, which takes id 1; and another import
      // stores message 2 exactly as the file has it.
      const sent = await storage.send({ fromUser: 'cy', toUser: 'dee', message: 'live' });
      assert.ok(sent.kind === 'stored' && sent.message.id === '1', 'the server took id 1');
      await storage.importAll(Readable.from([file[2]!]) as AsyncIterable<ExportRecord>);

      const outcome = await importPlanned(storage, records(), plan);
      assert.deepEqual(outcome.imported, { users: 1, tokens: 0, messages: 1, reservations: 0 }, 'ann and message 3');
      assert.deepEqual(outcome.same, { users: 0, tokens: 0, messages: 1, reservations: 0 }, 'message 2 was already there, the same');
      assert.deepEqual(outcome.conflicting, { users: 0, tokens: 0, messages: 1, reservations: 0 });
      assert.equal(hasConflicts(outcome), true);
      assert.equal(outcome.conflicts[0]!.kind, 'message');
      assert.equal(outcome.conflicts[0]!.id, '1');
      assert.match(outcome.conflicts[0]!.why, /took the id meanwhile.*fromUser, toUser, message, sentAt differ/);
      assert.equal((await storage.getMessage(1))?.message, 'live', 'the server\'s message is kept');

      // Run again: everything is now the same or the known conflict; nothing new is stored.
      const replan = await planImport(storage, records());
      assert.deepEqual(replan.conflicting, { users: 0, tokens: 0, messages: 1, reservations: 0 }, 'the plan now sees message 1 conflict');
      const again = await importPlanned(storage, records(), replan);
      assert.deepEqual(again.imported, { users: 0, tokens: 0, messages: 0, reservations: 0 });
      assert.deepEqual(again.same, { users: 1, tokens: 0, messages: 2, reservations: 0 });
      assert.equal(hasConflicts(again), false, 'a conflict the plan knew (--on-conflict skip) is not written, so not mistaken for a race');
    } finally {
      await done();
    }
  });

  it('names a user a server created between the plan and the write, and never adds the file\'s tokens to that account', async () => {
    const { storage, done } = await open();
    try {
      const hash = 'a'.repeat(64);
      const withToken: ExportRecord[] = [
        { type: 'user', id: 'zoe', createdAt: at },
        { type: 'token', user: 'zoe', hash, createdAt: at },
      ];
      const plan = await planImport(storage, Readable.from(withToken) as AsyncIterable<ExportRecord>);
      assert.equal(hasConflicts(plan), false, 'zoe was not in the store when planned');
      // Meanwhile a server creates another zoe, with a token of her own.
      assert.equal(await storage.createUser('zoe', 'b'.repeat(64)), true);

      const outcome = await importPlanned(storage, Readable.from(withToken) as AsyncIterable<ExportRecord>, plan);
      assert.deepEqual(outcome.imported, { users: 0, tokens: 0, messages: 0, reservations: 0 });
      assert.deepEqual(outcome.conflicting, { users: 1, tokens: 1, messages: 0, reservations: 0 });
      assert.deepEqual(outcome.conflicts.map((c) => c.kind), ['user', 'token']);
      assert.match(outcome.conflicts[1]!.why, /never merged/);
      assert.equal(await storage.userForToken(hash), null, 'the file\'s token opens no account');
      assert.equal(await storage.userForToken('b'.repeat(64)), 'zoe');
    } finally {
      await done();
    }
  });
}

describe('import race on SQLite', () => {
  raceSuite(async () => {
    const dir = await tempDir('postbox-import-race-');
    const storage = openSqliteStorage({ path: join(dir, 'store.db'), durability: 'relaxed' });
    return {
      storage,
      done: async () => {
        await storage.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
});

await describeWithPostgres('import race on PostgreSQL', () => {
  raceSuite(async () => {
    const schema = await createSchema();
    const storage = await openPostgresStorage({ url: schema.url(), durability: 'relaxed', poolSize: 2 });
    return {
      storage,
      done: async () => {
        await storage.close();
        await schema.drop();
      },
    };
  });
});
