/**
 * The web app: `GET /` answers its page and `GET /app/*` its assets, built by
 * `npm run build` from `web/` into `dist/web/` (see scripts/build-web.mjs).
 *
 * Asset names carry a hash of their content, so they are cached for a year and never
 * revalidated; the page itself is revalidated on every load, by an ETag (a hash of its bytes,
 * computed once when it is first read), so a reload costs a 304 and a new build is picked up
 * after a restart. The app's headers are set here rather than globally: a Content-Security-Policy that
 * allows nothing from another origin (and no inline script), and nothing that assumes
 * HTTPS (no `upgrade-insecure-requests`, no HSTS), so it works over plain HTTP on a network
 * address as well as on localhost. The files are public in every mode: signing in happens
 * inside the app.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { AppError } from '../errors.js';
import type { App } from './app-types.js';

/** Where `npm run build` puts the app: `<package>/dist/web/`, seen from src/http/ and dist/http/ alike. */
export const DEFAULT_WEB_DIR = fileURLToPath(new URL('../../dist/web/', import.meta.url));

/** The URL prefix of the app's assets. */
export const ASSET_PREFIX = '/app/';

/** Everything the app loads comes from this origin; nothing may frame it or be injected into it. */
export const APP_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

/**
 * Whether an `If-None-Match` header matches `etag`: `*`, or any listed tag compared weakly
 * (RFC 9110 13.1.2: `W/` is ignored).
 */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false;
  return ifNoneMatch.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag.replace(/^W\//, '') === etag;
  });
}

/** An asset file name as the build writes them: no directories, no dot files. */
const ASSET_NAME = /^[\w-]+(?:\.[\w-]+)*$/;

function appHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', APP_CSP)
    .header('referrer-policy', 'no-referrer')
    .header('cross-origin-resource-policy', 'same-origin');
}

/** Registers the web app's routes; `dir` holds the build (default {@link DEFAULT_WEB_DIR}). */
export function webAppRoutes(app: App, options: { dir?: string } = {}): void {
  const dir = options.dir ?? DEFAULT_WEB_DIR;
  // Hashed files never change: read each once.
  const assets = new Map<string, Buffer>();
  // The page is read once it exists, not at registration: a checkout built after the server
  // started still gets its app on the next reload.
  let page: { body: Buffer; etag: string } | undefined;

  app.get('/', {
    config: { access: 'public' },
    schema: { hide: true },
  }, async (request, reply) => {
    if (!page) {
      try {
        const body = await readFile(join(dir, 'index.html'));
        page = { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
      } catch {
        // Running from a checkout that was never built: say how to fix it, not a bare 404.
        return appHeaders(reply).code(503).type('text/plain; charset=utf-8').header('cache-control', 'no-store')
          .send('The web app is not built. Run `npm run build` (npm ci does it too), then reload.\n');
      }
    }
    appHeaders(reply).header('cache-control', 'no-cache').header('etag', page.etag);
    if (etagMatches(request.headers['if-none-match'], page.etag)) return reply.code(304).send();
    return reply.type('text/html; charset=utf-8').send(page.body);
  });

  app.get(`${ASSET_PREFIX}:name`, {
    config: { access: 'public' },
    schema: { hide: true, params: Type.Object({ name: Type.String() }) },
  }, async (request, reply) => {
    const { name } = request.params;
    const type = TYPES[name.slice(name.lastIndexOf('.'))];
    let body = assets.get(name);
    if (!body && type && ASSET_NAME.test(name)) {
      body = await readFile(join(dir, 'app', name)).catch(() => undefined);
      if (body) assets.set(name, body);
    }
    if (!body || !type) throw new AppError('not_found', `"${name}" is not a file of this build of the web app; reload the page`);
    return appHeaders(reply).type(type).header('cache-control', 'public, max-age=31536000, immutable').send(body);
  });
}
