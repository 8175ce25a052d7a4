/**
 * The page routes send pages as text (protocol/wire.ts), so Fastify's response serializer
 * does not run on them. This proves the text is what that serializer would have written from
 * the same page, and that it satisfies MessagePageSchema, for texts that exercise escaping.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Fastify from 'fastify';
import { Value } from 'typebox/value';
import { MessagePageSchema } from '../../src/http/schemas.js';
import type { Message } from '../../src/protocol/types.js';
import { messageJson, pageJson, type WireRow } from '../../src/protocol/wire.js';

const texts = [
  '', 'plain', 'say "hi" \\ back\nnew\ttab\r\b\f', '\u0001\u001f\u007f', 'é👋 مرحبا \u2028\u2029 </script>', 'x'.repeat(5000),
];

function rowsOf(messages: Message[]): WireRow[] {
  return messages.map((m) => [m.id, messageJson(m)] as const);
}

describe('the wire renderer', () => {
  const messages: Message[] = texts.map((message, i) => ({
    id: String(i + 1), fromUser: `from ${i}`, toUser: 'to"user', message,
    sentAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i, i * 7)).toISOString(),
    readAt: i % 2 === 0 ? null : new Date(Date.UTC(2026, 0, 2)).toISOString(),
  }));

  it('writes exactly the bytes Fastify serializes from the same page under MessagePageSchema', async () => {
    const app = Fastify();
    const cases = [null, '6'].flatMap((next) => [[], messages.slice(0, 1), messages].map((page) => ({ messages: page, next })));
    app.get('/:n', { schema: { response: { 200: MessagePageSchema } } },
      (request) => cases[Number((request.params as { n: string }).n)]);
    try {
      for (const [n, page] of cases.entries()) {
        const text = pageJson(rowsOf(page.messages), page.next);
        const served = await app.inject({ method: 'GET', url: `/${n}` });
        assert.equal(served.statusCode, 200);
        assert.equal(text, served.body);
      }
    } finally {
      await app.close();
    }
  });

  it('writes pages that satisfy MessagePageSchema', () => {
    const page: unknown = JSON.parse(pageJson(rowsOf(messages), '6'));
    assert.ok(Value.Check(MessagePageSchema, page), JSON.stringify([...Value.Errors(MessagePageSchema, page)].slice(0, 3)));
  });

  it('keeps a message\'s keys in the wire order whatever order the object has', () => {
    const m = messages[2]!;
    const shuffled = { readAt: m.readAt, sentAt: m.sentAt, message: m.message, toUser: m.toUser, fromUser: m.fromUser, id: m.id };
    assert.equal(messageJson(shuffled), JSON.stringify(m));
  });
});
