// Runs every test file under test/ with Node's test runner and tsx, one process per file.
// Node 20's runner does not expand globs itself, so the files are found here.
// Usage: node scripts/run-tests.mjs [path-substring ...]
//
// Time limits are per test, not per file: test/helpers/per-test-timeout.ts (preloaded here)
// gives each test and hook 90 s unless it sets its own, since Node 20's --test-timeout would
// cancel a whole file of passing tests once their sum passes it. The file limit below is only
// a backstop against a process that hangs outside any test.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return find(path);
    return name.endsWith('.test.ts') ? [path] : [];
  });
}

const filters = process.argv.slice(2);
const files = find('test').filter((f) => filters.length === 0 || filters.some((s) => f.includes(s))).sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const result = spawnSync(process.execPath, [
  '--import', 'tsx',
  '--import', './test/helpers/per-test-timeout.ts',
  '--test',
  '--test-concurrency=2',
  '--test-timeout=900000',
  ...files,
], { stdio: 'inherit' });
process.exit(result.status ?? 1);
