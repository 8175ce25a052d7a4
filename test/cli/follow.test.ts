/**
 * `postbox inbox B --follow`, run as the real executable: it shows the newest page, prints
 * each new message as it arrives, and stops cleanly on Ctrl-C (SIGINT).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { PostboxClient, type Message } from '../../src/client/index.js';
import { startTestServer } from '../helpers/server.js';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;

/** Starts the command and lets the test wait for what it prints. */
function start(args: string[], env: Record<string, string>) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTBOX_')));
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { env: { ...base, TZ: 'UTC', ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return {
    child,
    out: () => stdout,
    err: () => stderr,
    async until(check: (out: string) => boolean, what: string): Promise<void> {
      const deadline = Date.now() + 20_000;
      while (!check(stdout)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`waited for ${what}:\n${stdout}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

describe('postbox inbox --follow', () => {
  it('shows the newest page, then each new message, until Ctrl-C', async () => {
    const server = await startTestServer();
    const client = new PostboxClient({ url: server.url, token: null });
    try {
      for (let i = 1; i <= 3; i++) await client.send({ fromUser: 'old', toUser: 'me', message: `old ${i}` });
      const run = start(['inbox', 'me', '--follow', '--limit', '2'], { POSTBOX_URL: server.url });
      await run.until((o) => o.includes('old 3'), 'the newest page');
      assert.ok(!run.out().includes('old 1'), 'only the newest page of two');
      while (server.hub.listenersOf('me') === 0) await new Promise((r) => setTimeout(r, 10));
      const m = await client.send({ fromUser: 'friend', toUser: 'me', message: 'hello there' });
      await run.until((o) => o.includes('hello there'), 'the live message');
      assert.match(run.out(), new RegExp(`^${m.id}  \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d  friend: hello there$`, 'm'));
      run.child.kill('SIGINT');
      const [code] = (await once(run.child, 'exit')) as [number | null];
      assert.equal(code, 0, run.err());
    } finally {
      await server.stop();
    }
  });

  it('prints JSON Lines with --json', async () => {
    const server = await startTestServer();
    const client = new PostboxClient({ url: server.url, token: null });
    try {
      const run = start(['inbox', 'empty', '--follow', '--json'], { POSTBOX_URL: server.url });
      while (server.hub.listenersOf('empty') === 0) await new Promise((r) => setTimeout(r, 10));
      const sent = [await client.send({ fromUser: 'a', toUser: 'empty', message: 'one' }), await client.send({ fromUser: 'b', toUser: 'empty', message: 'two' })];
      await run.until((o) => o.split('\n').filter(Boolean).length >= 2, 'two lines');
      const lines = run.out().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Message);
      assert.deepEqual(lines, sent);
      run.child.kill('SIGINT');
      assert.equal(((await once(run.child, 'exit')) as [number | null])[0], 0);
    } finally {
      await server.stop();
    }
  });

  it('refuses --follow with filters it cannot follow', async () => {
    const run = start(['inbox', 'me', '--follow', '--unread'], { POSTBOX_URL: 'http://127.0.0.1:9' });
    const [code] = (await once(run.child, 'exit')) as [number | null];
    assert.equal(code, 2);
    assert.match(run.err(), /does not combine with --from, --unread or --all/);
  });
});
