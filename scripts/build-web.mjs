// Builds the web app (web/) into dist/web/: one bundle of script and one of style, each named
// by a hash of its content under dist/web/app/, and index.html naming them. Run by
// `npm run build` (so by `npm ci`, through `prepare`); esbuild is a devDependency and needs no
// download. Prints the first load's JavaScript size, gzipped, which must stay under 60 KB.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Builds into `outDir` (default dist/web) and answers the gzipped size of the JavaScript.
 * Old hashed files are removed unless `keepOld` (a server running meanwhile may still be
 * asked for them: the tests build while another test file's server runs).
 */
export async function buildWeb(outDir = join(root, 'dist', 'web'), { keepOld = false } = {}) {
  const assets = join(outDir, 'app');
  mkdirSync(assets, { recursive: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: ['web/src/main.tsx'],
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['es2022', 'chrome109', 'firefox115', 'safari16'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir: assets,
    entryNames: '[name]-[hash]',
    assetNames: '[name]-[hash]',
    metafile: true,
    legalComments: 'none',
    logLevel: 'warning',
    tsconfig: 'web/tsconfig.json',
  });
  const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
  if (!keepOld) for (const name of readdirSync(assets)) if (!outputs.includes(name)) rmSync(join(assets, name));
  const script = outputs.find((n) => n.endsWith('.js'));
  const style = outputs.find((n) => n.endsWith('.css'));
  if (!script || !style) throw new Error(`web build produced ${outputs.join(', ')}`);
  const page = readFileSync(join(root, 'web', 'index.html'), 'utf8')
    .replace('%SCRIPT%', `/app/${script}`)
    .replace('%STYLE%', `/app/${style}`);
  // Written whole, then renamed: a server reading it meanwhile sees the old page or the new.
  const tmp = join(outDir, `index.html.${process.pid}.tmp`);
  writeFileSync(tmp, page);
  renameSync(tmp, join(outDir, 'index.html'));
  const gzipped = gzipSync(readFileSync(join(assets, script)), { level: 9 }).length;
  return { script, style, gzippedBytes: gzipped };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { gzippedBytes } = await buildWeb(undefined, { keepOld: process.argv.includes('--keep-old') });
  console.log(`web app: ${(gzippedBytes / 1024).toFixed(1)} KB of JavaScript gzipped (limit 60 KB)`);
  if (gzippedBytes > 60 * 1024) {
    console.error('the web app\'s first load is over 60 KB of JavaScript gzipped');
    process.exit(1);
  }
}
