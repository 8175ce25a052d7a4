/**
 * Identities that cannot be confused: user ids are NFC, and ids made only of dots or holding
 * invisible, bidi-control, separator or non-ASCII space characters are refused with a 400
 * naming where they came from.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { Message, Problem } from '../../src/protocol/types.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** A GET whose path goes out exactly as given. */
function rawGet(base: string, path: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    http.get({ hostname, port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

const REFUSED: Record<string, string> = {
  'a dot': '.',
  'two dots': '..',
  'only dots': '....',
  'a zero-width space': 'A\u200Blice',
  'a right-to-left override': '\u202Eecila',
  'a no-break space': 'Ali\u00A0ce',
  'an ideographic space': 'Ali\u3000ce',
  'a line separator': 'Ali\u2028ce',
  'a paragraph separator': 'Ali\u2029ce',
  'a byte order mark': '\uFEFFAlice',
  'a soft hyphen': 'Ali\u00ADce',
  'a control character': 'Ali\u0007ce',
  'fullwidth letters': 'Ａｌｉｃｅ',
  'a ligature': '\uFB01le',
  'a superscript': 'x\u00B2',
  'a Hangul filler': '\u3164',
  'a Hangul filler inside': 'Al\u3164ice',
  'a Hangul choseong filler': '\u115F\u1160',
  'a combining grapheme joiner': 'Ali\u034Fce',
  'a variation selector': 'Alice\uFE0F',
  'a private-use character': 'Ali\uE000ce',
  'an unassigned code point': 'Ali\u0378ce',
  'the blank braille pattern': '\u2800',
  'a leading combining mark': '\u0301Alice',
  'a leading space': ' Alice',
  'a trailing space': 'Alice ',
  'two spaces in a row': 'Anne  Marie',
  'a backslash (URL libraries read it as a slash)': 'a\\b',
};

describe('user ids', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());
  const send = (body: unknown) => server.app.inject({ method: 'POST', url: '/v1/messages', payload: body as object });

  for (const [what, id] of Object.entries(REFUSED)) {
    it(`refuses an id with ${what} as toUser, fromUser and a path segment, storing nothing`, async () => {
      const asTo = await send({ fromUser: 'val', toUser: id, message: 'hi' });
      assert.equal(asTo.statusCode, 400, asTo.body);
      assert.deepEqual(asTo.json<Problem>().errors.map((e) => e.field), ['toUser']);
      const asFrom = await send({ fromUser: id, toUser: 'val', message: 'hi' });
      assert.equal(asFrom.statusCode, 400);
      assert.deepEqual(asFrom.json<Problem>().errors.map((e) => e.field), ['fromUser']);
      const legacy = await server.app.inject({ method: 'POST', url: '/post-message', payload: JSON.stringify({ fromUser: 'val', toUser: id, message: 'hi' }) });
      assert.equal(legacy.statusCode, 400);
      // Over a socket with the path as written: a URL-normalising client (inject's included)
      // would drop a dot segment before the server saw it.
      const path = await rawGet(server.url, `/v1/users/${encodeURIComponent(id).replaceAll('.', '%2E')}/messages`);
      assert.equal(path.status, 400, path.body);
      assert.deepEqual((JSON.parse(path.body) as Problem).errors.map((e) => e.field), ['user']);
      const inbox = await server.app.inject({ method: 'GET', url: '/get-messages/val' });
      assert.deepEqual(inbox.json(), []);
    });
  }

  it('keeps the ordinary space, dots inside an id, and letters of any script', async () => {
    for (const id of ['Val Kilmer', '.profile', 'a.b', 'Zoë', '李雷', 'ʻōlelo', 'José', 'Дмитрий', '山田', 'محمد', 'Anne Marie',
      '김민준', 'नमस्ते', 'שלום', 'Ελένη', 'Nguyễn Văn An', 'ไทย', 'O\'Brien', 'user_1-2']) {
      const res = await send({ fromUser: 'val', toUser: id, message: 'hi' });
      assert.equal(res.statusCode, 201, `${id}: ${res.body}`);
    }
  });

  it('refuses a compatibility form, naming the plain form to use, and does not fold it into that user', async () => {
    const res = await send({ fromUser: 'val', toUser: 'Ａｌｉｃｅ', message: 'hi' });
    assert.equal(res.statusCode, 400);
    const problem = res.json<Problem>();
    assert.deepEqual(problem.errors.map((e) => e.field), ['toUser']);
    assert.match(problem.detail, /compatibility characters.*: use "Alice"/);
    const byPath = await server.app.inject({ method: 'GET', url: `/v1/users/${encodeURIComponent('ｂｏｂ')}/messages` });
    assert.equal(byPath.statusCode, 400);
    assert.match(byPath.json<Problem>().detail, /use "bob"/);
  });

  it('stores an id in NFC: café typed composed and decomposed is one user', async () => {
    const nfd = 'cafe\u0301';
    const nfc = 'caf\u00E9';
    const sent = await send({ fromUser: 'val', toUser: nfd, message: 'one' });
    assert.equal(sent.statusCode, 201);
    assert.equal(sent.json<Message>().toUser, nfc);
    await send({ fromUser: nfd, toUser: 'val', message: 'two' });
    const inbox = await server.app.inject({ method: 'GET', url: `/v1/users/${encodeURIComponent(nfc)}/messages` });
    assert.deepEqual(inbox.json<{ messages: Message[] }>().messages.map((m) => m.message), ['one']);
    const viaNfd = await server.app.inject({ method: 'GET', url: `/get-messages/${encodeURIComponent(nfd)}` });
    assert.deepEqual((viaNfd.json<Message[]>()).map((m) => m.message), ['one']);
    const sentBox = await server.app.inject({ method: 'GET', url: `/v1/users/${encodeURIComponent(nfc)}/sent` });
    assert.deepEqual(sentBox.json<{ messages: Message[] }>().messages.map((m) => m.message), ['two']);
  });
});
