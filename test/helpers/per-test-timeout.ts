/**
 * Gives every test and hook a time limit of its own (scripts/run-tests.mjs preloads this
 * with `--import`). Node 20 applies `--test-timeout` to a whole file, not to each test in
 * it, so a file of many honest tests on a busy machine was cancelled as if it had hung,
 * while one test that truly hangs took its whole file's budget to be noticed. A test or hook
 * that passes its own `timeout` keeps it.
 *
 * Node offers no default for this, so `it`, `test` and the hooks of `node:test` are wrapped
 * here and the module's ESM bindings re-synced before any test file imports them.
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';

/** Milliseconds a test or hook may take unless it says otherwise. */
const LIMIT_MS = Number(process.env.POSTBOX_TEST_TIMEOUT_MS) || 90_000;

type Fn = (...args: unknown[]) => unknown;

const nodeTest = createRequire(import.meta.url)('node:test') as Record<string, Fn>;

/** `it`/`test`: (name?, options?, fn?) with the limit merged under the given options. */
function limitTest(original: Fn): Fn {
  const wrapped = (...args: unknown[]) => {
    const fnAt = args.findIndex((a) => typeof a === 'function');
    const optionsAt = args.findIndex((a) => typeof a === 'object' && a !== null);
    if (optionsAt >= 0) args[optionsAt] = { timeout: LIMIT_MS, ...(args[optionsAt] as object) };
    else if (fnAt >= 0) args.splice(fnAt, 0, { timeout: LIMIT_MS });
    else args.push({ timeout: LIMIT_MS });
    // A name-less call (it(fn)) must not have the options taken for its name.
    if (typeof args[0] === 'object') args.unshift(undefined);
    return original(...args);
  };
  return Object.assign(wrapped, original);
}

/** Hooks: (fn, options?). */
function limitHook(original: Fn): Fn {
  return (...args: unknown[]) => original(args[0], { timeout: LIMIT_MS, ...(args[1] as object | undefined) });
}

for (const name of ['it', 'test']) nodeTest[name] = limitTest(nodeTest[name]!);
for (const name of ['before', 'after', 'beforeEach', 'afterEach']) nodeTest[name] = limitHook(nodeTest[name]!);
syncBuiltinESMExports();
