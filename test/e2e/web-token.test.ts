/**
 * The web app in real Chromium against a real server in token mode: the admin page (list,
 * add with the token shown once and a copy button, remove after confirming), signing in with
 * a token, remembered across a reload, sign-out, a bad token refused with its reason, and a
 * removed user sent back to sign-in live with the reason. Every screen is scanned by axe.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { postJson, request } from '../helpers/http.js';
import { describeWithChromium, focusBy, itOnNetworkAddress, launchBrowser, person, seriousViolations } from '../helpers/browser.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { ensureWebBuilt } from '../helpers/web-build.js';

const DOCS = new URL('../../docs/', import.meta.url);
const ADMIN = 'the-admin-token-for-the-web-tests-0123456789';

let server: TestServer;
let browser: Browser;

async function assertAccessible(page: Page, screen: string): Promise<void> {
  const violations = await seriousViolations(page);
  assert.deepEqual(violations, [], `${screen}: ${JSON.stringify(violations, null, 1)}`);
}

async function signInWithToken(page: Page, token: string): Promise<void> {
  await page.goto(server.url);
  await page.getByLabel('Token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Adds a user on the admin page and answers the token it shows. */
async function addUser(admin: Page, id: string): Promise<string> {
  await admin.getByLabel('New user').fill(id);
  await admin.getByRole('button', { name: 'Add user' }).click();
  const token = admin.getByRole('textbox', { name: `Token for ${id}` });
  await token.waitFor();
  return token.inputValue();
}

