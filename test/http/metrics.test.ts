/**
 * /metrics in the Prometheus text format.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildTestApp } from '../helpers/app.js';

describe('metrics', () => {
  it('counts requests by route and status, messages stored, open streams, and the process', async () => {
    const server = await buildTestApp();
    try {
      await server.postJson('/v1/messages', { fromUser: 'a', toUser: 'b', message: 'one' });
      await server.postJson('/v1/messages', { fromUser: 'a', toUser: 'b', message: 'two' }, { 'idempotency-key': 'k' });
      await server.postJson('/v1/messages', { fromUser: 'a', toUser: 'b', message: 'two' }, { 'idempotency-key': 'k' });
      await server.request('/v1/users/b/messages?limit=abc');
      await server.request('/nowhere');
      const res = await server.request('/metrics');
      assert.equal(res.status, 200);
      assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      const text = res.text;
      assert.match(text, /postbox_http_request_duration_seconds_count\{method="POST",route="\/v1\/messages",status_code="201"\} 3/);
      assert.match(text, /postbox_http_request_duration_seconds_count\{method="GET",route="\/v1\/users\/:user\/messages",status_code="400"\} 1/);
      assert.match(text, /postbox_http_request_duration_seconds_count\{method="GET",route="unmatched",status_code="404"\} 1/);
      assert.match(text, /postbox_http_request_duration_seconds_bucket\{le="0.005",method="POST"/);
      assert.match(text, /^postbox_messages_stored_total 2$/m, 'a replay is not a new message');
      assert.match(text, /^postbox_streams_open 0$/m);
      assert.match(text, /^process_resident_memory_bytes \d+/m);
      assert.match(text, /^nodejs_eventloop_lag_seconds /m);
    } finally {
      await server.stop();
    }
  });
});
