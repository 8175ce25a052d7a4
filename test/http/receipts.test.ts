/**
 * Read receipts on the stream: when a recipient marks messages read, each sender's stream
 * hears `event: receipt` with the ids of its own messages only; the reader hears `read`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Message } from '../../src/protocol/types.js';
import { postJson } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { openStream } from '../helpers/sse.js';

let server: TestServer;

async function send(from: string, to: string, message: string): Promise<Message> {
  const res = await postJson(server.url, '/v1/messages', { fromUser: from, toUser: to, message });
  assert.equal(res.status, 201, res.text);
  return res.json<Message>();
}

async function subscribed(user: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (server.hub.listenersOf(user) < 1) {
    if (Date.now() > deadline) throw new Error('stream never subscribed');
    await new Promise((r) => setImmediate(r));
  }
}

before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

describe('read receipts', () => {
  it('tells each sender which of its messages were read, and by whom', async () => {
    const [ann, bob, cy] = ['ann-r', 'bob-r', 'cy-r'];
    const fromAnn = [await send(ann, bob, 'one'), await send(ann, bob, 'two')];
    const fromCy = await send(cy, bob, 'three');
    const annStream = await openStream(server.url, `/v1/users/${ann}/stream`);
    const cyStream = await openStream(server.url, `/v1/users/${cy}/stream`);
    const bobStream = await openStream(server.url, `/v1/users/${bob}/stream`);
    try {
      await Promise.all([subscribed(ann), subscribed(cy), subscribed(bob)]);
      const read = await postJson(server.url, `/v1/users/${bob}/read`, { upTo: fromCy.id });
      assert.equal(read.status, 200, read.text);
      const [annReceipt] = await annStream.waitFor(1, 'receipt');
      const body = JSON.parse(annReceipt!.data) as { ids: string[]; readAt: string; by: string };
      assert.deepEqual(body.ids, fromAnn.map((m) => m.id), 'only her own messages');
      assert.equal(body.by, bob);
      const [cyReceipt] = await cyStream.waitFor(1, 'receipt');
      assert.deepEqual((JSON.parse(cyReceipt!.data) as { ids: string[] }).ids, [fromCy.id]);
      const [bobRead] = await bobStream.waitFor(1, 'read');
      assert.deepEqual((JSON.parse(bobRead!.data) as { ids: string[] }).ids, [...fromAnn, fromCy].map((m) => m.id));
      assert.equal(bobStream.events.filter((e) => e.event === 'receipt').length, 0, 'the reader gets no receipt');
      assert.equal(annStream.events.filter((e) => e.event === 'read').length, 0, 'the sender gets no read event');
    } finally {
      annStream.close();
      cyStream.close();
      bobStream.close();
    }
  });
});
