/**
 * The web app's page is revalidated cheaply: an ETag from its bytes, a 304 when the browser
 * already has them. Through inject; the browser tests are in test/e2e/.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { APP_CSP, etagMatches } from '../../src/http/webapp.js';
import { buildTestApp, type TestApp } from '../helpers/app.js';
import { ensureWebBuilt } from '../helpers/web-build.js';

describe('web app page', () => {
  let server: TestApp;
  before(async () => {
    ensureWebBuilt();
    server = await buildTestApp();
  });
  after(() => server?.stop());

  it('answers index.html with a strong ETag, the same on every load', async () => {
    const first = await server.request('/');
    assert.equal(first.status, 200);
    assert.equal(first.text, await readFile(new URL('../../dist/web/index.html', import.meta.url), 'utf8'));
    const etag = first.headers.etag;
    assert.match(String(etag), /^"[\w-]{22}"$/);
    assert.equal(first.headers['cache-control'], 'no-cache', 'revalidated on every load');
    assert.equal((await server.request('/')).headers.etag, etag);
  });

  it('answers 304 with no body to If-None-Match naming it, and the page otherwise', async () => {
    const etag = String((await server.request('/')).headers.etag);
    for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const res = await server.request('/', { headers: { 'if-none-match': ifNoneMatch } });
      assert.equal(res.status, 304, ifNoneMatch);
      assert.equal(res.text, '');
      assert.equal(res.headers.etag, etag);
      assert.equal(res.headers['cache-control'], 'no-cache');
      assert.equal(res.headers['content-security-policy'], APP_CSP);
    }
    const changed = await server.request('/', { headers: { 'if-none-match': '"an-older-build"' } });
    assert.equal(changed.status, 200);
    assert.match(changed.text, /<html/i);
    assert.equal(changed.headers.etag, etag);
  });

  it('matches If-None-Match as RFC 9110 says: any listed tag, weakly, or *', () => {
    assert.equal(etagMatches(undefined, '"a"'), false);
    assert.equal(etagMatches('"a"', '"a"'), true);
    assert.equal(etagMatches('W/"a"', '"a"'), true);
    assert.equal(etagMatches(' "b" , "a" ', '"a"'), true);
    assert.equal(etagMatches('*', '"a"'), true);
    assert.equal(etagMatches('"b"', '"a"'), false);
    assert.equal(etagMatches('a', '"a"'), false, 'an unquoted tag is not the quoted one');
  });
});
