/**
 * Server memory while serving a huge legacy inbox: fills a SQLite store with N messages to
 * one user, starts `postbox serve` on it as a child process, and reads the peak RSS
 * (VmHWM, reset just before) while `GET /get-messages/{user}` streams the whole array.
 *
 * Runs the built server (dist/, made by `npm ci` or `npm run build`), as users run it.
 *
 * Usage: npx tsx bench/inbox-memory.ts [N=100000] [messageBytes=100]
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { openSqliteStorage } from '../src/storage/sqlite/sqlite-storage.js';
import type { ExportRecord } from '../src/storage/storage.js';

const n = Number(process.argv[2] ?? 100_000);
const size = Number(process.argv[3] ?? 100);

function status(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`;

const dir = await mkdtemp(join(tmpdir(), 'postbox-bench-'));
const path = join(dir, 'p.db');
try {
  const store = openSqliteStorage({ path, durability: 'relaxed' });
  const text = 'x'.repeat(size);
  const sentAt = new Date().toISOString();
  function* records(): Generator<ExportRecord> {
    for (let i = 1; i <= n; i++) {
      yield { type: 'message', message: { id: String(i), fromUser: `u${i % 100}`, toUser: 'big', message: text, sentAt, readAt: null } };
    }
  }
  await store.importAll(Readable.from(records()) as AsyncIterable<ExportRecord>);
  await store.close();

  const child = spawn(process.execPath, ['dist/cli/main.js', 'serve'], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DATABASE_URL: `sqlite:${path}`, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      const m = /listening on (http:\/\/[^"\s]+)/.exec(d.toString());
      if (m) resolve(m[1]!);
    });
  });
  const pid = child.pid!;
  // Warm up the code path once on a small inbox, then measure the big one from a reset peak.
  await new Promise((r) => http.get(`${url}/get-messages/nobody`, (res) => res.resume().on('end', r)));
  const idle = status(pid, 'VmRSS');
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
  let bytes = 0;
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    http.get(`${url}/get-messages/big`, (res) => {
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', resolve);
      res.on('error', reject);
    });
  });
  const ms = performance.now() - started;
  const peak = status(pid, 'VmHWM');
  child.kill('SIGTERM');
  console.log(`messages: ${n} of ${size} bytes; response: ${mb(bytes)} in ${ms.toFixed(0)} ms`);
  console.log(`server RSS idle: ${mb(idle)}; peak while streaming: ${mb(peak)} (+${mb(peak - idle)})`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
