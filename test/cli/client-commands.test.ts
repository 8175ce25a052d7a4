/**
 * The client commands of `postbox` (send, inbox, sent, conversations, read, delete), run
 * in-process (runCli, as the executable does) against a real listening server: output for a
 * person and for scripts, errors and exit codes.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PostboxClient } from '../../src/client/index.js';
import type { ConversationList, Message, MessagePage, ReadResult } from '../../src/protocol/types.js';
import { cli, type CliRun } from '../helpers/cli.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const ADMIN_TOKEN = 'admin-token-for-cli-tests';

// The table shows local times: fix the zone so a test knows them (Node applies it at once).
process.env.TZ = 'UTC';

/** Runs the command line in this process with exactly `env`, as a pipe (no terminal) unless `columns` is given. */
function postbox(args: string[], env: Record<string, string> = {}, columns?: number): Promise<CliRun> {
  return cli(args, env, columns === undefined ? {} : { columns });
}

/** The UTC minute of a timestamp as the table shows it (TZ is UTC above). */
function minute(iso: string): string {
  return iso.slice(0, 16).replace('T', ' ');
}

describe('postbox client commands, open mode', () => {
  let server: TestServer;
  let client: PostboxClient;
  let env: Record<string, string>;
  before(async () => {
    server = await startTestServer();
    client = new PostboxClient({ url: server.url, token: null });
    env = { POSTBOX_URL: server.url };
  });
  after(() => server.stop());

  it('lists the client commands in postbox --help', async () => {
    const out = await postbox(['--help']);
    assert.equal(out.code, 0);
    for (const name of ['serve', 'send', 'inbox', 'sent', 'conversations', 'read', 'delete']) {
      assert.match(out.stdout, new RegExp(`^  ${name}\\s+\\S`, 'm'), name);
    }
  });

  it('answers --help for every client command', async () => {
    for (const name of ['send', 'inbox', 'sent', 'conversations', 'read', 'delete']) {
      const out = await postbox([name, '--help'], {});
      assert.equal(out.code, 0, name);
      assert.match(out.stdout, new RegExp(`^Usage: postbox ${name} `), name);
      assert.match(out.stdout, /--url <url>/, name);
      assert.match(out.stdout, /--token <token>/, name);
    }
  });

  it('sends a message and prints its id, or the message with --json', async () => {
    const plain = await postbox(['send', '--from', 'k-val', '--to', 'k-steve', 'hello', 'there'], env);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^[1-9][0-9]*\n$/);
    const stored = await client.getMessage(plain.stdout.trim());
    assert.deepEqual([stored.fromUser, stored.toUser, stored.message], ['k-val', 'k-steve', 'hello there']);

    const json = await postbox(['send', '--json', '--from', 'k-val', '--to', 'k-steve', '--', '-dash first'], env);
    assert.equal(json.code, 0, json.stderr);
    const message = JSON.parse(json.stdout) as Message;
    assert.equal(message.message, '-dash first');
    assert.deepEqual(await client.getMessage(message.id), message);
  });

  it('sends once for a repeated idempotency key', async () => {
    const args = ['send', '--from', 'k-idem', '--to', 'k-idem-to', '--idempotency-key', 'cli-1', 'just once'];
    const first = await postbox(args, env);
    const second = await postbox(args, env);
    assert.equal(second.stdout, first.stdout);
    assert.equal((await client.inbox('k-idem-to')).messages.length, 1);
  });

  it('prints the inbox as a table for a person', async () => {
    const to = 'k-table';
    const short = await client.send({ fromUser: 'k-alice', toUser: to, message: 'short one' });
    const long = await client.send({ fromUser: 'k-bob', toUser: to, message: `line one\nline two \u001b[31m${'x'.repeat(200)}` });
    await client.markRead(to, { ids: [short.id] });

    const out = await postbox(['inbox', to], env);
    assert.equal(out.code, 0, out.stderr);
    const lines = out.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, /^ID\s+TIME\s+FROM\s+READ\s+MESSAGE$/);
    assert.match(lines[1]!, new RegExp(`^${short.id}\\s+${minute(short.sentAt)}\\s+k-alice\\s+yes\\s+short one$`));
    assert.match(lines[2]!, new RegExp(`^${long.id}\\s+${minute(long.sentAt)}\\s+k-bob\\s+no\\s+line one line two\\s+\\[31mx+…$`));
    // Not a terminal, so the table takes 80 columns; the newline and escape cannot leak out.
    assert.equal([...lines[2]!].length, 80);
    assert.ok(!out.stdout.includes('\u001b'));
  });

  it('fits the message column to the terminal width', async () => {
    const to = 'k-narrow';
    await client.send({ fromUser: 'k-n', toUser: to, message: 'y'.repeat(100) });
    const out = await postbox(['inbox', to], env, 50);
    assert.equal(out.code, 0, out.stderr);
    const row = out.stdout.split('\n')[1]!;
    assert.equal([...row].length, 50);
    assert.ok(row.endsWith('y…'));
  });

  it('pages the inbox: a hint for the next page, --all for every page, --json for scripts', async () => {
    const to = 'k-pages';
    const sent: Message[] = [];
    for (const text of ['p1', 'p2', 'p3']) sent.push(await client.send({ fromUser: 'k-pager', toUser: to, message: text }));

    const first = await postbox(['inbox', to, '--limit', '2'], env);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /p1\n.*p2\n\(more: --after \d+, or --all\)\n$/);
    assert.ok(first.stdout.includes(`--after ${sent[1]!.id},`));

    const all = await postbox(['inbox', to, '--limit', '1', '--all'], env);
    assert.deepEqual(all.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/\s+/).at(-1)), ['p1', 'p2', 'p3']);
    assert.ok(!all.stdout.includes('more:'));

    const page = await postbox(['inbox', to, '--after', sent[0]!.id, '--limit', '1', '--json'], env);
    assert.deepEqual(JSON.parse(page.stdout) as MessagePage, await client.inbox(to, { after: sent[0]!.id, limit: 1 }));

    const every = await postbox(['inbox', to, '--before', 'latest', '--limit', '2', '--all', '--json'], env);
    assert.deepEqual(JSON.parse(every.stdout) as MessagePage, { messages: sent, next: null });
  });

  it('filters the inbox by sender and by unread', async () => {
    const to = 'k-filter';
    const a = await client.send({ fromUser: 'k-fa', toUser: to, message: 'from a' });
    await client.send({ fromUser: 'k-fb', toUser: to, message: 'from b' });
    await client.send({ fromUser: 'k-fa', toUser: to, message: 'from a again' });
    await client.markRead(to, { ids: [a.id] });
    const out = await postbox(['inbox', to, '--from', 'k-fa', '--unread', '--json'], env);
    assert.deepEqual((JSON.parse(out.stdout) as MessagePage).messages.map((m) => m.message), ['from a again']);
  });

  it('prints an empty inbox as such', async () => {
    const out = await postbox(['inbox', 'k-nobody'], env);
    assert.equal(out.code, 0);
    assert.equal(out.stdout, '(no messages)\n');
  });

  it('lists what a user sent, with the recipient', async () => {
    const m = await client.send({ fromUser: 'k-sender', toUser: 'k-recipient', message: 'outgoing' });
    const out = await postbox(['sent', 'k-sender'], env);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^ID\s+TIME\s+TO\s+READ\s+MESSAGE\n/);
    assert.match(out.stdout, new RegExp(`^${m.id}\\s+\\S+ \\S+\\s+k-recipient\\s+no\\s+outgoing$`, 'm'));
  });

  it('lists conversations as a table and as JSON', async () => {
    const me = 'k-conv';
    await client.send({ fromUser: 'k-peer1', toUser: me, message: 'first peer' });
    await client.send({ fromUser: 'k-peer1', toUser: me, message: 'first peer again' });
    await client.send({ fromUser: me, toUser: 'k-peer2', message: 'to the second' });

    const out = await postbox(['conversations', me], env);
    assert.equal(out.code, 0, out.stderr);
    const lines = out.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^PEER\s+UNREAD\s+LAST\s+MESSAGE$/);
    assert.match(lines[1]!, /^k-peer2\s+0\s+\S+ \S+\s+you: to the second$/);
    assert.match(lines[2]!, /^k-peer1\s+2\s+\S+ \S+\s+first peer again$/);

    const json = await postbox(['conversations', me, '--json'], env);
    assert.deepEqual(JSON.parse(json.stdout) as ConversationList, await client.conversations(me));
  });

  it('marks messages read and prints how many are still unread', async () => {
    const me = 'k-read';
    const got: Message[] = [];
    for (const text of ['r1', 'r2', 'r3', 'r4']) got.push(await client.send({ fromUser: 'k-rf', toUser: me, message: text }));

    const upTo = await postbox(['read', me, '--up-to', got[1]!.id], env);
    assert.equal(upTo.code, 0, upTo.stderr);
    assert.equal(upTo.stdout, '2\n');
    const ids = await postbox(['read', me, '--ids', `${got[2]!.id}, ${got[3]!.id}`, '--json'], env);
    assert.deepEqual(JSON.parse(ids.stdout) as ReadResult, { unread: 0, marked: 2 });
    assert.ok((await client.inbox(me)).messages.every((m) => m.readAt !== null));
  });

  it('deletes a message', async () => {
    const m = await client.send({ fromUser: 'k-del', toUser: 'k-del-to', message: 'doomed' });
    const out = await postbox(['delete', m.id], env);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, `deleted ${m.id}\n`);
    assert.deepEqual((await client.inbox('k-del-to')).messages, []);
  });

  it('reports the server\'s problem on stderr with exit code 1', async () => {
    const missing = await postbox(['delete', '999999999'], env);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, '');
    assert.equal(missing.stderr, 'postbox: no message with id "999999999" (HTTP 404 Not found)\n');

    const invalid = await postbox(['send', '--from', 'k-x', '--to', 'a/b', 'text'], env);
    assert.equal(invalid.code, 1);
    // The detail already names the field, so it is not repeated below it.
    assert.match(invalid.stderr, /^postbox: toUser must be [^\n]*"\/"[^\n]* \(HTTP 400 Invalid request\)\n$/);

    const reused = await postbox(['send', '--from', 'k-x', '--to', 'k-y', '--idempotency-key', 'k-re', 'one'], env);
    assert.equal(reused.code, 0);
    const mismatch = await postbox(['send', '--from', 'k-x', '--to', 'k-y', '--idempotency-key', 'k-re', 'two'], env);
    assert.equal(mismatch.code, 1);
    // A detail that does not spell out the field gets the field error listed under it.
    assert.match(mismatch.stderr, /^postbox: .*Idempotency-Key.*\(HTTP 422 .*\)\n {2}Idempotency-Key: was used for a different request/);
  });

  it('refuses a wrong command line with exit code 2 and a pointer to --help', async () => {
    const cases: [string[], RegExp][] = [
      [['send', '--from', 'a', 'text'], /^postbox send: --to is required\n/],
      [['send', '--from', 'a', '--to', 'b'], /^postbox send: give the message text\n/],
      [['send', '--frm', 'a', '--to', 'b', 'x'], /^postbox send: Unknown option '--frm'/],
      [['inbox'], /^postbox inbox: give the user whose inbox to list\n/],
      [['inbox', 'a', 'b'], /^postbox inbox: give one user whose inbox to list, got 2: a b\n/],
      [['inbox', 'a', '--limit', 'ten'], /^postbox inbox: --limit must be a whole number, got "ten"\n/],
      [['read', 'a'], /^postbox read: give either --up-to or --ids\n/],
      [['read', 'a', '--up-to', '1', '--ids', '2'], /^postbox read: give either --up-to or --ids\n/],
      [['delete'], /^postbox delete: give the id of the message to delete\n/],
      [['inbox', 'a', '--url', 'ftp://example.com'], /^postbox inbox: --url must be an http:\/\/ or https:\/\/ URL/],
    ];
    for (const [args, expected] of cases) {
      const out = await postbox(args, env);
      assert.equal(out.code, 2, args.join(' '));
      assert.match(out.stderr, expected, args.join(' '));
      assert.ok(out.stderr.endsWith(`Run "postbox ${args[0]} --help" for its options.\n`), args.join(' '));
      assert.equal(out.stdout, '', args.join(' '));
    }
    // One of them through the real executable, for its exit code.
    const real = await postbox(['inbox', 'someone'], { POSTBOX_URL: 'not a url' });
    assert.equal(real.code, 2);
    assert.match(real.stderr, /^postbox inbox: POSTBOX_URL is not a URL: "not a url"/);
  });

  it('says which server it cannot reach, with exit code 1', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as { port: number };
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const out = await postbox(['inbox', 'someone', '--url', `http://127.0.0.1:${port}`], env);
    assert.equal(out.code, 1);
    assert.match(out.stderr, new RegExp(`^postbox: cannot reach http://127\\.0\\.0\\.1:${port}/v1/users/someone/messages: .*ECONNREFUSED`));
  });
});

