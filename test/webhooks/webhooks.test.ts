/**
 * Webhooks end to end on SQLite, with real receivers on port 0: signatures checked by an
 * independent implementation (the `standardwebhooks` package), order and exactly-once
 * acceptance after an outage, retries and giving up (on a test clock, never waiting for a
 * real backoff), calls that time out or redirect counted as failed, no delivery for a write
 * that failed, delivery after kill -9, pruning, and the refusal of private destinations.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { verifyWebhook, WebhookVerificationError, type CreatedWebhook, type WebhookDelivery } from '../../src/protocol/webhooks.js';
import type { Message } from '../../src/protocol/types.js';
import { openSqliteStorage, type SqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import { GIVE_UP_MS, retryDelay, WebhookDispatcher } from '../../src/webhooks/dispatcher.js';
import { checkDestination, DestinationRefused, isPrivateAddress, postWebhook } from '../../src/webhooks/destination.js';
import { spawnServer } from '../helpers/child.js';
import { postJson, request } from '../helpers/http.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';
import { addEndpoint, drain, startReceiver, testDispatcher, TestClock, type Receiver } from './helpers.js';

const ADMIN = 'admin-token-for-webhook-tests-0123';
const asAdmin = { authorization: `Bearer ${ADMIN}` };

const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

async function receiver(): Promise<Receiver> {
  const r = await startReceiver();
  cleanup.push(() => r.close());
  return r;
}

/** A bare HTTP server on port 0 that answers as `handle` says (or never, if it does not). */
async function bareServer(handle: Parameters<typeof createServer>[1]): Promise<{ server: Server; url: string }> {
  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
}

