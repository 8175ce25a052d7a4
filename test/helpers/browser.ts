/**
 * Real Chromium for the web app's end-to-end tests: Debian's `chromium` driven through
 * playwright-core (no browser download), one browser per test file, axe-core injected into
 * a page to scan it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { networkInterfaces } from 'node:os';
import { describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/** Where Debian installs Chromium (`apt-get install chromium`); `.ci/run` installs it when missing. */
export const CHROMIUM = '/usr/bin/chromium';

/** How long any one wait for the page may take. */
export const WAIT_MS = 15_000;

/**
 * Declares a suite that needs Chromium. Without it the suite is skipped, saying why; under
 * CI (CI=true) it fails instead, so a missing browser never passes as green.
 */
export function describeWithChromium(title: string, body: () => void): void {
  if (existsSync(CHROMIUM)) {
    describe(title, body);
    return;
  }
  const reason = `${CHROMIUM} is not installed (apt-get install chromium)`;
  describe(title, () => {
    if (process.env.CI === 'true') {
      it('needs Chromium, which CI must provide', () => {
        throw new Error(`${reason}; .ci/run installs it`);
      });
    } else {
      it(`skipped: ${reason}`, { skip: reason }, () => undefined);
    }
  });
}

/** The machine's first non-loopback IPv4 address, if it has one: a page there is plain HTTP, not a secure context. */
export const lanAddress: string | undefined = Object.values(networkInterfaces()).flat()
  .find((a) => a?.family === 'IPv4' && !a.internal)?.address;

/**
 * Declares a test that browses the server by {@link lanAddress}, which `body` gets. Without
 * one it is skipped, saying why; under CI (CI=true) it fails instead, as
 * {@link describeWithChromium} does, so a runner without a network address never passes as green.
 */
export function itOnNetworkAddress(title: string, body: (address: string) => Promise<void>): void {
  const address = lanAddress;
  if (address !== undefined) {
    it(title, () => body(address));
    return;
  }
  const reason = 'this machine has no non-loopback IPv4 address to browse by';
  if (process.env.CI === 'true') {
    it(title, () => {
      throw new Error(`${reason}; CI must provide one`);
    });
  } else {
    it(title, { skip: reason }, () => undefined);
  }
}

/** Launches the file's one browser. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    timeout: 60_000,
  });
}

/**
 * A fresh person: a context of their own (separate storage), and a page that records CSP
 * refusals and errors. `colorScheme` is the system theme the page sees (Chromium's default: light).
 */
export async function person(
  browser: Browser,
  options: { width?: number; height?: number; colorScheme?: 'light' | 'dark' } = {},
): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext({
    viewport: { width: options.width ?? 1100, height: options.height ?? 760 },
    reducedMotion: 'reduce',
    ...(options.colorScheme ? { colorScheme: options.colorScheme } : {}),
  });
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    // The app logs nothing; a CSP refusal or an uncaught error shows up here.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));
  return { context, page, problems };
}

let axeSource: string | undefined;

/** A violation axe-core found. */
export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/**
 * Runs axe-core in the page and answers its serious and critical violations. The script is
 * evaluated through the DevTools protocol, which the app's CSP (rightly) does not allow a
 * page script to do.
 */
export async function seriousViolations(page: Page): Promise<AxeViolation[]> {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  if (!(await page.evaluate('typeof window.axe !== "undefined"'))) await page.evaluate(axeSource);
  // A string, not a function: this file compiles without the DOM's types.
  const result = await page.evaluate<AxeViolation[]>(
    'window.axe.run(document, { resultTypes: ["violations"] }).then((r) => r.violations)',
  );
  return result
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) }));
}

/** Resolves once `check` answers true, asking again every 50 ms; rejects past the deadline. */
export async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Presses `key` (Tab, Shift+Tab) until `test`, an expression over `el` (the focused element),
 * holds; fails naming `what` if it never does within `max` presses. Then checks that the
 * focus is visible on it: an outline or a box-shadow.
 */
export async function focusBy(page: Page, key: 'Tab' | 'Shift+Tab', test: string, what: string, max = 40): Promise<void> {
  const holds = () => page.evaluate<boolean>(`((el) => Boolean(el && (${test})))(document.activeElement)`);
  for (let i = 0; i < max && !(await holds()); i++) await page.keyboard.press(key);
  if (!(await holds())) {
    const at = await page.evaluate<string>('document.activeElement?.outerHTML.slice(0, 120) ?? "nothing"');
    throw new Error(`${key} ${max} times did not reach ${what}; focus is on ${at}`);
  }
  const visible = await page.evaluate<boolean>(`((s) => (s.outlineStyle !== 'none' && s.outlineWidth !== '0px') || s.boxShadow !== 'none')(getComputedStyle(document.activeElement))`);
  if (!visible) throw new Error(`the focus on ${what} is not visible (no outline, no box-shadow)`);
}
