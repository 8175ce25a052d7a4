/**
 * The web app in real Chromium against a real server (port 0, a real SQLite file) in open
 * mode: how it is served, sign-in remembered, two people chatting live with read receipts,
 * the list, badges and title, paging up without a jump, delete, the byte limit, keyboard
 * use, dark mode, the phone width, and an accessibility scan of each screen. Writes the
 * README's screenshots to docs/.
 */
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { Message } from '../../src/protocol/types.js';
import { postJson, request } from '../helpers/http.js';
import { describeWithChromium, eventually, focusBy, itOnNetworkAddress, launchBrowser, person, seriousViolations } from '../helpers/browser.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { ensureWebBuilt } from '../helpers/web-build.js';

const DOCS = new URL('../../docs/', import.meta.url);
const MAX_BYTES = 300;

let server: TestServer;
let browser: Browser;

async function send(from: string, to: string, message: string): Promise<Message> {
  const res = await postJson(server.url, '/v1/messages', { fromUser: from, toUser: to, message });
  assert.equal(res.status, 201, res.text);
  return res.json<Message>();
}

/** Opens the app and signs in as `user` (open mode: the "User" field). */
async function signIn(page: Page, user: string): Promise<void> {
  await page.goto(server.url);
  await page.getByLabel('User').fill(user);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
}

async function assertAccessible(page: Page, screen: string): Promise<void> {
  const violations = await seriousViolations(page);
  assert.deepEqual(violations, [], `${screen}: ${JSON.stringify(violations, null, 1)}`);
}

/** The conversation list's entry for `peer`. */
const entry = (page: Page, peer: string) => page.getByRole('navigation', { name: 'Conversations' }).getByRole('listitem').filter({ hasText: peer });