async function store(): Promise<{ storage: SqliteStorage; path: string }> {
  const dir = await tempDir();
  const path = join(dir, 'postbox.db');
  const storage = openSqliteStorage({ path, durability: 'relaxed' });
  cleanup.push(async () => {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { storage, path };
}

describe('webhooks over HTTP', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN, POSTBOX_WEBHOOK_ALLOW_PRIVATE: 'true' });
    cleanup.push(() => server.stop());
  });

  it('signs every event the Standard Webhooks way, verified by an independent implementation', async () => {
    const r = await receiver();
    const created = await postJson(server.url, '/v1/webhooks', {
      url: r.url, events: ['message.created', 'message.read', 'message.deleted', 'user.created', 'user.removed'], description: 'all',
    }, asAdmin);
    assert.equal(created.status, 201, created.text);
    const hook = created.json<CreatedWebhook>();
    assert.match(hook.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
    const shown = await request(server.url, `/v1/webhooks/${hook.id}`, { headers: asAdmin });
    assert.equal(shown.json<Record<string, unknown>>().secret, undefined, 'the secret is shown only once');

    const ann = (await postJson(server.url, '/v1/users', { id: 'wh-ann' }, asAdmin)).json<{ token: string }>().token;
    await postJson(server.url, '/v1/users', { id: 'wh-bob' }, asAdmin);
    const sent = (await postJson(server.url, '/v1/messages', { toUser: 'wh-bob', message: 'hello' }, { authorization: `Bearer ${ann}` })).json<Message>();
    const bob = (await request(server.url, '/v1/users/wh-bob/tokens', { method: 'POST', headers: asAdmin })).json<{ token: string }>().token;
    await postJson(server.url, '/v1/users/wh-bob/read', { upTo: sent.id }, { authorization: `Bearer ${bob}` });
    await request(server.url, `/v1/messages/${sent.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ann}` } });
    await request(server.url, '/v1/users/wh-ann', { method: 'DELETE', headers: asAdmin });

    const calls = await r.waitAccepted(6);
    const independent = new StandardWebhook(hook.secret);
    const events = calls.map((c) => independent.verify(c.body, c.headers as Record<string, string>) as { type: string; data: Record<string, unknown> });
    assert.deepEqual(events.map((e) => e.type),
      ['user.created', 'user.created', 'message.created', 'message.read', 'message.deleted', 'user.removed']);
    assert.deepEqual(events[2]!.data, sent);
    assert.deepEqual(events[3]!.data, { user: 'wh-bob', ids: [sent.id], readAt: (events[3]!.data as { readAt: string }).readAt });
    // The client's verifier agrees, and refuses a body that was changed on the way.
    const first = calls[2]!;
    assert.deepEqual((await verifyWebhook(hook.secret, first.headers, first.body)).data, sent);
    await assert.rejects(verifyWebhook(hook.secret, first.headers, first.body.replace('hello', 'HELLO')), WebhookVerificationError);
    assert.throws(() => independent.verify(first.body.replace('hello', 'HELLO'), first.headers as Record<string, string>));

    const page = (await request(server.url, `/v1/webhooks/${hook.id}/deliveries`, { headers: asAdmin })).json<{ deliveries: WebhookDelivery[] }>();
    assert.equal(page.deliveries.length, 6);
    assert.ok(page.deliveries.every((d) => d.status === 'delivered' && d.attempts === 1 && d.lastStatus === 200));
    assert.ok(page.deliveries.every((d) => d.history.length === 1 && d.history[0]!.httpStatus === 200 && d.history[0]!.at === d.lastAttemptAt));
    assert.deepEqual(calls.map((c) => c.headers['webhook-id']), [...page.deliveries].reverse().map((d) => `msg_${d.id}`));
  });

  it('validates endpoints, and redelivers on request', async () => {
    const r = await receiver();
    for (const body of [{ url: 'ftp://x', events: ['user.created'] }, { url: r.url, events: [] }, { url: r.url, events: ['user.renamed'] }]) {
      const res = await postJson(server.url, '/v1/webhooks', body, asAdmin);
      assert.equal(res.status, 400, res.text);
    }
    const hook = (await postJson(server.url, '/v1/webhooks', { url: r.url, events: ['user.created'] }, asAdmin)).json<CreatedWebhook>();
    await postJson(server.url, '/v1/users', { id: 'wh-carol' }, asAdmin);
    await r.waitAccepted(1);
    const [delivery] = (await request(server.url, `/v1/webhooks/${hook.id}/deliveries`, { headers: asAdmin })).json<{ deliveries: WebhookDelivery[] }>().deliveries;
    const retried = await request(server.url, `/v1/webhooks/${hook.id}/deliveries/${delivery!.id}/retry`, { method: 'POST', headers: asAdmin });
    assert.equal(retried.status, 202, retried.text);
    const again = await r.waitAccepted(2);
    assert.equal(again[1]!.headers['webhook-id'], again[0]!.headers['webhook-id'], 'a redelivery keeps its webhook-id');
    assert.equal((await request(server.url, `/v1/webhooks/${hook.id}/deliveries/999999/retry`, { method: 'POST', headers: asAdmin })).status, 404);

    const patched = await request(server.url, `/v1/webhooks/${hook.id}`, {
      method: 'PATCH', headers: { ...asAdmin, 'content-type': 'application/json' }, body: JSON.stringify({ enabled: false }),
    });
    assert.deepEqual([patched.json<{ enabled: boolean }>().enabled, patched.json<{ disabledReason: string }>().disabledReason], [false, 'disabled by the admin']);
    assert.equal((await request(server.url, `/v1/webhooks/${hook.id}`, { method: 'DELETE', headers: asAdmin })).status, 204);
    assert.equal((await request(server.url, `/v1/webhooks/${hook.id}`, { headers: asAdmin })).status, 404);
  });
});

