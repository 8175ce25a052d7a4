/**
 * The registered route table, and what it makes possible: 405 answers with `Allow` for a
 * known path with the wrong method, and a list of routes for the OpenAPI and access tests.
 */
import http from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import type { Scope } from '../domain/access.js';
import { AppError } from '../errors.js';
import { sendProblem } from './problems.js';

/** Who may call a route, checked before the handler runs (see the auth plugin). */
export type Access =
  /** Anyone, in any mode: health, metrics, docs, the web app. */
  | 'public'
  /** A caller acting as a user (anyone in open mode; a user or admin token in token mode). */
  | 'user'
  /** Only the admin token. */
  | 'admin';

/** One route as registered. */
export interface RouteEntry {
  method: string;
  url: string;
  access: Access;
  /** For a `user` route, what a scoped token needs to call it. */
  scope?: Scope;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Every route declares who may call it; a route without it fails at start. */
    access?: Access;
    /** For a `user` route: the token scope it needs (`send`, `read`, or `full`); required there. */
    scope?: Scope;
    /** Set on the generated 405 routes, which are not part of the API. */
    methodFiller?: boolean;
  }
}

/**
 * Methods a known path answers 405 for when it lacks them: every method Node parses as a
 * request (CONNECT is a tunnel, not a request; OPTIONS is answered on its own).
 */
const FILLER_METHODS = http.METHODS.filter((m) => m !== 'CONNECT' && m !== 'OPTIONS');

/**
 * Makes every method of {@link FILLER_METHODS} routable, so that an unusual one (TRACE,
 * QUERY, PROPFIND) on a known path is a 405 with `Allow` rather than a 404 or a 400.
 * Call before any route is registered.
 */
export function supportAllMethods(app: FastifyInstance): void {
  for (const m of FILLER_METHODS) {
    if (!app.supportedMethods.includes(m)) app.addHttpMethod(m, { hasBody: true });
  }
}

/**
 * Starts recording routes; call before any route is registered. Routes under
 * `publicPrefixes` come from plugins that cannot declare access themselves (the docs UI)
 * and are public.
 */
export function recordRoutes(app: FastifyInstance, options: { publicPrefixes: string[] }): RouteEntry[] {
  const table: RouteEntry[] = [];
  app.addHook('onRoute', (route: RouteOptions) => {
    if (route.config?.methodFiller) return;
    if (!route.config?.access && options.publicPrefixes.some((p) => route.url.startsWith(p))) {
      route.config = { ...route.config, access: 'public' };
    }
    const access = route.config?.access;
    if (!access) throw new Error(`route ${String(route.method)} ${route.url} declares no access rule`);
    const scope = route.config?.scope;
    // A user route without a scope (`GET /v1/me`) is open to a token of any scope.
    // Probes, scrapes and docs are not rate-limited: a limit there only breaks monitoring.
    if (access === 'public' && route.config?.rateLimit === undefined) route.config = { ...route.config, rateLimit: false };
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) table.push({ method, url: route.url, access, ...(scope ? { scope } : {}) });
  });
  return table;
}

/**
 * Adds, for every known path, a route for each method it lacks that answers 405 with
 * `Allow`, and (unless CORS answers them) `OPTIONS` with 204 and `Allow`. Registered last,
 * once the table is complete.
 */
export function addMethodNotAllowed(
  app: FastifyInstance,
  table: readonly RouteEntry[],
  options: { answerOptions: boolean; limit?: ((request: FastifyRequest, reply: FastifyReply) => Promise<void>) | undefined },
): void {
  const byUrl = new Map<string, Set<string>>();
  // Paths with an operation the limiter counts; a public path's (health, docs) 405s are not.
  const limitedUrls = new Set<string>();
  for (const r of table) {
    // A catch-all (CORS preflight) is not a path whose other methods are wrong.
    if (r.url === '*') continue;
    const set = byUrl.get(r.url) ?? new Set<string>();
    set.add(r.method);
    if (r.method === 'GET') set.add('HEAD');
    byUrl.set(r.url, set);
    if (r.access !== 'public') limitedUrls.add(r.url);
  }
  for (const [url, allowed] of byUrl) {
    const limit = limitedUrls.has(url) ? options.limit : undefined;
    const missing = FILLER_METHODS.filter((m) => !allowed.has(m));
    const allow = [...allowed].sort().join(', ');
    if (options.answerOptions && !allowed.has('OPTIONS')) {
      app.route({
        method: 'OPTIONS',
        url,
        schema: { hide: true },
        config: { methodFiller: true, access: 'public' },
        handler: (_request, reply) => reply.code(204).header('allow', `${allow}, OPTIONS`).send(),
      });
    }
    if (missing.length === 0) continue;
    const refuse = (method: string) => new AppError('method_not_allowed', `${method} is not allowed here; use ${allow}`, {
      headers: { Allow: allow },
    });
    app.route({
      method: missing,
      url,
      exposeHeadRoute: false,
      schema: { hide: true },
      config: { methodFiller: true, access: 'public' },
      // Answered before the body is read: a QUERY without Content-Type, or any body at all,
      // must not turn the 405 into a 400.
      // Counted by the limiter like a 404 (it answers before the limiter's own hook would run),
      // so probing methods costs the same as probing paths and carries the RateLimit headers.
      // A public path's are not: its operations are never limited, so none may answer 429.
      onRequest: async (request, reply) => {
        if (limit) await limit(request, reply);
        return sendProblem(reply, refuse(request.method));
      },
      handler: (request, reply) => sendProblem(reply, refuse(request.method)),
    });
  }
}
