/**
 * The README's quick start is what CI runs, and its settings table matches the server's.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { settingNames } from '../src/config.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const ci = readFileSync(new URL('../.ci/run', import.meta.url), 'utf8');

describe('README', () => {
  it('has a two-command quick start, and CI runs its test command as written', () => {
    const quick = readme.split('## Quick start')[1]!.split('\n## ')[0]!;
    const commands = [...quick.matchAll(/```sh\n([^\n]+)\n```/g)].map((m) => m[1]);
    assert.deepEqual(commands, ['npm ci && npm start', 'npm ci && npm test']);
    assert.match(ci, /^npm ci && npm test$/m);
    assert.match(ci, /^npm start /m);
  });

  it('lists every setting of the server in its table', () => {
    for (const { env, flag } of settingNames()) {
      if (env) assert.ok(readme.includes(`| \`${env}\` |`), `README names ${env}`);
      if (flag) assert.ok(readme.includes(`\`--${flag}\``), `README names --${flag}`);
    }
  });
});