describeWithChromium('web app, token mode', () => {
  before(async () => {
    ensureWebBuilt();
    [server, browser] = await Promise.all([
      startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN }),
      launchBrowser(),
    ]);
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('serves the app without a token and says it runs in token mode', async () => {
    assert.equal((await request(server.url, '/')).status, 200);
    assert.equal((await request(server.url, '/v1/server')).json<{ auth: string }>().auth, 'token');
    assert.equal((await request(server.url, '/v1/me')).status, 401);
  });

  it('lets the admin add users (token shown once, copied), and people sign in with them', async () => {
    const admin = await person(browser);
    const ann = await person(browser);
    const bob = await person(browser);
    await admin.context.grantPermissions(['clipboard-read', 'clipboard-write']);
    try {
      // A wrong token is refused with the reason, and the field keeps what was typed.
      await signInWithToken(admin.page, 'pbx_not-a-token');
      await admin.page.getByRole('alert').getByText(/Your token is not valid/).waitFor();
      assert.equal(await admin.page.getByLabel('Token').inputValue(), 'pbx_not-a-token');
      await assertAccessible(admin.page, 'token sign-in with a problem');

      await signInWithToken(admin.page, ADMIN);
      await admin.page.getByRole('heading', { name: 'Users' }).waitFor();
      await assertAccessible(admin.page, 'admin, empty');
      const annToken = await addUser(admin.page, 'ann');
      assert.match(annToken, /^pbx_/);
      await admin.page.getByRole('button', { name: 'Copy' }).click();
      await admin.page.getByText('Copied.').waitFor();
      assert.equal(await admin.page.evaluate('navigator.clipboard.readText()'), annToken);
      const bobToken = await addUser(admin.page, 'bob');
      await admin.page.getByRole('list', { name: 'Users' }).getByText('ann', { exact: true }).waitFor();
      await assertAccessible(admin.page, 'admin with a new token');
      await admin.page.screenshot({ path: new URL('web-admin.png', DOCS).pathname });
      // Taken ids are refused in words.
      await admin.page.getByLabel('New user').fill('ann');
      await admin.page.getByRole('button', { name: 'Add user' }).click();
      await admin.page.getByRole('alert').getByText('A user with that id already exists. Choose another id.').waitFor();
      assert.equal(await admin.page.getByLabel('New user').inputValue(), 'ann', 'the typed id stays after the error');
      // Shown once: after a reload the token is nowhere on the page.
      await admin.page.reload();
      await admin.page.getByRole('list', { name: 'Users' }).getByText('bob', { exact: true }).waitFor();
      assert.equal(await admin.page.getByText(bobToken).count(), 0);

      // Ann and Bob sign in with their tokens and chat.
      await signInWithToken(ann.page, annToken);
      await signInWithToken(bob.page, bobToken);
      await ann.page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
      await bob.page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
      await ann.page.getByLabel('New conversation').fill('bob');
      await ann.page.getByRole('button', { name: 'Start' }).click();
      await ann.page.getByRole('textbox', { name: 'Message', exact: true }).fill('token mode works');
      await ann.page.getByRole('button', { name: 'Send' }).click();
      await bob.page.getByRole('navigation', { name: 'Conversations' }).getByText('token mode works').waitFor();

      // Remembered across a reload; signed out for good.
      await ann.page.reload();
      await ann.page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
      await ann.page.getByRole('button', { name: 'Sign out' }).click();
      await ann.page.getByLabel('Token').waitFor();
      await ann.page.reload();
      await ann.page.getByLabel('Token').waitFor();

      // The admin removes Bob (after confirming): Bob's open tab goes back to sign-in, saying why.
      admin.page.once('dialog', (d) => void d.accept());
      await admin.page.getByRole('button', { name: 'Remove bob' }).click();
      await admin.page.getByRole('list', { name: 'Users' }).getByText('bob', { exact: true }).waitFor({ state: 'detached' });
      // Bob's id stays reserved: adding it again is refused, saying why and how to free it.
      await admin.page.getByLabel('New user').fill('bob');
      await admin.page.getByRole('button', { name: 'Add user' }).click();
      await admin.page.getByRole('alert').getByText('That id belongs to a removed user and stays reserved, so that no one inherits their messages. ' +
        'Choose another id, or free it (deleting those messages) with "postbox users remove bob --purge" or the API\'s DELETE /v1/users/bob?purge=true.').waitFor();
      await bob.page.getByLabel('Token').waitFor();
      await bob.page.getByRole('alert').getByText(/the user was removed/).waitFor();
      // And a reload with the remembered, now dead, token lands on sign-in too.
      await bob.page.reload();
      await bob.page.getByLabel('Token').waitFor();
      assert.deepEqual([...admin.problems, ...ann.problems, ...bob.problems].filter((p) => !/401/.test(p)), []);
    } finally {
      await admin.context.close();
      await ann.context.close();
      await bob.context.close();
    }
  });

  it('lets the admin add, copy and remove a user by keyboard alone, in the system\'s dark theme', async () => {
    const admin = await person(browser, { colorScheme: 'dark' });
    await admin.context.grantPermissions(['clipboard-read', 'clipboard-write']);
    try {
      const { page } = admin;
      await page.goto(server.url);
      await page.getByLabel('Token').waitFor();
      await assertAccessible(page, 'token sign-in, dark');
      await page.keyboard.type(ADMIN);
      await focusBy(page, 'Tab', 'el.textContent === "Sign in"', 'Sign in');
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: 'Users' }).waitFor();

      await focusBy(page, 'Tab', 'el.id === "new-user"', 'the New user field');
      await page.keyboard.type('kay');
      await page.keyboard.press('Enter');
      const token = page.getByRole('textbox', { name: 'Token for kay' });
      await token.waitFor();
      await focusBy(page, 'Tab', 'el.textContent === "Copy"', 'Copy');
      await page.keyboard.press('Enter');
      await page.getByText('Copied.').waitFor();
      assert.equal(await page.evaluate('navigator.clipboard.readText()'), await token.inputValue());
      assert.equal(await page.evaluate<string>('getComputedStyle(document.body).backgroundColor'), 'rgb(17, 19, 24)', 'dark, from the system');
      await assertAccessible(page, 'admin with a new token, dark');

      page.once('dialog', (d) => void d.accept());
      await focusBy(page, 'Tab', 'el.getAttribute("aria-label") === "Remove kay"', 'Remove kay');
      await page.keyboard.press('Enter');
      await page.getByRole('list', { name: 'Users' }).getByText('kay', { exact: true }).waitFor({ state: 'detached' });
      assert.equal((await request(server.url, '/v1/users', { headers: { authorization: `Bearer ${ADMIN}` } }))
        .json<{ users: { id: string }[] }>().users.some((u) => u.id === 'kay'), false, 'removed on the server');
    } finally {
      await admin.context.close();
    }
  });

  itOnNetworkAddress('copies a new token over plain HTTP on a network address, where there is no clipboard API', async (lanAddress) => {
    const lan = await startTestServer({ HOST: '0.0.0.0', POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN });
    const admin = await person(browser);
    try {
      const { page } = admin;
      const port = new URL(lan.url).port;
      await page.goto(`http://${lanAddress}:${port}`);
      assert.equal(await page.evaluate('window.isSecureContext'), false, 'plain HTTP by address: not a secure context');
      assert.equal(await page.evaluate('navigator.clipboard === undefined'), true, 'no clipboard API here');
      await page.getByLabel('Token').fill(ADMIN);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('heading', { name: 'Users' }).waitFor();
      const token = await addUser(page, 'lan');
      await page.getByRole('button', { name: 'Copy' }).click();
      // The fallback (execCommand on the selected field) copied, and says so.
      await page.getByRole('status').getByText('Copied.').waitFor();
      assert.equal(await page.evaluate<string>(
        '(() => { const f = document.activeElement; return f.value.slice(f.selectionStart, f.selectionEnd); })()'), token,
      'the token field is focused with the whole token selected');
      // Read back where the clipboard API exists: the same browser profile on a loopback address.
      const loopback = `http://127.0.0.1:${port}`;
      await admin.context.grantPermissions(['clipboard-read'], { origin: loopback });
      const reader = await admin.context.newPage();
      await reader.goto(loopback);
      assert.equal(await reader.evaluate('navigator.clipboard.readText()'), token, 'the token is on the clipboard');
      assert.deepEqual(admin.problems, [], 'no CSP refusal, no script error');
    } finally {
      await admin.context.close();
      await lan.stop();
    }
  });

  it('shows read receipts live and deletes for both people, in token mode', async () => {
    const tokens: Record<string, string> = {};
    for (const id of ['lee', 'mo']) {
      const created = await postJson(server.url, '/v1/users', { id }, { authorization: `Bearer ${ADMIN}` });
      assert.equal(created.status, 201, created.text);
      tokens[id] = created.json<{ token: string }>().token;
    }
    const lee = await person(browser);
    const mo = await person(browser);
    try {
      await signInWithToken(lee.page, tokens.lee!);
      await signInWithToken(mo.page, tokens.mo!);
      await lee.page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
      await mo.page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
      await lee.page.goto(`${server.url}/#/c/mo`);
      const box = lee.page.getByRole('textbox', { name: 'Message', exact: true });
      for (const text of ['read this', 'then forget it']) {
        await box.fill(text);
        await box.press('Enter');
        await lee.page.getByRole('listitem').filter({ hasText: text }).getByText('Sent', { exact: true }).waitFor();
      }
      // Mo opens the conversation: Lee sees "Read" appear live on both.
      await mo.page.getByRole('navigation', { name: 'Conversations' }).getByRole('link', { name: /lee/ }).click();
      const moView = mo.page.getByRole('list', { name: 'Messages with lee' });
      await moView.getByText('then forget it').waitFor();
      const leeView = lee.page.getByRole('list', { name: 'Messages with mo' });
      for (const text of ['read this', 'then forget it']) {
        await leeView.getByRole('listitem').filter({ hasText: text }).getByText('Read', { exact: true }).waitFor();
      }
      // Lee deletes one, confirmed: gone from both views live.
      lee.page.once('dialog', (d) => void d.accept());
      await leeView.getByRole('button', { name: 'Delete message: then forget it' }).click();
      await leeView.getByText('then forget it').waitFor({ state: 'detached' });
      await moView.getByText('then forget it').waitFor({ state: 'detached' });
      assert.deepEqual(await moView.locator('.text').allInnerTexts(), ['read this']);
      assert.deepEqual([...lee.problems, ...mo.problems], []);
    } finally {
      await lee.context.close();
      await mo.context.close();
    }
  });

  it('sends a person whose token is revoked back to sign-in with the reason on the next call', async () => {
    const created = await request(server.url, '/v1/users', {
      method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: 'cy' }),
    });
    const token = created.json<{ token: string }>().token;
    const cy = await person(browser);
    try {
      await signInWithToken(cy.page, token);
      await cy.page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
      const revoked = await request(server.url, '/v1/users/cy/tokens', { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
      assert.equal(revoked.status, 204);
      await cy.page.getByLabel('Token').waitFor();
      await cy.page.getByRole('alert').getByText(/revoked/).waitFor();
    } finally {
      await cy.context.close();
    }
  });
});