describe('the dispatcher', () => {
  it('holds an endpoint\'s deliveries back while it is down, then delivers each once, in order', async () => {
    const { storage } = await store();
    const r = await receiver();
    const hook = await addEndpoint(storage, r.url, ['message.created']);
    r.status = 503;
    for (let i = 1; i <= 5; i++) await storage.send({ fromUser: 'a', toUser: 'b', message: `m${i}` });
    // The test's clock starts after the events were written, and moves only when told.
    const clock = new TestClock();
    const dispatcher = testDispatcher(storage, clock);
    // Down: one attempt, on the oldest; the others wait behind it.
    assert.equal(await dispatcher.runOnce(), 1);
    assert.equal(await dispatcher.runOnce(), 0, 'nothing goes again before the backoff');
    clock.advance(retryDelay(1, () => 0.999));
    assert.equal(await dispatcher.runOnce(), 1);
    assert.deepEqual(r.calls.map((c) => (JSON.parse(c.body) as { data: Message }).data.message), ['m1', 'm1']);
    // Up again, after the next backoff: everything, once each, oldest first.
    r.status = 200;
    clock.advance(retryDelay(2, () => 0.999));
    await drain(dispatcher);
    const accepted = r.accepted().map((c) => (JSON.parse(c.body) as { data: Message }).data.message);
    assert.deepEqual(accepted, ['m1', 'm2', 'm3', 'm4', 'm5']);
    const ids = r.accepted().map((c) => Number(String(c.headers['webhook-id']).slice(4)));
    assert.deepEqual(ids, [...ids].sort((x, y) => x - y));
    // The listing shows each attempt, not only the latest.
    const m1 = (await storage.webhooks.listDeliveries(hook.id, { limit: 10 })).deliveries.at(-1)!;
    assert.deepEqual(m1.history!.map((a) => [a.httpStatus, a.error]), [[503, 'answered HTTP 503'], [503, 'answered HTTP 503'], [200, null]]);
  });

  it('backs off exponentially with jitter, gives up after 24 hours, and disables an endpoint failing that long', async () => {
    assert.deepEqual([1, 2, 3, 4].map((n) => retryDelay(n, () => 0.999)), [4998, 9995, 19990, 39980]);
    assert.equal(retryDelay(1, () => 0), 2500, 'jitter takes up to half off');
    assert.equal(retryDelay(40, () => 0.999), 3_598_200, 'capped at an hour');

    const { storage } = await store();
    const r = await receiver();
    const hook = await addEndpoint(storage, r.url, ['user.created']);
    r.status = 500;
    await storage.createUser('gone', 'h1');
    await storage.createUser('next', 'h2');
    const clock = new TestClock();
    const dispatcher = testDispatcher(storage, clock);
    assert.equal(await dispatcher.runOnce(), 1);
    let [endpoint] = await storage.webhooks.listWebhooks();
    assert.equal(endpoint!.failingSince, clock.ms, 'failing since the first failure');
    clock.advance(GIVE_UP_MS);
    assert.equal(await dispatcher.runOnce(), 1);
    const { deliveries } = await storage.webhooks.listDeliveries(hook.id, { limit: 10 });
    assert.deepEqual(deliveries.map((d) => [d.status, d.attempts, d.lastStatus]), [['pending', 0, null], ['failed', 2, 500]]);
    [endpoint] = await storage.webhooks.listWebhooks();
    assert.equal(endpoint!.enabled, false);
    assert.match(endpoint!.disabledReason ?? '', /every call failed for 24 hours .*answered HTTP 500/);
    assert.equal(await dispatcher.runOnce(), 0, 'a disabled endpoint is not called');
  });

  it('counts a call that gets no answer within the timeout as failed, and tries it again', async () => {
    const { storage } = await store();
    let requests = 0;
    // Accepts every call and never answers it.
    const { url } = await bareServer(() => void requests++);
    const hook = await addEndpoint(storage, url, ['user.created']);
    await storage.createUser('slow-ann', 'h1');
    const clock = new TestClock();
    const dispatcher = testDispatcher(storage, clock, { callTimeoutMs: 300 });
    assert.equal(await dispatcher.runOnce(), 1);
    let [d] = (await storage.webhooks.listDeliveries(hook.id, { limit: 10 })).deliveries;
    assert.deepEqual([d!.status, d!.attempts, d!.lastStatus], ['pending', 1, null]);
    assert.match(d!.lastError ?? '', /no answer within 0\.3 s/);
    assert.equal(d!.nextAttemptAt, clock.ms + retryDelay(1, () => 0.999), 'retried after the backoff');
    clock.advance(retryDelay(1, () => 0.999));
    assert.equal(await dispatcher.runOnce(), 1);
    [d] = (await storage.webhooks.listDeliveries(hook.id, { limit: 10 })).deliveries;
    assert.deepEqual([d!.status, d!.attempts], ['pending', 2]);
    assert.equal(requests, 2, 'each attempt reached the receiver');
  });

  it('follows no redirect: a 3xx is a failed attempt, and its target hears nothing', async () => {
    const { storage } = await store();
    const target = await receiver();
    let redirected = 0;
    const { url } = await bareServer((req, res) => {
      redirected++;
      req.resume();
      res.writeHead(302, { location: target.url }).end();
    });
    const hook = await addEndpoint(storage, url, ['user.created']);
    await storage.createUser('moved-ann', 'h1');
    const clock = new TestClock();
    const dispatcher = testDispatcher(storage, clock);
    assert.equal(await dispatcher.runOnce(), 1);
    const [d] = (await storage.webhooks.listDeliveries(hook.id, { limit: 10 })).deliveries;
    assert.deepEqual([d!.status, d!.attempts, d!.lastStatus, d!.lastError], ['pending', 1, 302, 'answered HTTP 302']);
    assert.equal(redirected, 1);
    assert.equal(target.calls.length, 0, 'the redirect target was not called');
  });

  it('writes no delivery for a write that failed', async () => {
    const { storage, path } = await store();
    const r = await receiver();
    const hook = await addEndpoint(storage, r.url, ['message.created']);
    // Make the store itself refuse one message, as a full disk or a constraint would.
    const db = new Database(path);
    db.exec(`CREATE TRIGGER refuse_boom BEFORE INSERT ON messages WHEN NEW.json LIKE '%"message":"boom"%'
             BEGIN SELECT RAISE(ABORT, 'refused'); END`);
    db.close();
    const results = await Promise.allSettled([
      storage.send({ fromUser: 'a', toUser: 'b', message: 'before' }),
      storage.send({ fromUser: 'a', toUser: 'b', message: 'boom' }),
      storage.send({ fromUser: 'a', toUser: 'b', message: 'after' }),
    ]);
    assert.deepEqual(results.map((x) => x.status), ['fulfilled', 'rejected', 'fulfilled']);
    await drain(testDispatcher(storage, new TestClock()));
    assert.deepEqual(r.accepted().map((c) => (JSON.parse(c.body) as { data: Message }).data.message), ['before', 'after']);
    assert.equal((await storage.webhooks.listDeliveries(hook.id, { limit: 10 })).deliveries.length, 2);
  });

  it('prunes delivered rows after the retention time, and keeps the rest', async () => {
    const { storage } = await store();
    const r = await receiver();
    const hook = await addEndpoint(storage, r.url, ['user.created']);
    await storage.createUser('p1', 'h1');
    const clock = new TestClock();
    const dispatcher = testDispatcher(storage, clock, { retentionMs: 3600_000 });
    await drain(dispatcher);
    assert.equal((await storage.webhooks.listDeliveries(hook.id, { limit: 10 })).deliveries.length, 1);
    clock.advance(2 * 3600_000);
    await dispatcher.runOnce();
    assert.equal((await storage.webhooks.listDeliveries(hook.id, { limit: 10 })).deliveries.length, 0);
  });
});

