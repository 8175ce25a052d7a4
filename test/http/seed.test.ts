/**
 * The seed's own tests (python-class-messaging test/test_app.py), reproduced through the app,
 * and the seed README's Python `requests` session run as it is written.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { Message } from '../../src/protocol/types.js';
import { buildTestApp, type TestApp } from '../helpers/app.js';
import { startTestServer } from '../helpers/server.js';

describe('the seed, unchanged', () => {
  let server: TestApp;
  before(async () => {
    server = await buildTestApp();
  });
  after(() => server.stop());

  it('test_get_messages: a posted message is in the recipient\'s list', async () => {
    await server.request('/post-message', {
      method: 'POST',
      body: JSON.stringify({ fromUser: 'Steve', toUser: 'Val', message: 'Test Message' }),
    });
    const response = await server.request('/get-messages/Val');
    const data = response.json<Message[]>();
    assert.equal(response.status, 200);
    assert.equal(data.length, 1);
    assert.equal(data[0]!.toUser, 'Val');
  });

  it('test_post_message: a body with no Content-Type is accepted with 202', async () => {
    const response = await server.request('/post-message', {
      method: 'POST',
      body: JSON.stringify({ fromUser: 'Val', toUser: 'Steve', message: 'Test Message' }),
    });
    assert.equal(response.status, 202);
    assert.equal(response.headers['content-type'], undefined);
    assert.equal(response.text, '');
    const steve = await server.request('/get-messages/Steve');
    assert.equal(steve.json<Message[]>().length, 1);
  });
});

const python = spawnSync('python3', ['-c', 'import requests'], { encoding: 'utf8' });
const noRequests = python.status !== 0
  ? 'python3 with the requests library is not installed here (the seed\'s clients use it)'
  : false;

describe('the seed README\'s Python requests session', { skip: noRequests }, () => {
  it('runs unchanged against Postbox', async () => {
    const server = await startTestServer();
    try {
      const script = new URL('../fixtures/seed_session.py', import.meta.url).pathname;
      // Asynchronously: the server answers on this same event loop.
      const run = await new Promise<{ status: number; out: string }>((resolve) => {
        execFile('python3', [script, server.url], (err, stdout, stderr) => {
          resolve({ status: err ? 1 : 0, out: stdout + stderr });
        });
      });
      assert.equal(run.status, 0, run.out);
      assert.match(run.out, /seed session ok/);
    } finally {
      await server.stop();
    }
  });
});
