/**
 * `postbox inbox B --follow`: it shows the newest page, prints each new message as it
 * arrives, and stops cleanly on Ctrl-C. The SIGINT case runs the real executable (the
 * signal is the point); the others run in-process, stopped through an AbortSignal.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { PostboxClient, type Message } from '../../src/client/index.js';
import { dieWithTest } from '../helpers/child.js';
import { cli } from '../helpers/cli.js';
import { startTestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;

/** Starts the command and lets the test wait for what it prints. */
function start(args: string[], env: Record<string, string>) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTBOX_')));
  const child = dieWithTest(spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { env: { ...base, TZ: 'UTC', ...env } }));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return {
    child,
    out: () => stdout,
    err: () => stderr,
    until(check: (out: string) => boolean, what: string): Promise<void> {
      return until(() => {
        if (child.exitCode !== null) throw new Error(`exited while waiting for ${what}:\n${stdout}\n${stderr}`);
        return check(stdout);
      }, `${what}; so far:\n${stdout}\n${stderr}`, 20_000, 20);
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
      await until(() => server.hub.listenersOf('me') > 0, 'the follow stream to subscribe');
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

  it('prints JSON Lines with --json, and stops when told', async () => {
    const server = await startTestServer();
    const client = new PostboxClient({ url: server.url, token: null });
    const stop = new AbortController();
    try {
      let printed = '';
      const run = cli(['inbox', 'empty', '--follow', '--json'], { POSTBOX_URL: server.url }, {
        signal: stop.signal,
        onStdout: (out) => (printed = out),
      });
      await until(() => server.hub.listenersOf('empty') > 0, 'the follow stream to subscribe');
      const sent = [await client.send({ fromUser: 'a', toUser: 'empty', message: 'one' }), await client.send({ fromUser: 'b', toUser: 'empty', message: 'two' })];
      await until(() => printed.split('\n').filter(Boolean).length >= 2, 'two lines');
      stop.abort();
      const done = await run;
      assert.equal(done.code, 0, done.stderr);
      const lines = done.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Message);
      assert.deepEqual(lines, sent);
    } finally {
      stop.abort();
      await server.stop();
    }
  });

  it('refuses --follow with filters it cannot follow', async () => {
    const run = await cli(['inbox', 'me', '--follow', '--unread'], { POSTBOX_URL: 'http://127.0.0.1:9' });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /does not combine with --from, --unread or --all/);
  });
});