describe('postbox client commands, token mode', () => {
  let server: TestServer;
  let admin: PostboxClient;
  before(async () => {
    server = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN_TOKEN });
    admin = new PostboxClient({ url: server.url, token: ADMIN_TOKEN });
  });
  after(() => server.stop());

  it('acts as the user of POSTBOX_TOKEN, and --token overrides it', async () => {
    const ann = await admin.createUser('k-ann');
    const ben = await admin.createUser('k-ben');
    const sent = await postbox(['send', '--to', 'k-ben', 'from a token'], { POSTBOX_URL: server.url, POSTBOX_TOKEN: ann.token });
    assert.equal(sent.code, 0, sent.stderr);
    const asBen = new PostboxClient({ url: server.url, token: ben.token });
    const got = await asBen.getMessage(sent.stdout.trim());
    assert.deepEqual([got.fromUser, got.message], ['k-ann', 'from a token']);

    const inbox = await postbox(['inbox', 'k-ben', '--json', '--token', ben.token], { POSTBOX_URL: server.url, POSTBOX_TOKEN: ann.token });
    assert.equal(inbox.code, 0, inbox.stderr);
    assert.deepEqual((JSON.parse(inbox.stdout) as MessagePage).messages.map((m) => m.id), [got.id]);
  });

  it('explains a missing token', async () => {
    const out = await postbox(['inbox', 'k-ann'], { POSTBOX_URL: server.url });
    assert.equal(out.code, 1);
    assert.match(out.stderr, /^postbox: this server runs in token mode: send Authorization: Bearer <token> \(HTTP 401 Authentication required\)\n/);
    assert.match(out.stderr, /set POSTBOX_TOKEN or pass --token/);
  });
});
