// Runs every test file under test/ with Node's test runner and tsx, one process per file.
// Node 20's runner does not expand globs itself, so the files are found here.
// Usage: node scripts/run-tests.mjs [path-substring ...]
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
  '--test',
  '--test-concurrency=2',
  '--test-timeout=120000',
  ...files,
], { stdio: 'inherit' });
process.exit(result.status ?? 1);
