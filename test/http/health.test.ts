/**
 * Liveness and readiness.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from '../helpers/http.js';
import { startTestServer } from '../helpers/server.js';

describe('health', () => {
  it('is alive and ready while storage answers; not ready once it does not', async () => {
    const server = await startTestServer();
    try {
      assert.deepEqual((await request(server.url, '/healthz')).json(), { status: 'ok' });
      // Readiness has a budget of under a second; on a starved machine a first probe may miss it.
      const deadline = Date.now() + 20_000;
      let ready = await request(server.url, '/readyz');
      while (ready.status !== 200 && Date.now() < deadline) ready = await request(server.url, '/readyz');
      assert.deepEqual(ready.json(), { status: 'ok' });
      await server.storage.close();
      const down = await request(server.url, '/readyz');
      assert.equal(down.status, 503);
      assert.equal(down.headers['retry-after'], '1');
      assert.match(String(down.headers['content-type']), /^application\/problem\+json/);
      assert.equal((await request(server.url, '/healthz')).status, 200, 'alive even without storage');
      const send = await request(server.url, '/post-message', { method: 'POST', body: '{"fromUser":"a","toUser":"b","message":"m"}' });
      assert.equal(send.status, 503, 'a send without storage is a 503, never a 500');
    } finally {
      await server.stop();
    }
  });
});
