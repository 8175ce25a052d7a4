/**
 * A subscriber that stops reading cannot grow the server's memory: the server (a real child
 * process) closes its stream once the per-stream buffer cap is reached, and its resident
 * memory stays bounded while 10,000 messages (80 MB of events) are sent to that user.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { spawnServer } from './helpers/child.js';
import { postJson, request } from './helpers/http.js';
import { tempDir } from './helpers/server.js';
import { until } from './helpers/wait.js';

function kb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]);
}

const onLinux = process.platform === 'linux' ? false : 'reads memory figures from /proc, which only Linux has';

describe('stream backpressure', { skip: onLinux }, () => {
  it('closes a stream that is not read, and keeps server memory bounded', async (t) => {
    const dir = await tempDir();
    const server = await spawnServer({
      DATABASE_URL: `sqlite:${join(dir, 'p.db')}`,
      POSTBOX_DURABILITY: 'relaxed',
      POSTBOX_STREAM_BUFFER_BYTES: String(1024 * 1024),
      // One client sends the flood; the rate limit is not what this test is about.
      POSTBOX_RATE_LIMIT: '0',
    });
    const pid = server.process.pid!;
    const url = new URL(server.url);
    // A client that sends its request and then never reads a byte.
    const socket = net.connect(Number(url.port), url.hostname);
    await new Promise((r) => socket.once('connect', r));
    socket.pause();
    socket.write(`GET /v1/users/stalled/stream HTTP/1.1\r\nHost: ${url.host}\r\nAccept: text/event-stream\r\n\r\n`);
    let serverClosed = false;
    socket.on('close', () => (serverClosed = true));
    try {
      const openStreams = async () => Number(/^postbox_streams_open (\d+)$/m.exec((await request(server.url, '/metrics')).text)![1]);
      await until(async () => (await openStreams()) > 0, 'the stalled stream to open', 60_000, 10);

      // Warm up the send path and fill SQLite's page cache (32 MiB) with 48 MB of writes, so
      // that what grows from here on is what the stalled stream costs, not the cache.
      const body = 'y'.repeat(8 * 1024);
      let warm = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (warm++ < 6_000) await postJson(server.url, '/v1/messages', { fromUser: 'w', toUser: 'warm', message: body });
      }));
      const before = kb(pid, 'VmRSS');
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
      let next = 0;
      let closedAfter: number | undefined;
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (next < 10_000) {
          const i = next++;
          const res = await postJson(server.url, '/v1/messages', { fromUser: 'flood', toUser: 'stalled', message: body });
          assert.equal(res.status, 201);
          if (closedAfter === undefined && i % 250 === 0 && (await openStreams()) === 0) closedAfter = i;
        }
      }));
      const peakGrowthMb = (kb(pid, 'VmHWM') - before) / 1024;
      t.diagnostic(`server RSS before ${(before / 1024).toFixed(1)} MB; peak growth while sending 80 MB to the stalled stream ${peakGrowthMb.toFixed(1)} MB; stream closed after ~${closedAfter} messages`);
      assert.equal(await openStreams(), 0, 'the stalled stream was closed by the server');
      assert.ok(closedAfter !== undefined && closedAfter < 5_000, `closed early (after ~${closedAfter} of 10,000 messages)`);
      // 10,000 × 8 KiB is 80 MB of events; had they been buffered, memory would have grown by at least that.
      assert.ok(peakGrowthMb < 48, `server memory grew by ${peakGrowthMb.toFixed(1)} MB`);
      socket.resume();
      await until(() => serverClosed, 'the connection to be dropped', 10_000, 10);
    } finally {
      socket.destroy();
      server.process.kill('SIGTERM');
      await server.exited;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
