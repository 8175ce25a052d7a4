/**
 * `postbox --help`, `--version`, `postbox serve --help`, and the clear refusals of
 * `postbox serve`, run in-process; the executable itself answers --help once.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { cli, type CliRun } from '../helpers/cli.js';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;

/** Runs the real `postbox` executable (from source): only where the process itself is the point. */
function executable(args: string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', CLI, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('postbox serve', () => {
  it('lists the commands with --help, as the executable too', async () => {
    for (const out of [await cli(['--help']), await executable(['--help'])]) {
      assert.equal(out.code, 0);
      assert.match(out.stdout, /Usage: postbox <command>/);
      assert.match(out.stdout, /serve\s+run the server/);
    }
  });

  it('says its version', async () => {
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.deepEqual(await cli(['--version']), { code: 0, stdout: `${version}\n`, stderr: '' });
  });

  it('explains every setting with serve --help', async () => {
    const out = await cli(['serve', '--help']);
    assert.equal(out.code, 0);
    for (const name of ['PORT', 'HOST', 'DATABASE_URL', 'POSTBOX_AUTH', 'POSTBOX_ADMIN_TOKEN', 'POSTBOX_MAX_MESSAGE_BYTES',
      'POSTBOX_RATE_LIMIT', 'POSTBOX_DURABILITY', 'LOG_LEVEL', '--allow-open-network']) {
      assert.ok(out.stdout.includes(name), name);
    }
  });

  it('refuses a bad setting with one clear line and exit code 2', async () => {
    const out = await cli(['serve'], { PORT: 'eighty' });
    assert.equal(out.code, 2);
    assert.equal(out.stderr, 'postbox: PORT must be a whole number, got "eighty"\n');
  });

  it('refuses open mode on a public address, saying why', async () => {
    const out = await cli(['serve', '--host', '0.0.0.0']);
    assert.equal(out.code, 2);
    assert.equal(out.stderr.trim().split('\n').length, 1);
    assert.match(out.stderr, /refusing to listen on 0\.0\.0\.0 in open mode.*--allow-open-network/);
  });

  it('rejects an unknown command', async () => {
    const out = await cli(['frobnicate']);
    assert.equal(out.code, 2);
    assert.match(out.stderr, /unknown command "frobnicate"/);
  });
});
