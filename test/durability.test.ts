/**
 * Nothing acknowledged is lost: the server runs as a real child process (`postbox serve`),
 * is stopped gracefully or killed with SIGKILL in the middle of a load, and restarted on
 * the same SQLite file.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Message } from '../src/protocol/types.js';
import { spawnServer } from './helpers/child.js';
import { until } from './helpers/wait.js';
import { request } from './helpers/http.js';
import { tempDir } from './helpers/server.js';

/**
 * Sends continuously from `workers` concurrent clients until `stop()` resolves, recording
 * the id of every send the server acknowledged with 202.
 */
function load(url: string, user: string, workers: number) {
  const acknowledged: string[] = [];
  let running = true;
  let i = 0;
  const done = Promise.all(Array.from({ length: workers }, async () => {
    while (running) {
      const n = i++;
      try {
        const res = await request(url, '/post-message', {
          method: 'POST',
          body: JSON.stringify({ fromUser: 'loader', toUser: user, message: `m${n}` }),
        });
        if (res.status === 202) acknowledged.push(String(res.headers.location).split('/').pop()!);
      } catch {
        // The server went away mid-request: that send was never acknowledged.
        return;
      }
    }
  }));
  return {
    acknowledged,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

async function inbox(url: string, user: string): Promise<Message[]> {
  const res = await request(url, `/get-messages/${user}`);
  assert.equal(res.status, 200);
  return res.json<Message[]>();
}

describe('durability', () => {
  it('keeps every message across a graceful restart, finishing in-flight sends', async () => {
    const dir = await tempDir();
    const env = { DATABASE_URL: `sqlite:${join(dir, 'p.db')}` };
    try {
      const first = await spawnServer(env);
      const traffic = load(first.url, 'graceful', 16);
      await until(() => traffic.acknowledged.length >= 100, '100 acknowledged sends', 60_000, 5);
      first.process.kill('SIGTERM');
      const exit = await first.exited;
      await traffic.stop();
      assert.equal(exit.code, 0, first.output.join('\n'));
      assert.ok(first.output.some((l) => l.includes('closed')), 'says it closed');

      const second = await spawnServer(env);
      try {
        const ids = new Set((await inbox(second.url, 'graceful')).map((m) => m.id));
        for (const id of traffic.acknowledged) assert.ok(ids.has(id), `acknowledged message ${id} survived`);
      } finally {
        second.process.kill('SIGTERM');
        await second.exited;
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  for (const durability of ['fsync', 'relaxed'] as const) {
    it(`loses nothing acknowledged to kill -9 (${durability})`, async () => {
      const dir = await tempDir();
      const env = { DATABASE_URL: `sqlite:${join(dir, 'p.db')}`, POSTBOX_DURABILITY: durability };
      try {
        const first = await spawnServer(env);
        const traffic = load(first.url, 'crash', 32);
        await until(() => traffic.acknowledged.length >= 300, '300 acknowledged sends', 60_000);
        // Killed while sends are still arriving and committing.
        first.process.kill('SIGKILL');
        const exit = await first.exited;
        await traffic.stop();
        assert.equal(exit.signal, 'SIGKILL');

        const second = await spawnServer(env);
        try {
          const stored = await inbox(second.url, 'crash');
          const ids = new Set(stored.map((m) => m.id));
          const lost = traffic.acknowledged.filter((id) => !ids.has(id));
          assert.deepEqual(lost, [], `${lost.length} of ${traffic.acknowledged.length} acknowledged messages lost`);
          assert.equal(ids.size, stored.length, 'no duplicates');
          // The store works normally after recovery.
          const res = await request(second.url, '/post-message', {
            method: 'POST', body: JSON.stringify({ fromUser: 'after', toUser: 'crash', message: 'recovered' }),
          });
          assert.equal(res.status, 202);
        } finally {
          second.process.kill('SIGTERM');
          await second.exited;
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  it('creates the data directory on first start', async () => {
    const dir = await tempDir();
    const env = { DATABASE_URL: `sqlite:${join(dir, 'nested', 'deeper', 'p.db')}` };
    try {
      const server = await spawnServer(env);
      const res = await request(server.url, '/post-message', {
        method: 'POST', body: JSON.stringify({ fromUser: 'a', toUser: 'b', message: 'first' }),
      });
      assert.equal(res.status, 202);
      server.process.kill('SIGTERM');
      assert.equal((await server.exited).code, 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
