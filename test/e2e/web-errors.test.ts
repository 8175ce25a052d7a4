/**
 * The web app's errors in words, in real Chromium against a real server: a rate limit says
 * when to retry, a message too long (the domain's limit and the server's body limit) says the
 * limit, storage unavailable says to try again shortly (in token mode too), a refused stream
 * says why beside the connection state. In each, what was typed stays: the failed send keeps
 * its text, and Edit puts it back in the field.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { postJson, request } from '../helpers/http.js';
import { describeWithChromium, launchBrowser, person, seriousViolations } from '../helpers/browser.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { ensureWebBuilt } from '../helpers/web-build.js';
import { bodyLimitFor } from '../../src/app.js';

const MAX_BYTES = 300;
const ADMIN = 'the-admin-token-for-the-web-error-tests-0123456789';

let server: TestServer;
let browser: Browser;

/** Signs `user` in on `base` (open mode; token mode with `token`) and opens the conversation with `peer`. */
async function openConversation(page: Page, base: string, user: string, peer: string, token?: string): Promise<void> {
  await page.goto(base);
  if (token === undefined) await page.getByLabel('User').fill(user);
  else await page.getByLabel('Token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
  await page.goto(`${base}/#/c/${peer}`);
  await page.getByRole('heading', { name: peer }).waitFor();
}

/**
 * Sends `text` from the open conversation, expects it to fail with a sentence matching
 * `reason`, and checks that nothing typed is lost: the failed send shows the text, and Edit
 * gives it back to the field. Answers the sentence shown.
 */
async function sendFails(page: Page, peer: string, text: string, reason: RegExp, scan = false): Promise<string> {
  const box = page.getByRole('textbox', { name: 'Message', exact: true });
  await box.fill(text);
  await box.press('Enter');
  const failed = page.getByRole('list', { name: `Messages with ${peer}` }).getByRole('listitem').filter({ hasText: 'Not sent.' });
  const said = failed.getByRole('alert');
  await said.waitFor();
  const sentence = await said.innerText();
  assert.match(sentence, reason);
  assert.equal(await failed.locator('.text').innerText(), text, 'the failed send keeps its text');
  if (scan) {
    const violations = await seriousViolations(page);
    assert.deepEqual(violations, [], `a failed send with Retry and Edit: ${JSON.stringify(violations, null, 1)}`);
  }
  await failed.getByRole('button', { name: 'Edit' }).click();
  await failed.waitFor({ state: 'detached' });
  assert.equal(await box.inputValue(), text, 'Edit gives the text back to the field');
  return sentence;
}

describeWithChromium('web app, errors in words', () => {
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

  it('says when to retry after a rate limit (429), keeping the text', async () => {
    const limited = await startTestServer({ POSTBOX_RATE_LIMIT: '40' });
    const ann = await person(browser);
    try {
      await openConversation(ann.page, limited.url, 'Ann', 'Bob');
      // The app and this test share the client address, and so its bucket: use up the rest.
      let status = 0;
      for (let i = 0; i < 40 && status !== 429; i++) status = (await request(limited.url, '/v1/users/Zed/messages')).status;
      assert.equal(status, 429, 'the bucket is used up');
      const said = await sendFails(ann.page, 'Bob', 'hello, slowly', /^Not sent\. Too many requests in a short time\. Try again in (\d+ seconds?|1 minute)\.$/);
      const seconds = Number(/in (\d+) second/.exec(said)?.[1] ?? 60);
      assert.ok(seconds >= 1 && seconds <= 60, `within the minute's window: ${said}`);
    } finally {
      await ann.context.close();
      await limited.stop();
    }
  });

  it('gives the limit of a message too long (413), by the message limit and by the body limit', async () => {
    const cy = await person(browser);
    try {
      // The app will not send past the limit it was told; telling it a larger one lets the
      // server's own refusals through.
      await cy.page.route('**/v1/server', async (route) => {
        const response = await route.fetch();
        await route.fulfill({ response, json: { ...(await response.json() as object), maxMessageBytes: 16 * 1024 * 1024 } });
      });
      await openConversation(cy.page, server.url, 'Cy', 'Dee');
      await sendFails(cy.page, 'Dee', 'x'.repeat(MAX_BYTES + 1),
        /^Not sent\. This message is too long: the limit is 300 bytes\. Shorten it and send again\.$/);
      const bodyLimit = bodyLimitFor(MAX_BYTES);
      await sendFails(cy.page, 'Dee', 'y'.repeat(bodyLimit + 1),
        new RegExp(`^Not sent\\. This message is too long: the limit is ${bodyLimit.toLocaleString('en')} bytes\\.`));
      const stored = (await request(server.url, '/v1/users/Dee/messages')).json<{ messages: unknown[] }>();
      assert.equal(stored.messages.length, 0, 'nothing was stored');
    } finally {
      await cy.context.close();
    }
  });

  it('shows why the live connection is down as text beside its state, fitting a 360 px phone', async () => {
    const one = await startTestServer({ POSTBOX_STREAMS_PER_USER: '1' });
    const first = await person(browser);
    const second = await person(browser, { width: 360, height: 740 });
    try {
      await openConversation(first.page, one.url, 'Gus', 'Hob');
      // The same user in a second window: the server refuses its stream (too many windows).
      await second.page.goto(one.url);
      await second.page.getByLabel('User').fill('Gus');
      await second.page.getByRole('button', { name: 'Sign in' }).click();
      const state = second.page.getByRole('status').filter({ hasText: 'Reconnecting' });
      const why = state.getByText('Too many windows are following this account live. Close some tabs; this one keeps trying.');
      await why.waitFor();
      assert.equal(await why.isVisible(), true, 'the reason is on screen, not only in a tooltip');
      assert.equal(await second.page.evaluate('document.documentElement.scrollWidth <= window.innerWidth'), true, 'no sideways scrolling');
      const box = await why.boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 360, `the reason fits the width: ${JSON.stringify(box)}`);
      const violations = await seriousViolations(second.page);
      assert.deepEqual(violations, [], `reconnecting with a reason: ${JSON.stringify(violations, null, 1)}`);
      // The other window closes: this one gets through, and the reason goes.
      await first.context.close();
      await second.page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
      await why.waitFor({ state: 'detached' });
    } finally {
      await first.context.close();
      await second.context.close();
      await one.stop();
    }
  });

  for (const mode of ['open', 'token'] as const) {
    it(`says storage unavailable (503) means try again shortly; the retry then goes through (${mode} mode)`, async () => {
      // Token mode sends its bearer token on a path of its own: its failures must read the same.
      const tokenServer = mode === 'token' ? await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN }) : undefined;
      const eve = await person(browser);
      try {
        const { page } = eve;
        if (tokenServer) {
          const tokens: string[] = [];
          for (const id of ['Eve', 'Fay']) {
            const created = await postJson(tokenServer.url, '/v1/users', { id }, { authorization: `Bearer ${ADMIN}` });
            assert.equal(created.status, 201, created.text);
            tokens.push(created.json<{ token: string }>().token);
          }
          await openConversation(page, tokenServer.url, 'Eve', 'Fay', tokens[0]);
        } else {
          await openConversation(page, server.url, 'Eve', 'Fay');
        }
        await page.route('**/v1/messages', (route) => route.fulfill({
          status: 503,
          headers: { 'retry-after': '1' },
          contentType: 'application/problem+json',
          body: JSON.stringify({
            type: '/problems/storage_unavailable', title: 'Storage unavailable', status: 503,
            detail: 'the storage is not answering', errors: [],
          }),
        }));
        await sendFails(page, 'Fay', 'still here?', /^Not sent\. The server cannot reach its storage right now\. Nothing was lost; try again shortly\.$/, true);
        // Sent again once storage is back: nothing was lost.
        await page.unroute('**/v1/messages');
        await page.getByRole('button', { name: 'Send' }).click();
        await page.getByRole('listitem').filter({ hasText: 'still here?' }).getByText('Sent', { exact: true }).waitFor();
        assert.deepEqual(eve.problems.filter((p) => !/\b(429|413|503)\b/.test(p)), []);
      } finally {
        await eve.context.close();
        await tokenServer?.stop();
      }
    });
  }
});
