/**
 * `postbox webhooks add|list|remove|deliveries` against a real server, run in process.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cli, type CliRun } from '../helpers/cli.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';
import { startReceiver, type Receiver } from '../webhooks/helpers.js';

const ADMIN = 'admin-token-for-the-cli-webhooks-0';
let server: TestServer;
let receiver: Receiver;

function postbox(args: string[]): Promise<CliRun> {
  return cli(args, { POSTBOX_URL: server.url, POSTBOX_TOKEN: ADMIN, TZ: 'UTC' }, { columns: 160 });
}

before(async () => {
  server = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN, POSTBOX_WEBHOOK_ALLOW_PRIVATE: 'true' });
  receiver = await startReceiver();
});
after(async () => {
  await receiver.close();
  await server.stop();
});

describe('postbox webhooks', () => {
  it('adds, lists, shows deliveries and removes an endpoint', async () => {
    const added = await postbox(['webhooks', 'add', receiver.url, '--events', 'user.created,user.removed', '--description', 'crm']);
    assert.equal(added.code, 0, added.stderr);
    const m = /^added (wh_\S+) for user\.created, user\.removed\nsigning secret \(shown only now\): (whsec_\S+)\n$/.exec(added.stdout);
    assert.ok(m, added.stdout);
    const id = m[1]!;

    const listed = await postbox(['webhooks', 'list']);
    assert.match(listed.stdout, new RegExp(`${id}\\s+yes\\s+user\\.created,user\\.removed\\s+${receiver.url.replace(/[.]/g, '\\.')}\\s+crm`));

    assert.equal((await postbox(['users', 'add', 'cli-hook-ann', '--db', `sqlite:${server.config.database.kind === 'sqlite' ? server.config.database.path : ''}`])).code, 0);
    await receiver.waitAccepted(1);
    // The receiver answered; the dispatcher records that right after.
    let deliveries = await postbox(['webhooks', 'deliveries', id, '--json']);
    await until(async () => (deliveries = await postbox(['webhooks', 'deliveries', id, '--json'])).stdout.includes('"delivered"'),
      () => `the delivery recorded as delivered: ${deliveries.stdout}`, 10_000, 20);
    const page = JSON.parse(deliveries.stdout) as { deliveries: { id: string; type: string; status: string }[] };
    assert.deepEqual(page.deliveries.map((d) => [d.type, d.status]), [['user.created', 'delivered']]);
    const table = await postbox(['webhooks', 'deliveries', id]);
    const retried = await postbox(['webhooks', 'retry', id, page.deliveries[0]!.id]);
    assert.equal(retried.code, 0, retried.stderr);
    assert.match(retried.stdout, /^delivery \d+ \(user\.created\) goes again now\n$/);
    await receiver.waitAccepted(2);
    assert.equal(receiver.accepted()[1]!.headers['webhook-id'], receiver.accepted()[0]!.headers['webhook-id'], 'the same delivery, again');
    const missing = await postbox(['webhooks', 'retry', id, '999999']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /HTTP 404/);
    assert.match(table.stdout, /ID\s+EVENT\s+STATUS\s+TRIES\s+LAST TRY\s+RESULT\s+HISTORY\n\d+\s+user\.created\s+delivered\s+1\s+.+HTTP 200\s+200\n/);

    assert.equal((await postbox(['webhooks', 'remove', id])).stdout, `removed ${id}\n`);
    assert.equal((await postbox(['webhooks', 'list'])).stdout, '(no webhooks)\n');
  });

  it('says what is wrong with a bad command line or a refused endpoint', async () => {
    const none = await postbox(['webhooks']);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /give add, list, remove, deliveries or retry/);
    const oneArg = await postbox(['webhooks', 'retry', 'wh_x']);
    assert.equal(oneArg.code, 2);
    assert.match(oneArg.stderr, /give the id of the webhook and the id of the delivery/);
    const noEvents = await postbox(['webhooks', 'add', receiver.url]);
    assert.equal(noEvents.code, 2);
    assert.match(noEvents.stderr, /--events is required/);
    const bad = await postbox(['webhooks', 'add', 'ftp://example.com', '--events', 'user.created']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /url must be an http:\/\/ or https:\/\/ URL \(HTTP 400/);
  });
});
