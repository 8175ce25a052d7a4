/**
 * The client's side of issue 15 against a real server: a token provider asked again when the
 * server says the token expired (a 401, a stream's end), scoped tokens, and the webhook calls.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as jose from 'jose';
import { PostboxClient, PostboxError, verifyWebhook, type Message, type StreamEvent } from '../../src/client/index.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';
import { startReceiver, type Receiver } from '../webhooks/helpers.js';

const SECRET = 'client-test-jwt-secret-0123456789-abcdef';
const ADMIN = 'admin-token-for-the-client-tests-0';
const hmac = new TextEncoder().encode(SECRET);
let server: TestServer;
let receiver: Receiver;

function jwt(sub: string, expiresInSeconds: number): Promise<string> {
  return new jose.SignJWT({ sub }).setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSeconds).sign(hmac);
}

before(async () => {
  server = await startTestServer({
    POSTBOX_AUTH: 'jwt', POSTBOX_JWT_SECRET: SECRET, POSTBOX_JWT_LEEWAY_SECONDS: '0', POSTBOX_ADMIN_TOKEN: ADMIN,
    POSTBOX_WEBHOOK_ALLOW_PRIVATE: 'true',
  });
  receiver = await startReceiver();
});
after(async () => {
  await receiver.close();
  await server.stop();
});

describe('the client with a token provider', () => {
  it('asks the provider again after a 401 and retries the call once', async () => {
    const asked: number[] = [];
    const client = new PostboxClient({
      url: server.url,
      token: () => {
        asked.push(asked.length);
        return jwt('tp-ann', asked.length === 1 ? -60 : 600);
      },
    });
    const page = await client.inbox('tp-ann');
    assert.deepEqual(page.messages, []);
    assert.equal(asked.length, 2, 'the expired token was replaced once');
    const never = new PostboxClient({ url: server.url, token: () => jwt('tp-ann', -60) });
    await assert.rejects(never.inbox('tp-ann'), (err: unknown) => err instanceof PostboxError && err.status === 401);
  });

  it('reconnects a stream that ended because its JWT expired, with a fresh one, losing nothing', async () => {
    let calls = 0;
    const client = new PostboxClient({ url: server.url, token: () => jwt('tp-bob', ++calls === 1 ? 2 : 600) });
    const sender = new PostboxClient({ url: server.url, token: () => jwt('tp-carol', 600) });
    const got: Message[] = [];
    const events: StreamEvent[] = [];
    let sawSecondOpen: () => void = () => undefined;
    const reopened = new Promise<void>((resolve) => (sawSecondOpen = resolve));
    let opens = 0;
    const sub = client.subscribe('tp-bob', {
      after: '0',
      onMessage: (m) => got.push(m),
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'open' && ++opens === 2) sawSecondOpen();
      },
      reconnect: { minMs: 50, maxMs: 200 },
    });
    try {
      await sender.send({ toUser: 'tp-bob', message: 'before expiry' });
      await reopened;
      await sender.send({ toUser: 'tp-bob', message: 'after expiry' });
      await until(() => got.length >= 2, () => `two messages, got ${JSON.stringify(got.map((m) => m.message))}`, 10_000);
      assert.deepEqual(got.map((m) => m.message), ['before expiry', 'after expiry']);
      assert.ok(events.some((e) => e.type === 'end' && e.reason === 'token expired'));
      assert.equal(calls, 2);
    } finally {
      sub.close();
      await sub.closed;
    }
  });

  it('backs off, still asking the provider, when a fresh token runs out again before anything comes', async () => {
    // A server that accepts the token and ends the stream at once with "token expired" (an
    // instance whose clock runs ahead, or one ending streams at exp inside the leeway). A
    // stand-in, because a Postbox server now ends a stream only once it refuses the token.
    let opens = 0;
    const stale = createServer((req, res) => {
      opens++;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end('retry: 500\n\nevent: end\ndata: {"reason":"token expired"}\n\n');
    });
    await new Promise<void>((resolve) => stale.listen(0, '127.0.0.1', resolve));
    let calls = 0;
    let disconnects = 0;
    const client = new PostboxClient({
      url: `http://127.0.0.1:${(stale.address() as AddressInfo).port}`,
      token: () => {
        calls++;
        return jwt('tp-stale', -10);
      },
    });
    const sub = client.subscribe('tp-stale', {
      after: '0',
      onMessage: () => undefined,
      onEvent: (e) => {
        if (e.type === 'disconnected') disconnects++;
      },
    });
    try {
      // A window to count in, not a wait for an event: without the backoff this was over a
      // thousand provider calls and opens; with it, the default 0.5 s doubling allows a few.
      await new Promise((r) => setTimeout(r, 2_000));
      assert.ok(opens >= 2, `the stream was opened again after the first end (${opens} opens)`);
      assert.ok(opens <= 6, `reconnects are bounded by the backoff: ${opens} opens in the window`);
      assert.ok(calls >= 2, `the provider was asked again (${calls} calls)`);
      assert.ok(calls <= opens + 1, `one provider call per reconnect at most: ${calls} calls, ${opens} opens`);
      assert.ok(disconnects >= 1, 'the stale end went through the reconnect backoff');
    } finally {
      sub.close();
      await sub.closed;
      stale.closeAllConnections();
      await new Promise<void>((resolve) => stale.close(() => resolve()));
    }
  });
});

describe('the client\'s scoped tokens and webhooks', () => {
  it('issues a scoped token, and manages a webhook whose calls verify with verifyWebhook', async () => {
    const admin = new PostboxClient({ url: server.url, token: ADMIN });
    await admin.createUser('cl-dave');
    const issued = await admin.createToken('cl-dave', { scopes: ['send'] });
    assert.deepEqual(issued.scopes, ['send']);
    const dave = new PostboxClient({ url: server.url, token: issued.token });
    await dave.send({ toUser: 'cl-erin', message: 'scoped' });
    await assert.rejects(dave.inbox('cl-dave'), (err: unknown) => err instanceof PostboxError && err.status === 403);

    const hook = await admin.createWebhook({ url: receiver.url, events: ['message.created'], description: 'client test' });
    assert.equal((await admin.listWebhooks()).some((w) => w.id === hook.id), true);
    await dave.send({ toUser: 'cl-erin', message: 'told' });
    const [call] = await receiver.waitAccepted(1);
    const event = await verifyWebhook<Message>(hook.secret, call!.headers, call!.body);
    assert.equal(event.data.message, 'told');
    // The receiver answered; the dispatcher records that right after.
    let page = await admin.webhookDeliveries(hook.id);
    await until(async () => (page = await admin.webhookDeliveries(hook.id)).deliveries[0]?.status === 'delivered',
      () => `the delivery recorded as delivered: ${JSON.stringify(page.deliveries[0])}`, 10_000, 20);
    assert.equal(page.deliveries[0]!.status, 'delivered');
    assert.equal((await admin.retryWebhookDelivery(hook.id, page.deliveries[0]!.id)).status, 'pending');
    assert.equal((await admin.updateWebhook(hook.id, { enabled: false })).enabled, false);
    await admin.deleteWebhook(hook.id);
    await assert.rejects(admin.getWebhook(hook.id), (err: unknown) => err instanceof PostboxError && err.status === 404);
  });
});