describe('endpoints side by side', () => {
  it('delivers every event to a healthy endpoint while a slow one is still answering its first', async () => {
    const { storage, path } = await store();
    const healthy = await receiver();
    // The slow endpoint holds its calls open until the test lets it answer.
    const held: string[] = [];
    let holding = true;
    let release: (() => void) | undefined;
    let firstHeld: (() => void) | undefined;
    const slow = await bareServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        held.push(Buffer.concat(chunks).toString('utf8'));
        const answer = () => res.writeHead(200).end();
        if (!holding) return answer();
        release = answer;
        firstHeld?.();
      });
    });
    await addEndpoint(storage, slow.url, ['user.created']);
    const fine = await addEndpoint(storage, healthy.url, ['user.created']);
    const db = new Database(path, { readonly: true });
    cleanup.push(() => Promise.resolve(db.close()));
    const leased = db.prepare('SELECT lease_owner FROM webhooks WHERE id = ?').pluck();
    const dispatcher = new WebhookDispatcher(storage.webhooks, {
      allowPrivate: true, retentionMs: 3600_000, logger: pino({ level: 'silent' }), pollMs: 20, callTimeoutMs: 20_000,
    });
    cleanup.push(() => dispatcher.close());
    dispatcher.start();
    const user = (n: number) => (JSON.parse(healthy.accepted()[n]!.body) as { data: { id: string } }).data.id;

    await storage.createUser('side-0');
    await new Promise<void>((resolve) => {
      firstHeld = resolve;
      if (held.length > 0) resolve();
    });
    // The healthy endpoint is done with its first event and has given its lease back: what
    // comes next must be taken on while the slow one is still being served.
    await healthy.waitAccepted(1);
    await until(() => leased.get(fine.id) === null, 'the healthy endpoint\'s lease to be given back');
    for (let i = 1; i <= 5; i++) await storage.createUser(`side-${i}`);
    // Every event reaches the healthy endpoint while the slow one's first call is still open.
    await healthy.waitAccepted(6, 10_000);
    assert.equal(held.length, 1, 'the slow endpoint got its first call only: its order holds');
    assert.deepEqual([0, 1, 2, 3, 4, 5].map(user), ['side-0', 'side-1', 'side-2', 'side-3', 'side-4', 'side-5']);

    // Then the slow one answers, and gets the rest in order, one call at a time.
    holding = false;
    release!();
    await until(() => held.length === 6, () => `the slow endpoint's calls (${held.length} of 6)`);
    assert.deepEqual(held.map((h) => (JSON.parse(h) as { data: { id: string } }).data.id),
      ['side-0', 'side-1', 'side-2', 'side-3', 'side-4', 'side-5']);
    await dispatcher.close();
  });
});

