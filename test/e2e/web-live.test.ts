/**
 * The web app's stream and sends when things go wrong, in real Chromium against a real
 * server: the network drops, the server restarts mid-conversation (same SQLite file, same
 * port), and a send whose answer is lost is retried with its Idempotency-Key. Nothing is
 * lost, nothing is shown or stored twice, and the connection state says what is going on.
 * The failures run in open mode and in token mode too, where every call and the stream
 * carry the bearer token (one browser for both).
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page, Route } from 'playwright-core';
import type { Conversation, Message, MessagePage } from '../../src/protocol/types.js';
import { postJson, request, type RawRequest } from '../helpers/http.js';
import { describeWithChromium, eventually, launchBrowser, person, seriousViolations } from '../helpers/browser.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { ensureWebBuilt } from '../helpers/web-build.js';

type Mode = 'open' | 'token';
const ADMIN = 'the-admin-token-for-the-live-web-tests-0123456789';
/** Everyone the tests use: token mode makes each a user, with a token, before the tests. */
const PEOPLE = ['Ann', 'Bob', 'Kai', 'Lem', 'Mo', 'Cy', 'Dee', 'Gil', 'Hal', 'Ivy', 'Jo', 'Eve', 'Fay', 'Uma', 'Vic', 'Pia', 'Rex'];

let browser: Browser;

/** The texts of the open conversation with `peer`, in the order shown. */
async function shown(page: Page, peer: string): Promise<string[]> {
  return page.getByRole('list', { name: `Messages with ${peer}` }).locator('.text').allInnerTexts();
}

const connection = (page: Page, state: string) => page.getByRole('status').filter({ hasText: state });

/** The conversation list's entry for `peer`. */
const entry = (page: Page, peer: string) => page.getByRole('navigation', { name: 'Conversations' }).getByRole('listitem').filter({ hasText: peer });

async function assertAccessible(page: Page, screen: string): Promise<void> {
  const violations = await seriousViolations(page);
  assert.deepEqual(violations, [], `${screen}: ${JSON.stringify(violations, null, 1)}`);
}

describeWithChromium('web app, live through failures', () => {
  before(async () => {
    ensureWebBuilt();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });
  for (const mode of ['open', 'token'] as const) failures(mode);
});

