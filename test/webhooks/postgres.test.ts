/**
 * Webhooks on PostgreSQL with two instances on one database: each delivery goes out once
 * (its one attempt), in order, whichever instance committed the change and whichever
 * delivers it; while the receiver fails, each retry goes out once too; and a change that
 * rolls back leaves no delivery.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import type { Message } from '../../src/protocol/types.js';
import { openPostgresStorage, type PostgresStorage } from '../../src/storage/postgres/postgres-storage.js';
import type { StoredDelivery } from '../../src/storage/webhooks.js';
import { retryDelay, WebhookDispatcher } from '../../src/webhooks/dispatcher.js';
import { createSchema, describeWithPostgres, type TestSchema } from '../helpers/pg.js';
import { until } from '../helpers/wait.js';
import { addEndpoint, startReceiver, testDispatcher, TestClock, type Receiver } from './helpers.js';

await describeWithPostgres('webhooks on PostgreSQL, two instances', () => {
  let schema: TestSchema;
  let a: PostgresStorage;
  let b: PostgresStorage;
  let r: Receiver;
  const dispatchers: WebhookDispatcher[] = [];

  before(async () => {
    schema = await createSchema();
    a = await openPostgresStorage({ url: schema.url(), durability: 'relaxed', poolSize: 3 });
    b = await openPostgresStorage({ url: schema.url(), durability: 'relaxed', poolSize: 3 });
    r = await startReceiver();
  });
  after(async () => {
    for (const d of dispatchers) await d.close();
    await r.close();
    await a.close();
    await b.close();
    await schema.drop();
  });

  it('delivers every event once, in order, with both instances dispatching', async () => {
    const hook = await addEndpoint(a, r.url, ['message.created']);
    const logger = pino({ level: 'silent' });
    for (const s of [a, b]) {
      const d = new WebhookDispatcher(s.webhooks, { allowPrivate: true, retentionMs: 3600_000, logger, pollMs: 20 });
      s.onEvents(() => d.wake());
      d.start();
      dispatchers.push(d);
    }
    const total = 40;
    const sent: Message[] = [];
    for (let i = 0; i < total; i += 2) {
      const [x, y] = await Promise.all([
        a.send({ fromUser: 'ann', toUser: 'bob', message: `m${i}` }),
        b.send({ fromUser: 'bob', toUser: 'ann', message: `m${i + 1}` }),
      ]);
      for (const out of [x, y]) if (out.kind === 'stored') sent.push(out.message);
    }
    const calls = await r.waitAccepted(total, 30_000);
    // Both dispatchers keep polling a while longer: a second attempt would show up here.
    for (let round = 0; round < 5; round++) for (const d of dispatchers) await d.runOnce();
    assert.equal(r.calls.length, total, 'one call per delivery: no attempt made twice');
    const ids = calls.map((c) => String(c.headers['webhook-id']));
    assert.equal(new Set(ids).size, total);
    const received = calls.map((c) => (JSON.parse(c.body) as { data: Message }).data.id);
    assert.deepEqual(received, sent.map((m) => m.id).sort((x, y) => Number(x) - Number(y)), 'in commit order');
    // The last call's result is recorded just after the receiver answered it.
    let deliveries: StoredDelivery[] = [];
    await until(async () => (deliveries = (await b.webhooks.listDeliveries(hook.id, { limit: 100 })).deliveries)
      .every((d) => d.status === 'delivered'), () => `every delivery recorded (${deliveries.map((d) => d.status).join(' ')})`);
    assert.ok(deliveries.every((d) => d.attempts === 1 && d.history!.length === 1));
  });

  it('makes each retry attempt once across both instances while the receiver fails', async () => {
    // A schema of its own: the dispatchers of the test above keep running on theirs.
    const own = await createSchema();
    const x = await openPostgresStorage({ url: own.url(), durability: 'relaxed', poolSize: 3 });
    const y = await openPostgresStorage({ url: own.url(), durability: 'relaxed', poolSize: 3 });
    const failing = await startReceiver();
    failing.status = 503;
    try {
      const hooks = [];
      for (let i = 0; i < 3; i++) hooks.push(await addEndpoint(x, `${failing.url}?endpoint=${i}`, ['user.created']));
      await y.createUser('retry-ann', 'h1');
      // One clock for both instances, moved to each retry's due time in turn.
      const clock = new TestClock();
      const dispatchers = [testDispatcher(x, clock), testDispatcher(y, clock)];
      const attempts = 4;
      for (let n = 1; n <= attempts; n++) {
        // Both race for each due attempt, a few rounds each.
        await Promise.all(dispatchers.map(async (d) => {
          for (let round = 0; round < 3; round++) await d.runOnce();
        }));
        clock.advance(retryDelay(n, () => 0.999));
      }
      // An attempt is a delivery (webhook-id) at a time (webhook-timestamp, a step apart here).
      const perAttempt = new Map<string, number>();
      for (const c of failing.calls) {
        const key = `${String(c.headers['webhook-id'])} at ${String(c.headers['webhook-timestamp'])}`;
        perAttempt.set(key, (perAttempt.get(key) ?? 0) + 1);
      }
      assert.deepEqual([...perAttempt].filter(([, count]) => count !== 1), [], 'no attempt made twice');
      assert.equal(perAttempt.size, hooks.length * attempts, 'every due attempt made');
      for (const hook of hooks) {
        const { deliveries } = await x.webhooks.listDeliveries(hook.id, { limit: 10 });
        assert.deepEqual(deliveries.map((d) => [d.status, d.attempts, d.lastStatus]), [['pending', attempts, 503]]);
      }
    } finally {
      await failing.close();
      await x.close();
      await y.close();
      await own.drop();
    }
  });

  it('writes no delivery for a change that rolled back', async () => {
    const hook = await addEndpoint(a, r.url, ['message.created']);
    // Make the database itself refuse one message, as a constraint or a full disk would.
    const client = new pg.Client({ connectionString: schema.url() });
    await client.connect();
    try {
      await client.query(`CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.body = 'boom' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$`);
      await client.query('CREATE TRIGGER refuse_boom BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_boom()');
    } finally {
      await client.end();
    }
    const results = await Promise.allSettled([
      a.send({ fromUser: 'x', toUser: 'y', message: 'kept' }, { key: 'k1', fingerprint: 'f1' }),
      a.send({ fromUser: 'x', toUser: 'y', message: 'boom' }, { key: 'k2', fingerprint: 'f2' }),
    ]);
    assert.deepEqual(results.map((x) => x.status), ['fulfilled', 'rejected']);
    const { deliveries } = await a.webhooks.listDeliveries(hook.id, { limit: 10 });
    assert.deepEqual(deliveries.map((d) => (JSON.parse(d.payload) as { data: Message }).data.message), ['kept']);
  });
});