describe('waking the dispatcher', () => {
  it('delivers user.created at once, without waiting for the poll', async () => {
    const { storage } = await store();
    const r = await receiver();
    await addEndpoint(storage, r.url, ['user.created']);
    // A poll too slow for this test to outlast: only the store's word can bring the event.
    const dispatcher = new WebhookDispatcher(storage.webhooks, {
      allowPrivate: true, retentionMs: 3600_000, logger: pino({ level: 'silent' }), pollMs: 600_000,
    });
    // As server.ts wires it.
    storage.webhooks.onDeliveries(() => dispatcher.wake());
    cleanup.push(() => dispatcher.close());
    dispatcher.start();
    await storage.createUser('woken-0');
    await storage.createUser('woken-1');
    const calls = await r.waitAccepted(2, 10_000);
    assert.deepEqual(calls.map((c) => (JSON.parse(c.body) as { data: { id: string } }).data.id), ['woken-0', 'woken-1']);
  });
});

describe('delivery across a crash', () => {
  it('delivers after kill -9 what was committed before it, once', async () => {
    const dir = await tempDir();
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'postbox.db');
    // The receiver's port, with nothing listening on it until after the crash: no call made
    // before the kill can have been delivered.
    const probe = await startReceiver();
    const port = Number(new URL(probe.url).port);
    await probe.close();
    const env = {
      DATABASE_URL: `sqlite:${path}`, POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN,
      POSTBOX_WEBHOOK_ALLOW_PRIVATE: 'true', POSTBOX_DURABILITY: 'fsync',
    };
    let child = await spawnServer(env);
    cleanup.push(() => Promise.resolve(child.process.kill('SIGKILL')));
    const hook = (await postJson(child.url, '/v1/webhooks', { url: probe.url, events: ['user.created'] }, asAdmin)).json<CreatedWebhook>();
    assert.equal((await postJson(child.url, '/v1/users', { id: 'crash-ann' }, asAdmin)).status, 201);
    // The event is committed with the user. Kill once the endpoint's lease is back (a lease
    // held by a dead process would delay the restart's call by its full minute).
    const file = new Database(path, { readonly: true });
    cleanup.push(() => Promise.resolve(file.close()));
    const state = () => file.prepare(`SELECT d.status, d.attempts, w.lease_owner AS owner
      FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id`).get() as { status: string; attempts: number; owner: string | null };
    await until(() => state().attempts >= 1 && state().owner === null, () => `a refused attempt, lease given back: ${JSON.stringify(state())}`);
    child.process.kill('SIGKILL');
    await child.exited;
    assert.equal(state().status, 'pending', 'not delivered before the kill');

    const r = await startReceiver(port);
    cleanup.push(() => r.close());
    child = await spawnServer(env);
    const [call] = await r.waitAccepted(1, 30_000);
    assert.deepEqual((await verifyWebhook(hook.secret, call!.headers, call!.body)).data, { id: 'crash-ann' });
    await until(() => state().status === 'delivered', () => `the delivery recorded: ${JSON.stringify(state())}`);
    assert.equal(r.calls.length, 1, 'delivered once');
    child.process.kill('SIGTERM');
    await child.exited;
  });
});

