/**
 * The web app's build for tests: the server serves dist/web/, which `npm ci` and
 * `npm run build` make; a test run after an edit to web/ or the client rebuilds it first.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';

const ROOT = new URL('../../', import.meta.url);

/** The newest modification time under `dir` (recursively). */
function newest(dir: URL): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const url = new URL(entry.name + (entry.isDirectory() ? '/' : ''), dir);
    latest = Math.max(latest, entry.isDirectory() ? newest(url) : statSync(url).mtimeMs);
  }
  return latest;
}

/**
 * Makes sure dist/web holds a build of the current web/ and client sources (`npm ci` and
 * `npm run build` make it; a test run after an edit rebuilds it). Answers the gzipped size
 * of the first load's JavaScript, as the build script prints it.
 */
export function ensureWebBuilt(): string {
  const page = new URL('dist/web/index.html', ROOT);
  const sources = Math.max(newest(new URL('web/', ROOT)), newest(new URL('src/client/', ROOT)), newest(new URL('src/protocol/', ROOT)));
  if (!existsSync(page) || statSync(page).mtimeMs < sources) {
    return execFileSync(process.execPath, ['scripts/build-web.mjs', '--keep-old'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 }).trim();
  }
  return 'dist/web is up to date';
}
