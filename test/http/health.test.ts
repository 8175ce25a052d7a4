/**
 * Liveness and readiness.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildTestApp } from '../helpers/app.js';
import { until } from '../helpers/wait.js';

describe('health', () => {
  it('is alive and ready while storage answers; not ready once it does not', async () => {
    const server = await buildTestApp();
    try {
      assert.deepEqual((await server.request('/healthz')).json(), { status: 'ok' });
      // Readiness has a budget of under a second; on a starved machine a first probe may miss it.
      let ready = await server.request('/readyz');
      await until(async () => (ready = await server.request('/readyz')).status === 200, () => `ready: ${ready.text}`, 20_000, 20);
      assert.deepEqual(ready.json(), { status: 'ok' });
      await server.storage.close();
      const down = await server.request('/readyz');
      assert.equal(down.status, 503);
      assert.equal(down.headers['retry-after'], '1');
      assert.match(String(down.headers['content-type']), /^application\/problem\+json/);
      assert.equal((await server.request('/healthz')).status, 200, 'alive even without storage');
      const send = await server.request('/post-message', { method: 'POST', body: '{"fromUser":"a","toUser":"b","message":"m"}' });
      assert.equal(send.status, 503, 'a send without storage is a 503, never a 500');
    } finally {
      await server.stop();
    }
  });
});