/** The suite in one auth mode, against a server of its own. */
function failures(mode: Mode): void {
  let dir: string;
  let server: TestServer;
  const env: Record<string, string> = mode === 'token' ? { POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN } : {};
  const tokens = new Map<string, string>();

  /** `user`'s bearer token as a header (none in open mode). */
  const auth = (user: string): Record<string, string> => (mode === 'token' ? { authorization: `Bearer ${tokens.get(user)}` } : {});

  /** GET `path` as `user`. */
  const get = (user: string, path: string, options: RawRequest = {}) =>
    request(server.url, path, { ...options, headers: { ...options.headers, ...auth(user) } });

  async function send(from: string, to: string, message: string): Promise<Message> {
    const res = await postJson(server.url, '/v1/messages', { fromUser: from, toUser: to, message }, auth(from));
    assert.equal(res.status, 201, res.text);
    return res.json<Message>();
  }

  /** The server's unread count of `user`'s conversation with `peer`. */
  async function unread(user: string, peer: string): Promise<number> {
    const list = (await get(user, `/v1/users/${user}/conversations`)).json<{ conversations: Conversation[] }>();
    return list.conversations.find((c) => c.peer === peer)?.unread ?? 0;
  }

  /** Signs in as `user` (open mode: the "User" field; token mode: the user's token), at the list. */
  async function signIn(page: Page, user: string): Promise<void> {
    await page.goto(server.url);
    if (mode === 'token') await page.getByLabel('Token').fill(tokens.get(user)!);
    else await page.getByLabel('User').fill(user);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await connection(page, 'Live').waitFor();
  }

  async function signInTo(page: Page, user: string, peer: string): Promise<void> {
    await signIn(page, user);
    await page.goto(`${server.url}/#/c/${peer}`);
  }

  describe(`${mode} mode`, () => {
    before(async () => {
      dir = await tempDir();
      server = await startTestServer(env, { dir });
      if (mode === 'token') {
        for (const id of PEOPLE) {
          const res = await postJson(server.url, '/v1/users', { id }, { authorization: `Bearer ${ADMIN}` });
          assert.equal(res.status, 201, res.text);
          tokens.set(id, res.json<{ token: string }>().token);
        }
      }
    });
    after(async () => {
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('passes the accessibility scan: the list and a conversation', async () => {
      await send('Rex', 'Pia', 'scan me');
      const pia = await person(browser);
      try {
        await signIn(pia.page, 'Pia');
        await entry(pia.page, 'Rex').getByText('1 unread').waitFor();
        await assertAccessible(pia.page, `${mode} mode, the list`);
        await entry(pia.page, 'Rex').getByRole('link').click();
        await pia.page.getByRole('list', { name: 'Messages with Rex' }).getByText('scan me').waitFor();
        await assertAccessible(pia.page, `${mode} mode, a conversation`);
      } finally {
        await pia.context.close();
      }
    });

    it('marks every loaded message of the open conversation read, older pages too: more unread than one page reaches 0', async () => {
      for (let i = 1; i <= 45; i++) await send('Vic', 'Uma', `note ${i}`);
      const uma = await person(browser);
      try {
        const { page } = uma;
        await signIn(page, 'Uma');
        await entry(page, 'Vic').getByText('45 unread').waitFor();
        await entry(page, 'Vic').getByRole('link').click();
        const list = page.getByRole('list', { name: 'Messages with Vic' });
        await list.getByText('note 45', { exact: true }).waitFor();
        // Scrolled up until the start is loaded: each older page comes into view and is read.
        await eventually(async () => {
          await list.hover();
          await page.mouse.wheel(0, -5000);
          return (await shown(page, 'Vic')).length === 45;
        }, 'all 45 messages loaded by scrolling up');
        assert.equal((await shown(page, 'Vic'))[0], 'note 1');
        await eventually(async () => (await unread('Uma', 'Vic')) === 0, 'the server to count no unread from Vic');
        await eventually(async () => (await page.title()) === 'Vic · Postbox', 'the title to drop its unread count');
        await entry(page, 'Vic').getByText('45 unread').waitFor({ state: 'detached' });
      } finally {
        await uma.context.close();
      }
    });

    it('resumes after the network drops, missing nothing', async () => {
      const ann = await person(browser);
      try {
        await signInTo(ann.page, 'Ann', 'Bob');
        await send('Bob', 'Ann', 'before the drop');
        await ann.page.getByText('before the drop', { exact: true }).first().waitFor();
        await ann.context.setOffline(true);
        await connection(ann.page, 'Reconnecting').waitFor();
        const violations = await seriousViolations(ann.page);
        assert.deepEqual(violations, [], `Reconnecting: ${JSON.stringify(violations, null, 1)}`);
        await send('Bob', 'Ann', 'while offline');
        await ann.context.setOffline(false);
        await connection(ann.page, 'Live').waitFor();
        await ann.page.getByRole('list', { name: 'Messages with Bob' }).getByText('while offline').waitFor();
        assert.deepEqual(await shown(ann.page, 'Bob'), ['before the drop', 'while offline']);
      } finally {
        await ann.context.close();
      }
    });

    it('after a reconnect, shows deletes and read receipts missed in a conversation opened earlier', async () => {
      const toKai = await send('Lem', 'Kai', 'delete me');
      await send('Lem', 'Kai', 'keep me');
      const fromKai = await send('Kai', 'Lem', 'read me');
      const kai = await person(browser);
      try {
        const { page } = kai;
        // Kai looks at Lem's conversation, then moves on to Mo's: Lem's stays loaded, off screen.
        await signInTo(page, 'Kai', 'Lem');
        const withLem = page.getByRole('list', { name: 'Messages with Lem' });
        await withLem.getByText('delete me').waitFor();
        await withLem.getByRole('listitem').filter({ hasText: 'read me' }).getByText('Sent', { exact: true }).waitFor();
        await page.goto(`${server.url}/#/c/Mo`);
        await page.getByRole('heading', { name: 'Mo' }).waitFor();

        // Away, Lem deletes one message and reads Kai's: neither is replayed by the stream.
        await page.context().setOffline(true);
        await connection(page, 'Reconnecting').waitFor();
        assert.equal((await get('Lem', `/v1/messages/${toKai.id}`, { method: 'DELETE' })).status, 204);
        const read = await postJson(server.url, '/v1/users/Lem/read', { ids: [fromKai.id] }, auth('Lem'));
        assert.equal(read.json<{ marked: number }>().marked, 1);
        await page.context().setOffline(false);
        await connection(page, 'Live').waitFor();

        // Opened again, Lem's conversation is read afresh.
        await entry(page, 'Lem').getByRole('link').click();
        await withLem.getByRole('listitem').filter({ hasText: 'read me' }).getByText('Read', { exact: true }).waitFor();
        await withLem.getByText('delete me').waitFor({ state: 'detached' });
        assert.deepEqual(await shown(page, 'Lem'), ['keep me', 'read me']);
      } finally {
        await kai.context.close();
      }
    });

    it('rides out a server restart mid-conversation: nothing lost, nothing doubled', async () => {
      const cy = await person(browser);
      const dee = await person(browser);
      try {
        await signInTo(cy.page, 'Cy', 'Dee');
        await signInTo(dee.page, 'Dee', 'Cy');
        const cyBox = cy.page.getByRole('textbox', { name: 'Message', exact: true });
        for (const text of ['one', 'two']) {
          await cyBox.fill(text);
          await cyBox.press('Enter');
        }
        await dee.page.getByRole('list', { name: 'Messages with Cy' }).getByText('two').waitFor();

        // The tabs' stream requests are held from before the stop until after 'three' and
        // 'four' are stored, so both are certainly sent while the tabs are disconnected: only
        // resuming by the last event id can bring them.
        const held: Route[] = [];
        let holding = true;
        for (const page of [cy.page, dee.page]) {
          await page.route('**/v1/users/*/stream*', (route) => (holding ? void held.push(route) : route.continue()));
        }
        const port = new URL(server.url).port;
        await server.stop();
        await connection(cy.page, 'Reconnecting').waitFor();
        await connection(dee.page, 'Reconnecting').waitFor();
        server = await startTestServer({ ...env, PORT: port }, { dir });
        await send('Cy', 'Dee', 'three');
        await send('Dee', 'Cy', 'four');
        assert.equal(await connection(cy.page, 'Reconnecting').count(), 1, 'Cy\'s tab is still disconnected');
        assert.equal(await connection(dee.page, 'Reconnecting').count(), 1, 'Dee\'s tab is still disconnected');
        holding = false;
        for (const route of held.splice(0)) await route.continue();
        await connection(cy.page, 'Live').waitFor();
        await connection(dee.page, 'Live').waitFor();
        await dee.page.getByRole('list', { name: 'Messages with Cy' }).getByText('three').waitFor();
        await cy.page.getByRole('list', { name: 'Messages with Dee' }).getByText('four').waitFor();
        // And the conversation goes on over the new server.
        await cyBox.fill('five');
        await cyBox.press('Enter');
        await dee.page.getByRole('list', { name: 'Messages with Cy' }).getByText('five').waitFor();
        // 'three' and 'four' went out from elsewhere, as from a phone: the sender's own tab
        // shows them too, replayed from its last id as what it sent.
        await cy.page.getByRole('list', { name: 'Messages with Dee' }).getByText('three').waitFor();
        await dee.page.getByRole('list', { name: 'Messages with Cy' }).getByText('four').waitFor();
        await cy.page.getByRole('list', { name: 'Messages with Dee' }).getByText('five').waitFor();
        // Each sees the whole conversation exactly once, in order.
        const deeSees = await shown(dee.page, 'Cy');
        const cySees = await shown(cy.page, 'Dee');
        assert.deepEqual(deeSees, ['one', 'two', 'three', 'four', 'five']);
        assert.deepEqual(cySees, ['one', 'two', 'three', 'four', 'five']);
        for (const [page, peer] of [[cy.page, 'Dee'], [dee.page, 'Cy']] as const) {
          await page.reload();
          await page.getByRole('list', { name: `Messages with ${peer}` }).getByText('five').waitFor();
          assert.deepEqual(await shown(page, peer), ['one', 'two', 'three', 'four', 'five']);
        }
        const stored = (await get('Dee', '/v1/users/Dee/conversations/Cy?limit=50')).json<MessagePage>();
        assert.deepEqual(stored.messages.map((m) => m.message), ['one', 'two', 'three', 'four', 'five']);
      } finally {
        await cy.context.close();
        await dee.context.close();
      }
    });

    if (mode === 'open') it('shows what the same user sends from another tab live, in the list and the open conversation, once', async () => {
      const gil = await person(browser);
      try {
        await send('Hal', 'Gil', 'hello');
        await send('Ivy', 'Gil', 'hi from Ivy');
        const one = gil.page;
        await signInTo(one, 'Gil', 'Hal');
        // The second tab: the same browser profile, so the same sign-in.
        const two = await gil.context.newPage();
        await two.goto(`${server.url}/#/c/Hal`);
        await connection(two, 'Live').waitFor();
        const peers = (page: Page) => page.getByRole('navigation', { name: 'Conversations' }).locator('.peer').allInnerTexts();
        await two.getByRole('list', { name: 'Messages with Hal' }).getByText('hello').waitFor();
        assert.deepEqual(await peers(two), ['Ivy', 'Hal']);

        const box = one.getByRole('textbox', { name: 'Message', exact: true });
        // The same text twice: each of tab one's sends must match its own echo, not the other's.
        for (const text of ['from tab one', 'again', 'again']) {
          await box.fill(text);
          await box.press('Enter');
        }
        const list = two.getByRole('list', { name: 'Messages with Hal' });
        await eventually(async () => (await shown(two, 'Hal')).length >= 4, 'tab two to show the three sends');
        await two.getByRole('navigation', { name: 'Conversations' }).getByRole('listitem').filter({ hasText: 'Hal' })
          .getByText('You: again').waitFor();
        assert.deepEqual(await peers(two), ['Hal', 'Ivy'], 'the conversation moved to the top');
        await one.getByRole('list', { name: 'Messages with Hal' }).getByRole('listitem').filter({ hasText: 'again' }).nth(1)
          .getByText('Sent', { exact: true }).waitFor();
        assert.deepEqual(await shown(one, 'Hal'), ['hello', 'from tab one', 'again', 'again'], 'the sending tab shows each once');
        assert.deepEqual(await shown(two, 'Hal'), ['hello', 'from tab one', 'again', 'again'], 'the other tab shows each once');
        assert.equal(await list.getByText('from tab one').count(), 1);

        // Sent from elsewhere to someone new (as from a phone): a new conversation on top, in both tabs.
        await send('Gil', 'Jo', 'new peer');
        for (const page of [one, two]) {
          await page.getByRole('navigation', { name: 'Conversations' }).getByRole('listitem').filter({ hasText: 'Jo' })
            .getByText('You: new peer').waitFor();
          assert.deepEqual(await peers(page), ['Jo', 'Hal', 'Ivy']);
        }
      } finally {
        await gil.context.close();
      }
    });

    it('keeps a failed send with its reason, and its retry reuses the Idempotency-Key: stored once', async () => {
      const eve = await person(browser);
      try {
        const { page } = eve;
        await signInTo(page, 'Eve', 'Fay');
        const keys: string[] = [];
        let first = true;
        await page.route('**/v1/messages', async (route) => {
          keys.push(route.request().headers()['idempotency-key'] ?? '');
          if (!first) return route.continue();
          first = false;
          // The server stores it and answers, but the answer never reaches the browser.
          await route.fetch();
          await route.abort('connectionreset');
        });
        const box = page.getByRole('textbox', { name: 'Message', exact: true });
        await box.fill('exactly once');
        await box.press('Enter');
        const failed = page.getByRole('list', { name: 'Messages with Fay' }).getByRole('listitem').filter({ hasText: 'exactly once' });
        await failed.getByText(/Not sent\. The server cannot be reached/).waitFor();
        await failed.getByRole('button', { name: 'Retry' }).click();
        await failed.getByText('Sent', { exact: true }).waitFor();
        assert.equal(keys.length, 2);
        assert.match(keys[0]!, /^web-[0-9a-f]{32}$/);
        assert.equal(keys[1], keys[0], 'the retry sent the same key');
        assert.deepEqual(await shown(page, 'Fay'), ['exactly once']);
        const stored = (await get('Fay', '/v1/users/Fay/messages')).json<MessagePage>();
        assert.deepEqual(stored.messages.map((m) => m.message), ['exactly once'], 'stored once');

        // A failure the person chooses to edit gives the text back to the field.
        await page.unroute('**/v1/messages');
        await page.route('**/v1/messages', (route) => route.abort('connectionrefused'));
        await box.fill('edit me');
        await box.press('Enter');
        const again = page.getByRole('listitem').filter({ hasText: 'edit me' });
        await again.getByRole('button', { name: 'Edit' }).click();
        assert.equal(await box.inputValue(), 'edit me');
        await again.waitFor({ state: 'detached' });
      } finally {
        await eve.context.close();
      }
    });
  });
}