describe('private destinations (SSRF)', () => {
  it('knows which addresses are internal', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '0.0.0.0', '100.64.0.1', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1']) {
      assert.equal(isPrivateAddress(a), true, a);
    }
    for (const a of ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946', '8.8.8.8']) assert.equal(isPrivateAddress(a), false, a);
  });

  it('sees through IPv6 spellings of internal IPv4 addresses, and refuses site-local IPv6', async () => {
    const table: [address: string, internal: boolean][] = [
      // IPv4-mapped ::ffff:0:0/96, dotted and hex.
      ['::ffff:10.0.0.1', true], ['::ffff:a00:1', true], ['::ffff:7f00:1', true], ['::ffff:8.8.8.8', false],
      // IPv4-compatible ::/96 (deprecated).
      ['::127.0.0.1', true], ['::7f00:1', true], ['::10.1.2.3', true], ['::169.254.169.254', true], ['::192.168.0.1', true],
      ['::8.8.8.8', false],
      // IPv4-translated ::ffff:0:0:0/96.
      ['::ffff:0:127.0.0.1', true], ['::ffff:0:a9fe:a9fe', true], ['::ffff:0:10.0.0.1', true], ['::ffff:0:8.8.8.8', false],
      // 6to4 2002::/16, the IPv4 address in bits 16-47.
      ['2002:7f00:1::', true], ['2002:a00:1::1', true], ['2002:c0a8:101::1', true], ['2002:a9fe:a9fe::', true],
      ['2002:808:808::1', false],
      // Site-local fec0::/10.
      ['fec0::1', true], ['feff:ffff::1', true], ['fec0::8.8.8.8', true],
      // Unchanged: the rest of IPv6.
      ['::', true], ['::1', true], ['fe80::1%eth0', true], ['2606:2800:220:1:248:1893:25c8:1946', false], ['2001:db8::1', false],
    ];
    const wrong = table.filter(([address, internal]) => isPrivateAddress(address) !== internal);
    assert.deepEqual(wrong, [], 'each address classified as the table says');
    // As URL hosts (which the URL parser rewrites into hex), refused when an endpoint is saved.
    for (const host of ['[::127.0.0.1]', '[::ffff:0:169.254.169.254]', '[2002:a00:1::1]', '[fec0::1]']) {
      await assert.rejects(checkDestination(`http://${host}/hook`, false), DestinationRefused, host);
    }
  });

  it('refuses them when an endpoint is saved, by address or by a name that resolves to one', async () => {
    for (const url of ['http://127.0.0.1:9/x', 'http://localhost:9/x', 'http://[::1]/x', 'http://169.254.169.254/latest', 'http://10.0.0.1/']) {
      await assert.rejects(checkDestination(url, false), DestinationRefused, url);
    }
    const server = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN });
    cleanup.push(() => server.stop());
    const res = await postJson(server.url, '/v1/webhooks', { url: 'http://localhost:9/hook', events: ['user.created'] }, asAdmin);
    assert.equal(res.status, 400);
    assert.match(res.json<{ detail: string }>().detail, /url resolves to (127\.0\.0\.1|::1), a loopback, private or link-local address/);
  });

  it('refuses them again at connection time, so a name cannot turn private later', async () => {
    const r = await receiver();
    const port = new URL(r.url).port;
    await assert.rejects(postWebhook(`http://127.0.0.1:${port}/`, {}, '{}', { timeoutMs: 5000, allowPrivate: false }), DestinationRefused);
    await assert.rejects(postWebhook(`http://localhost:${port}/`, {}, '{}', { timeoutMs: 5000, allowPrivate: false }), /private addresses/);
    assert.equal(r.calls.length, 0);
    assert.equal((await postWebhook(r.url, {}, '{}', { timeoutMs: 5000, allowPrivate: true })).status, 200);
  });
});
