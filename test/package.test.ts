/**
 * The package as a user gets it: `npm pack` (which builds dist/ through `prepare`), the
 * tarball installed in a temporary directory, `import('postbox')` and `import('postbox/client')`
 * resolved through its `exports`, an embedded server started from it, and the `postbox` bin run.
 *
 * The tarball is installed the way npm lays it out (unpacked into node_modules/postbox, its
 * bin linked into node_modules/.bin and made executable) but its dependencies are links to
 * this checkout's node_modules instead of a registry install: installing them would compile
 * better-sqlite3 (minutes) and need the network, and proves nothing about our package. What
 * is ours is still proven: only the files the tarball holds are there (`files`), only the
 * entry points `exports` names resolve, and only the declared `dependencies` are linked, so
 * an import of an undeclared package fails here as it would for a user.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { tempDir } from './helpers/app.js';

const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  dependencies: Record<string, string>;
  bin: Record<string, string>;
};

describe('the packed package', () => {
  let dir: string;
  let files: string[];
  const installed = () => join(dir, 'node_modules', 'postbox');

  before(async () => {
    dir = await tempDir('postbox-pack-');
    await run('npm', ['pack', '--pack-destination', dir], { cwd: ROOT, timeout: 240_000, maxBuffer: 16 * 1024 * 1024 });
    const tarball = (await readdir(dir)).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack wrote a tarball');
    files = (await run('tar', ['-tzf', join(dir, tarball)])).stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    await mkdir(installed(), { recursive: true });
    await run('tar', ['-xzf', join(dir, tarball), '-C', installed(), '--strip-components=1']);
    for (const dep of Object.keys(pkg.dependencies)) {
      const link = join(dir, 'node_modules', dep);
      await mkdir(dirname(link), { recursive: true });
      await symlink(join(ROOT, 'node_modules', dep), link, 'dir');
    }
    // What npm does for a bin on install: a link in .bin, and the target made executable.
    for (const [name, target] of Object.entries(pkg.bin)) {
      await mkdir(join(dir, 'node_modules', '.bin'), { recursive: true });
      await symlink(join('..', 'postbox', target), join(dir, 'node_modules', '.bin', name));
      await chmod(join(installed(), target), 0o755);
    }
    // Packing runs `prepare`, a full build: far longer than a test's usual limit.
  }, { timeout: 300_000 });
  after(() => rm(dir, { recursive: true, force: true }));

  it('holds the built entry points, and no sources or tests', () => {
    for (const f of ['package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/client/index.js', 'dist/protocol/events.js', ...Object.values(pkg.bin)]) {
      assert.ok(files.includes(f), `${f} is in the tarball`);
    }
    assert.deepEqual(files.filter((f) => /^(src|test|bench|scripts)\//.test(f)), []);
  });

  it('imports as postbox and postbox/client, and embeds a working server', async () => {
    const script = join(dir, 'embed.mjs');
    await writeFile(script, `
      import * as postbox from 'postbox';
      import { PostboxClient } from 'postbox/client';
      const config = postbox.loadConfig({ env: { DATABASE_URL: 'sqlite:${join(dir, 'embedded.db')}', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent' } });
      const server = await postbox.startServer(config, postbox.createLogger('silent'));
      try {
        const client = new PostboxClient({ url: server.url });
        const sent = await client.send({ fromUser: 'ann', toUser: 'bob', message: 'from the tarball' });
        const page = await client.inbox('bob');
        let deep = 'resolved';
        try { await import('postbox/dist/app.js'); } catch (err) { deep = err.code; }
        console.log(JSON.stringify({
          exports: ['buildApp', 'buildServer', 'startServer', 'loadConfig', 'openStorage', 'AppError', 'frameEvent'].filter((n) => typeof postbox[n] === 'function'),
          catalog: postbox.ERROR_CATALOG.validation,
          version: postbox.packageVersion(),
          sent: sent.message,
          inbox: page.messages.map((m) => m.message),
          deep,
        }));
      } finally {
        await server.close();
      }
    `);
    const { stdout } = await run(process.execPath, [script], { cwd: dir, timeout: 60_000 });
    assert.deepEqual(JSON.parse(stdout), {
      exports: ['buildApp', 'buildServer', 'startServer', 'loadConfig', 'openStorage', 'AppError', 'frameEvent'],
      catalog: { status: 400, title: 'Invalid request' },
      version: pkg.version,
      sent: 'from the tarball',
      inbox: ['from the tarball'],
      deep: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
    });
  });

  it('runs the postbox bin: --version and --help', async () => {
    const bin = join(dir, 'node_modules', '.bin', 'postbox');
    assert.equal((await run(bin, ['--version'], { cwd: dir, timeout: 60_000 })).stdout, `${pkg.version}\n`);
    const help = (await run(bin, ['--help'], { cwd: dir, timeout: 60_000 })).stdout;
    assert.match(help, /^postbox: a self-hosted messaging API/);
    assert.match(help, /serve/);
  });
});