describeWithChromium('web app, open mode', () => {
  before(async () => {
    ensureWebBuilt();
    [server, browser] = await Promise.all([
      startTestServer({ POSTBOX_MAX_MESSAGE_BYTES: String(MAX_BYTES) }),
      launchBrowser(),
    ]);
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('is served at / with hashed, long-cached assets and a CSP that allows nothing from elsewhere', async () => {
    const page = await request(server.url, '/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.equal(page.headers['cache-control'], 'no-cache');
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /upgrade-insecure-requests|https:|\*/, 'nothing that breaks plain HTTP or lets another origin in');
    assert.equal(page.headers['strict-transport-security'], undefined);
    const assets = [...page.text.matchAll(/(?:src|href)="(\/app\/[^"]+)"/g)].map((m) => m[1]!);
    assert.equal(assets.length, 2, page.text);
    let gzipped = 0;
    for (const path of assets) {
      assert.match(path, /^\/app\/main-[A-Z0-9]{8}\.(js|css)$/);
      const res = await request(server.url, path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers['cache-control'], 'public, max-age=31536000, immutable');
      if (path.endsWith('.js')) gzipped += gzipSync(res.text).length;
    }
    assert.ok(gzipped < 60 * 1024, `first load is ${gzipped} bytes of JavaScript gzipped`);
    console.log(`web app first load: ${(gzipped / 1024).toFixed(1)} KB of JavaScript gzipped`);
    assert.equal((await request(server.url, '/app/main-NOTTHERE.js')).status, 404);
    const info = (await request(server.url, '/v1/server')).json<{ auth: string; maxMessageBytes: number }>();
    assert.equal(info.auth, 'open');
    assert.equal(info.maxMessageBytes, MAX_BYTES);
  });

  it('lets two people chat live: list, badge, title count, read receipts, both directions', async () => {
    const ann = await person(browser);
    const bob = await person(browser);
    try {
      await ann.page.goto(server.url);
      await ann.page.getByLabel('User').waitFor();
      await assertAccessible(ann.page, 'sign-in');
      await ann.page.screenshot({ path: new URL('web-signin.png', DOCS).pathname });
      await signIn(ann.page, 'Ann');
      await signIn(bob.page, 'Bob');

      // Ann starts a conversation by user id and sends with Enter.
      await ann.page.getByLabel('New conversation').fill('Bob');
      await ann.page.getByRole('button', { name: 'Start' }).click();
      const annBox = ann.page.getByRole('textbox', { name: 'Message', exact: true });
      await annBox.fill('Hello Bob');
      await annBox.press('Enter');
      await ann.page.getByRole('listitem').filter({ hasText: 'Hello Bob' }).getByText('Sent', { exact: true }).waitFor();
      assert.equal(await annBox.inputValue(), '', 'the field empties once sent');

      // Bob, on the list, sees it arrive live: an entry naming Ann, a badge, the title count.
      await entry(bob.page, 'Ann').getByText('1 unread').waitFor();
      await eventually(async () => (await bob.page.title()).startsWith('(1) '), 'the unread count in the title');
      assert.match(await entry(bob.page, 'Ann').innerText(), /Hello Bob/);
      await assertAccessible(bob.page, 'conversation list');

      // Bob opens it: it is read, and Ann sees "Read" appear live.
      await entry(bob.page, 'Ann').getByRole('link').click();
      await bob.page.getByRole('list', { name: 'Messages with Ann' }).getByText('Hello Bob').waitFor();
      await ann.page.getByRole('listitem').filter({ hasText: 'Hello Bob' }).getByText('Read', { exact: true }).waitFor();
      await eventually(async () => (await bob.page.title()) === 'Ann · Postbox', 'the title without a count');
      await bob.page.getByRole('navigation', { name: 'Conversations' }).getByText('unread').waitFor({ state: 'detached' });
      // One stream per tab, whatever is open: never one per conversation.
      assert.equal(server.hub.listenersOf('Bob'), 1);
      assert.equal(server.hub.listenersOf('Ann'), 1);

      // Bob answers over two lines (Shift+Enter), Ann sees it at the bottom, newest last.
      const bobBox = bob.page.getByRole('textbox', { name: 'Message', exact: true });
      await bobBox.pressSequentially('Hi Ann');
      await bobBox.press('Shift+Enter');
      await bobBox.pressSequentially('how are you?');
      await bob.page.getByRole('button', { name: 'Send' }).click();
      const reply = ann.page.getByRole('list', { name: 'Messages with Bob' }).getByRole('listitem').last();
      await reply.getByText('how are you?').waitFor();
      assert.match(await reply.innerText(), /Hi Ann\nhow are you\?/);
      await bob.page.getByRole('listitem').filter({ hasText: 'how are you?' }).getByText('Read', { exact: true }).waitFor();
      await assertAccessible(ann.page, 'conversation');
      await ann.page.screenshot({ path: new URL('web-conversation.png', DOCS).pathname });

      // Dark mode, by the switch: the same screen passes the scan (contrast included).
      // Each click waits for the switch to show its new state: the next click acts on what is shown.
      await ann.page.getByRole('button', { name: 'Theme: system' }).click();
      await ann.page.getByRole('button', { name: 'Theme: light' }).click();
      await ann.page.getByRole('button', { name: 'Theme: dark' }).waitFor();
      await eventually(
        async () => (await ann.page.evaluate('document.documentElement.dataset.theme')) === 'dark',
        'the dark theme applied',
      );
      await assertAccessible(ann.page, 'conversation, dark');
      await ann.page.screenshot({ path: new URL('web-dark.png', DOCS).pathname });

      // Remembered: a reload keeps Ann signed in, and the theme.
      await ann.page.reload();
      await ann.page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
      assert.equal(await ann.page.evaluate('document.documentElement.dataset.theme'), 'dark');
      await ann.page.getByRole('button', { name: 'Sign out' }).click();
      await ann.page.getByLabel('User').waitFor();
      assert.deepEqual([...ann.problems, ...bob.problems], [], 'no CSP refusal, no script error');
    } finally {
      await ann.context.close();
      await bob.context.close();
    }
  });

  it('loads older pages as the person scrolls up, without the view jumping', async () => {
    for (let i = 1; i <= 75; i++) await send('Cy', 'Dee', `line ${i}`);
    const dee = await person(browser);
    try {
      const { page } = dee;
      // The first older page is held until the test has measured the screen without it.
      let held: (() => Promise<void>) | undefined;
      const arrived = new Promise<void>((resolve) => {
        void page.route((url) => url.pathname.endsWith('/conversations/Cy') && url.searchParams.has('before') && url.searchParams.get('before') !== 'latest', (route) => {
          if (held) return route.continue();
          held = () => route.continue();
          resolve();
        });
      });
      await signIn(page, 'Dee');
      await entry(page, 'Cy').getByRole('link').click();
      const list = page.getByRole('list', { name: 'Messages with Cy' });
      await list.getByText('line 75', { exact: true }).waitFor();
      const scrollTop = () => page.evaluate<number>('document.querySelector(".scroller").scrollTop');
      const atBottom = () => page.evaluate<boolean>('(({ scrollHeight, scrollTop, clientHeight }) => scrollHeight - scrollTop - clientHeight < 4)(document.querySelector(".scroller"))');
      const toTop = () => page.evaluate('document.querySelector(".scroller").scrollTo({ top: 0 })');
      await eventually(atBottom, 'the newest at the bottom');
      assert.equal(await list.getByRole('listitem').count(), 30, 'one page at first');

      // At the top, the older page asked for and not yet here: where is the oldest message now?
      const oldest = list.getByText('line 46', { exact: true });
      await toTop();
      await arrived;
      await page.getByRole('button', { name: 'Loading older messages…' }).waitFor();
      const beforeY = (await oldest.boundingBox())!.y;
      assert.equal(await scrollTop(), 0);
      await held!();
      await list.getByText('line 16', { exact: true }).waitFor({ state: 'attached' });
      // The page went in above it: the message did not move on screen, and the view scrolled
      // down by the height put above (without anchoring it would sit at scrollTop 0, pushed down).
      const afterY = (await oldest.boundingBox())!.y;
      assert.ok(Math.abs(afterY - beforeY) < 2, `line 46 moved from y=${beforeY} to y=${afterY}`);
      assert.ok(await scrollTop() > 0, 'scrolled by the height of the page above');
      // And on to the very start: the rest loads, every message once.
      await toTop();
      await list.getByText('line 1', { exact: true }).waitFor({ state: 'attached' });
      assert.equal(await list.getByRole('listitem').count(), 75, 'every message once');
      assert.equal(await page.getByRole('button', { name: 'Load older messages' }).count(), 0, 'nothing older');
    } finally {
      await dee.context.close();
    }
  });

  it('lists conversations most recent first, with badges and "You: ", and shows older ones on request', async () => {
    await send('Qin', 'Pia', 'from Qin');
    await send('Pia', 'Rex', 'hi Rex');
    await send('Sol', 'Pia', 'Sol one');
    await send('Sol', 'Pia', 'Sol two');
    const pia = await person(browser);
    try {
      const { page } = pia;
      // Pages of two instead of the app's 200, so that three conversations need a second page.
      await page.route((url) => url.pathname === '/v1/users/Pia/conversations', (route) => {
        const url = new URL(route.request().url());
        url.searchParams.set('limit', '2');
        return route.continue({ url: url.toString() });
      });
      await signIn(page, 'Pia');
      const items = page.getByRole('navigation', { name: 'Conversations' }).getByRole('listitem');
      const texts = () => items.evaluateAll((els) => els.map((e) => (e as unknown as { innerText: string }).innerText.replace(/\s+/g, ' ').trim()));
      await entry(page, 'Rex').waitFor();
      assert.deepEqual(await texts(), ['Sol now Sol two 2 unread', 'Rex now You: hi Rex'], 'the first page, most recent first');
      assert.equal(await entry(page, 'Qin').count(), 0);

      await page.getByRole('button', { name: 'Show older conversations' }).click();
      await entry(page, 'Qin').waitFor();
      assert.deepEqual(await texts(), ['Sol now Sol two 2 unread', 'Rex now You: hi Rex', 'Qin now from Qin 1 unread']);
      await page.getByRole('button', { name: 'Show older conversations' }).waitFor({ state: 'detached' });
      await assertAccessible(page, 'conversation list with older conversations');

      // Reading Qin's message reloads the list's first page: the older page stays, badge gone.
      await entry(page, 'Qin').getByRole('link').click();
      await page.getByRole('list', { name: 'Messages with Qin' }).getByText('from Qin').waitFor();
      await entry(page, 'Qin').getByText('unread').waitFor({ state: 'detached' });
      await send('Tao', 'Pia', 'newest');
      await entry(page, 'Tao').waitFor();
      await eventually(async () => (await texts()).length === 4, 'four conversations');
      assert.deepEqual(await texts(), ['Tao now newest 1 unread', 'Sol now Sol two 2 unread', 'Rex now You: hi Rex', 'Qin now from Qin']);
    } finally {
      await pia.context.close();
    }
  });

  it('deletes a message after confirming, for both people, live', async () => {
    const eve = await person(browser);
    const fay = await person(browser);
    try {
      await signIn(eve.page, 'Eve');
      await signIn(fay.page, 'Fay');
      await send('Eve', 'Fay', 'keep this');
      await send('Eve', 'Fay', 'regret this');
      await eve.page.goto(`${server.url}/#/c/Fay`);
      await fay.page.goto(`${server.url}/#/c/Eve`);
      const mine = eve.page.getByRole('list', { name: 'Messages with Fay' }).getByRole('listitem').filter({ hasText: 'regret this' });
      await mine.waitFor();
      const fayView = fay.page.getByRole('list', { name: 'Messages with Eve' });
      await fayView.getByText('regret this').waitFor();
      // Dismissed: nothing happens.
      eve.page.once('dialog', (d) => void d.dismiss());
      await mine.getByRole('button', { name: /^Delete message/ }).click();
      assert.equal(await mine.count(), 1);
      eve.page.once('dialog', (d) => {
        assert.match(d.message(), /Delete this message for both of you/);
        void d.accept();
      });
      await mine.getByRole('button', { name: /^Delete message/ }).click();
      await mine.waitFor({ state: 'detached' });
      await fayView.getByText('regret this').waitFor({ state: 'detached' });
      await fayView.getByText('keep this').waitFor();
      // The list follows: its preview is the message before.
      await entry(fay.page, 'Eve').getByText('keep this').waitFor();
    } finally {
      await eve.context.close();
      await fay.context.close();
    }
  });

  it('shows the byte limit as it nears and will not send past it, keeping the text', async () => {
    const gus = await person(browser);
    try {
      await signIn(gus.page, 'Gus');
      await gus.page.goto(`${server.url}/#/c/Hal`);
      const box = gus.page.getByRole('textbox', { name: 'Message', exact: true });
      await box.fill('é'.repeat(130)); // 260 bytes of 300
      await gus.page.getByText('260 of 300 bytes').waitFor();
      await box.fill('é'.repeat(160)); // 320 bytes
      await gus.page.getByText('20 bytes over the 300-byte limit: shorten the message to send it.').waitFor();
      assert.equal(await gus.page.getByRole('button', { name: 'Send' }).isDisabled(), true);
      await assertAccessible(gus.page, 'over the byte limit');
      await box.press('Enter');
      assert.equal(await box.inputValue(), 'é'.repeat(160), 'nothing typed is lost');
      // A user id the server would refuse is refused here, in words, keeping what was typed.
      await gus.page.getByLabel('New conversation').fill('a/b');
      await gus.page.getByRole('button', { name: 'Start' }).click();
      await gus.page.getByRole('alert').getByText('A user id cannot contain "/" or "\\".').waitFor();
      assert.equal(await gus.page.getByLabel('New conversation').inputValue(), 'a/b');
      await assertAccessible(gus.page, 'new conversation refused');
      // Switching conversations keeps the draft too.
      await gus.page.goto(`${server.url}/#/c/Ida`);
      await gus.page.goto(`${server.url}/#/c/Hal`);
      assert.equal(await gus.page.getByRole('textbox', { name: 'Message', exact: true }).inputValue(), 'é'.repeat(160));
    } finally {
      await gus.context.close();
    }
  });

  it('follows the system theme (dark and light), and passes the scan on the boot screen and in dark', async () => {
    await send('Uma', 'Vic', 'in the dark');
    const background = (page: Page) => page.evaluate<string>('getComputedStyle(document.body).backgroundColor');
    const light = await person(browser, { colorScheme: 'light' });
    const dark = await person(browser, { colorScheme: 'dark' });
    try {
      await light.page.goto(server.url);
      await light.page.getByLabel('User').waitFor();
      assert.equal(await background(light.page), 'rgb(246, 247, 249)', 'the light theme');

      // The boot screen, held there: the server's mode is asked and not yet answered.
      const { page } = dark;
      let release: (() => Promise<void>) | undefined;
      const asked = new Promise<void>((resolve) => {
        void page.route('**/v1/server', (route) => {
          release = () => route.continue();
          resolve();
        });
      });
      await page.goto(server.url);
      await asked;
      await page.getByRole('status').getByText('Connecting to the server…').waitFor();
      assert.equal(await background(page), 'rgb(17, 19, 24)', 'the dark theme, from the system');
      await assertAccessible(page, 'boot screen, dark');
      await release!();
      await page.getByLabel('User').waitFor();
      assert.equal(await page.evaluate('document.documentElement.dataset.theme'), undefined, 'no theme chosen: the system decides');
      await assertAccessible(page, 'sign-in, dark');
      await page.getByLabel('User').fill('Vic');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await entry(page, 'Uma').getByText('1 unread').waitFor();
      assert.equal(await background(page), 'rgb(17, 19, 24)');
      await assertAccessible(page, 'conversation list, dark');
    } finally {
      await light.context.close();
      await dark.context.close();
    }
  });

  it('works by keyboard alone, with visible focus', async () => {
    await send('Jo', 'Kim', 'knock knock');
    // More than three pages, so that "Load older messages" stays after one press.
    for (let i = 1; i <= 95; i++) await send('Ola', 'Kim', `page line ${i}`);
    const kim = await person(browser);
    try {
      const { page } = kim;
      const focused = (test: string) => page.evaluate<boolean>(`((el) => Boolean(${test}))(document.activeElement)`);
      await page.goto(server.url);
      await page.getByLabel('User').waitFor();
      // The field has focus on load; type, then Tab to the button and press Enter.
      await page.keyboard.type('Kim');
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate('document.activeElement.textContent'), 'Sign in');
      const outline = await page.evaluate('getComputedStyle(document.activeElement).outlineStyle');
      assert.notEqual(outline, 'none', 'focus is visible');
      await page.keyboard.press('Enter');
      await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();

      // Tab until the conversation with Jo has focus, open it, answer, send with Enter.
      await focusBy(page, 'Tab', 'el.getAttribute("href") === "#/c/Jo"', 'the conversation with Jo');
      await page.keyboard.press('Enter');
      await page.getByRole('list', { name: 'Messages with Jo' }).getByText('knock knock').waitFor();
      assert.equal(await page.evaluate('document.activeElement.getAttribute("aria-label")'), 'Message', 'focus moves to the message field');
      await page.keyboard.type("who's there?");
      await page.keyboard.press('Enter');
      await page.getByRole('listitem').filter({ hasText: "who's there?" }).getByText('Sent', { exact: true }).waitFor();

      // Delete, confirmed: Shift+Tab back to the message's Delete button.
      page.once('dialog', (d) => void d.accept());
      await focusBy(page, 'Shift+Tab', 'el.getAttribute("aria-label") === "Delete message: who\'s there?"', 'Delete on the answer');
      await page.keyboard.press('Enter');
      await page.getByRole('list', { name: 'Messages with Jo' }).getByText("who's there?").waitFor({ state: 'detached' });

      // A new conversation, by its field and Enter.
      await focusBy(page, 'Tab', 'el.id === "new-conversation"', 'the New conversation field');
      await page.keyboard.type('Lia');
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: 'Lia' }).waitFor();
      await eventually(() => focused('el.getAttribute("aria-label") === "Message"'), 'focus to move to the message field');

      // A failed send: Edit gives the text back; then Retry sends it.
      await page.route('**/v1/messages', (route) => route.abort('connectionrefused'));
      await page.keyboard.type('hello Lia');
      await page.keyboard.press('Enter');
      const failed = page.getByRole('listitem').filter({ hasText: 'hello Lia' });
      await failed.getByRole('button', { name: 'Edit' }).waitFor();
      await focusBy(page, 'Shift+Tab', 'el.textContent === "Edit"', 'Edit on the failed send');
      await page.keyboard.press('Enter');
      await failed.waitFor({ state: 'detached' });
      const box = page.getByRole('textbox', { name: 'Message', exact: true });
      assert.equal(await box.inputValue(), 'hello Lia');
      await focusBy(page, 'Tab', 'el.getAttribute("aria-label") === "Message"', 'the message field');
      await page.keyboard.press('Enter');
      await failed.getByRole('button', { name: 'Retry' }).waitFor();
      await page.unroute('**/v1/messages');
      await focusBy(page, 'Shift+Tab', 'el.textContent === "Retry"', 'Retry on the failed send');
      await page.keyboard.press('Enter');
      await failed.getByText('Sent', { exact: true }).waitFor();

      // Load older, by its button.
      await focusBy(page, 'Tab', 'el.getAttribute("href") === "#/c/Ola"', 'the conversation with Ola');
      await page.keyboard.press('Enter');
      const withOla = page.getByRole('list', { name: 'Messages with Ola' }).getByRole('listitem');
      await withOla.getByText('page line 95', { exact: true }).waitFor();
      const older = page.getByRole('button', { name: 'Load older messages' });
      // Forward from the message field, round past the header and the list: Shift+Tab back
      // through the messages would load older pages on the way, by scrolling.
      await focusBy(page, 'Tab', 'el.classList.contains("older")', 'Load older messages');
      // Reaching it scrolls it into view, which may load a page by itself: wait for that.
      await older.waitFor();
      await eventually(async () => (await older.count()) === 1 && (await focused('el.classList.contains("older")')), 'the button, idle and still focused');
      const count = await withOla.count();
      await page.keyboard.press('Enter');
      await eventually(async () => (await withOla.count()) > count, 'an older page');

      // The theme switch (back up past the list and the header's Sign out), three presses round.
      await focusBy(page, 'Shift+Tab', 'el.textContent.startsWith("Theme:")', 'the theme switch');
      for (const [label, theme] of [['Theme: light', 'light'], ['Theme: dark', 'dark'], ['Theme: system', undefined]] as const) {
        await page.keyboard.press('Enter');
        await page.getByRole('button', { name: label }).waitFor();
        await eventually(async () => (await page.evaluate('document.documentElement.dataset.theme')) === theme, `the ${label}`);
      }

      // And out.
      await focusBy(page, 'Tab', 'el.textContent === "Sign out"', 'Sign out');
      await page.keyboard.press('Enter');
      await page.getByLabel('User').waitFor();
      assert.deepEqual(kim.problems.filter((p) => !/ERR_CONNECTION_REFUSED|ERR_FAILED/.test(p)), []);
    } finally {
      await kim.context.close();
    }
  });

  it('offers desktop notifications on a click (never at load) and shows one for a message while hidden', async () => {
    const nia = await person(browser);
    try {
      const { page } = nia;
      // A stand-in Notification that records what the app asks of it, and a tab that is hidden.
      await page.addInitScript(`
        window.__asked = 0; window.__shown = [];
        window.Notification = class { constructor(title, options) { window.__shown.push(title + ': ' + options.body); } };
        window.Notification.permission = 'default';
        window.Notification.requestPermission = async () => { window.__asked++; window.Notification.permission = 'granted'; return 'granted'; };
      `);
      await signIn(page, 'Nia');
      assert.equal(await page.evaluate('window.__asked'), 0, 'not asked at load');
      await page.getByRole('button', { name: 'Notify me' }).click();
      await page.getByRole('button', { name: 'Notify me' }).waitFor({ state: 'detached' });
      assert.equal(await page.evaluate('window.__asked'), 1);
      await page.evaluate(`Object.defineProperty(document, 'visibilityState', { get: () => 'hidden' });
        document.dispatchEvent(new Event('visibilitychange'))`);
      await send('Oli', 'Nia', 'are you there?');
      await eventually(async () => (await page.evaluate<string[]>('window.__shown')).length === 1, 'a notification');
      assert.deepEqual(await page.evaluate('window.__shown'), ['Postbox: Oli: are you there?']);
      await eventually(async () => (await page.title()) === '(1) Postbox', 'the unread count in the title');
    } finally {
      await nia.context.close();
    }
  });

  itOnNetworkAddress('works over plain HTTP on a network address: sign in, send, live, no CSP refusal', async (lanAddress) => {
    // Open mode on every interface needs --allow-open-network; an IP address needs no
    // POSTBOX_ALLOWED_HOSTS (a DNS-rebinding page cannot reach us by one), a LAN name would.
    const lan = await startTestServer({ HOST: '0.0.0.0' }, { argv: ['--allow-open-network'] });
    const wes = await person(browser);
    try {
      const { page } = wes;
      const base = `http://${lanAddress}:${new URL(lan.url).port}`;
      await page.goto(base);
      assert.equal(await page.evaluate('window.isSecureContext'), false, 'plain HTTP by address: not a secure context');
      await page.getByLabel('User').fill('Wes');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
      const sent = await postJson(lan.url.replace('0.0.0.0', '127.0.0.1'), '/v1/messages', { fromUser: 'Yan', toUser: 'Wes', message: 'over the LAN' });
      assert.equal(sent.status, 201, sent.text);
      await entry(page, 'Yan').getByText('1 unread').waitFor();
      await entry(page, 'Yan').getByRole('link').click();
      const box = page.getByRole('textbox', { name: 'Message', exact: true });
      await box.fill('heard you');
      await box.press('Enter');
      await page.getByRole('listitem').filter({ hasText: 'heard you' }).getByText('Sent', { exact: true }).waitFor();
      assert.equal(new URL(page.url()).protocol, 'http:');
      assert.deepEqual(wes.problems, [], 'no CSP refusal, no script error');
    } finally {
      await wes.context.close();
      await lan.stop();
    }
  });

  it('fits a 360 px phone: one pane at a time, no sideways scrolling', async () => {
    await send('Lu', 'Max', 'on the go');
    const max = await person(browser, { width: 360, height: 740 });
    try {
      const { page } = max;
      await signIn(page, 'Max');
      await entry(page, 'Lu').waitFor();
      const noSideways = () => page.evaluate('document.documentElement.scrollWidth <= window.innerWidth');
      assert.equal(await noSideways(), true);
      await assertAccessible(page, 'phone list');
      await entry(page, 'Lu').getByRole('link').click();
      await page.getByRole('list', { name: 'Messages with Lu' }).getByText('on the go').waitFor();
      assert.equal(await page.getByRole('navigation', { name: 'Conversations' }).isVisible(), false, 'the list gives way');
      assert.equal(await noSideways(), true);
      await assertAccessible(page, 'phone conversation');
      await page.screenshot({ path: new URL('web-phone.png', DOCS).pathname });
      await page.getByRole('link', { name: 'Back to conversations' }).click();
      await entry(page, 'Lu').waitFor();
    } finally {
      await max.context.close();
    }
  });
});
