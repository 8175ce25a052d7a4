/**
 * The web app: `GET /` answers its page and `GET /app/*` its assets, built by
 * `npm run build` from `web/` into `dist/web/` (see scripts/build-web.mjs).
 *
 * Asset names carry a hash of their content, so they are cached for a year and never
 * revalidated; the page itself is revalidated on every load, so a new build is picked up at
 * once. The app's headers are set here rather than globally: a Content-Security-Policy that
 * allows nothing from another origin (and no inline script), and nothing that assumes
 * HTTPS (no `upgrade-insecure-requests`, no HSTS), so it works over plain HTTP on a network
 * address as well as on localhost. The files are public in every mode: signing in happens
 * inside the app.
 */
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

  app.get('/', {
    config: { access: 'public' },
    schema: { hide: true },
  }, async (_request, reply) => {
    let page: Buffer;
    try {
      page = await readFile(join(dir, 'index.html'));
    } catch {
      // Running from a checkout that was never built: say how to fix it, not a bare 404.
      return appHeaders(reply).code(503).type('text/plain; charset=utf-8').header('cache-control', 'no-store')
        .send('The web app is not built. Run `npm run build` (npm ci does it too), then reload.\n');
    }
    return appHeaders(reply).type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(page);
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
