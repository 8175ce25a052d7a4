/**
 * Query cost as the store grows: fills a SQLite store with M messages between U users
 * (random pairs), starts the built server on it, and times the paged reads a client makes
 * (an inbox page, a conversation page, the conversation list) with one sequential client,
 * printing p50/p99 per query. Run it for a small and a large store: the figures should be
 * the same, since each query costs O(page), not O(store).
 *
 * Usage: npx tsx bench/scale.ts [messages=1000000] [users=10000] [samples=2000]
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { openSqliteStorage } from '../src/storage/sqlite/sqlite-storage.js';
import type { ExportRecord } from '../src/storage/storage.js';

const total = Number(process.argv[2] ?? 1_000_000);
const users = Number(process.argv[3] ?? 10_000);
const samples = Number(process.argv[4] ?? 2000);

/** A small deterministic generator, so two runs fill the same store. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function get(url: string): Promise<number> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    http.get(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${url}: ${res.statusCode}`));
        else resolve(Number(process.hrtime.bigint() - started) / 1e6);
      });
    }).on('error', reject);
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const dir = await mkdtemp(join(tmpdir(), 'postbox-scale-'));
const path = join(dir, 'p.db');
try {
  const random = rng(42);
  const fillStarted = performance.now();
  const store = openSqliteStorage({ path, durability: 'relaxed' });
  const sentAt = Date.now() - total;
  function* records(): Generator<ExportRecord> {
    for (let i = 1; i <= total; i++) {
      const from = Math.floor(random() * users);
      let to = Math.floor(random() * users);
      if (to === from) to = (to + 1) % users;
      yield {
        type: 'message',
        message: {
          id: String(i), fromUser: `user${from}`, toUser: `user${to}`, message: `message number ${i}`,
          sentAt: new Date(sentAt + i).toISOString(), readAt: random() < 0.5 ? new Date(sentAt + i + 1).toISOString() : null,
        },
      };
    }
  }
  await store.importAll(Readable.from(records()) as AsyncIterable<ExportRecord>);
  await store.close();
  const fillSeconds = (performance.now() - fillStarted) / 1000;

  const child = spawn(process.execPath, ['dist/cli/main.js', 'serve'], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DATABASE_URL: `sqlite:${path}`, LOG_LEVEL: 'info', POSTBOX_RATE_LIMIT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const base = await new Promise<string>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      const m = /listening on (http:\/\/[^"\s]+)/.exec(d.toString());
      if (m) resolve(m[1]!);
    });
  });

  const pick = () => `user${Math.floor(random() * users)}`;
  const queries: Record<string, () => string> = {
    'inbox, latest page of 50': () => `/v1/users/${pick()}/messages?before=latest&limit=50`,
    'inbox, page of 50 after a cursor': () => `/v1/users/${pick()}/messages?after=${Math.floor(random() * total) + 1}&limit=50`,
    'inbox, unread page of 50': () => `/v1/users/${pick()}/messages?unread=true&limit=50`,
    'conversation, latest page of 50': () => `/v1/users/${pick()}/conversations/${pick()}?before=latest&limit=50`,
    'conversation list, 50 most recent': () => `/v1/users/${pick()}/conversations?limit=50`,
  };
  console.log(`store: ${total.toLocaleString('en')} messages between ${users.toLocaleString('en')} users (filled in ${fillSeconds.toFixed(1)} s)`);
  console.log('| query | p50 ms | p99 ms |');
  console.log('|---|---|---|');
  for (const [name, next] of Object.entries(queries)) {
    for (let i = 0; i < 200; i++) await get(base + next());
    const times: number[] = [];
    for (let i = 0; i < samples; i++) times.push(await get(base + next()));
    times.sort((a, b) => a - b);
    console.log(`| ${name} | ${percentile(times, 50).toFixed(3)} | ${percentile(times, 99).toFixed(3)} |`);
  }
  child.kill('SIGTERM');
  agent.destroy();
} finally {
  await rm(dir, { recursive: true, force: true });
}
