/**
 * Abuse limits and browser-facing safety: security headers on every answer, the refusal of
 * cross-site use of open mode, the 503 of a graceful stop, per-token rate limits (per client
 * address without a token), and CORS when configured.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isLoopback } from '../config.js';
import { AppError } from '../errors.js';
import { bearerToken } from './auth.js';
import { SECURITY_HEADERS } from './problems.js';

/** Seconds a client is told to wait before retrying an answer given while the server stops. */
export const STOPPING_RETRY_AFTER_SECONDS = 2;

const SECURITY_HEADER_ENTRIES = Object.entries(SECURITY_HEADERS);

/**
 * The one place the headers every answer carries are set: the security headers, and
 * `Cache-Control: no-store` when the answer is someone's data or answers a token. Called
 * by the first hook and by the answers Fastify writes before any hook runs (a URL that is
 * not UTF-8, a path parameter too long), so no answer can miss them.
 */
export function setAnswerHeaders(request: FastifyRequest, reply: FastifyReply): void {
  // On the raw response, so that answers written past Fastify (the event stream) carry them too.
  for (const [name, value] of SECURITY_HEADER_ENTRIES) reply.raw.setHeader(name, value);
  const access = request.routeOptions.config?.access ?? 'public';
  // A user's messages, or a token, must not be kept by a browser or a shared cache.
  if (access !== 'public' || request.headers.authorization !== undefined) reply.raw.setHeader('Cache-Control', 'no-store');
}

/**
 * The hooks that must run before anything else may answer (authentication included): the
 * security headers, `Cache-Control: no-store` on answers that carry someone's data, and the
 * 503 of a graceful stop. Call before the auth plugin and before any route is registered.
 */
export function registerFirstHooks(app: FastifyInstance): void {
  let stopping = false;
  app.addHook('preClose', (done) => {
    stopping = true;
    done();
  });
  app.addHook('onRequest', (request, reply, done) => {
    setAnswerHeaders(request, reply);
    if (stopping) {
      reply.raw.setHeader('Connection', 'close');
      return done(new AppError('server_busy', 'the server is shutting down; retry shortly (another instance may answer)', {
        headers: { 'Retry-After': String(STOPPING_RETRY_AFTER_SECONDS) },
      }));
    }
    done();
  });
}

/** What decides whether a request is cross-site use of open mode. */
export interface CrossSiteOptions {
  /** The address the server listens on (`HOST`). */
  host: string;
  /** Further host names requests may address (`POSTBOX_ALLOWED_HOSTS`). */
  allowedHosts: readonly string[];
  /** Origins allowed by CORS (`POSTBOX_CORS_ORIGINS`); `*` allows any. */
  corsOrigins: readonly string[];
}

/** A Host header split into its lower-cased name and port, or null if it is not one. */
function parseHost(value: string): { name: string; port: string } | null {
  try {
    const u = new URL(`http://${value}`);
    if (u.username || u.password || u.pathname !== '/' || u.search || u.hash) return null;
    return { name: u.hostname.replace(/^\[|\]$/g, '').toLowerCase(), port: u.port };
  } catch {
    return null;
  }
}

/** Host headers already judged: the host they name, or null if refused (a server is addressed by few names). */
export type HostVerdicts = Map<string, { name: string; port: string } | null>;
/** How many Host headers a guard remembers before it starts over (many would be an attack on the memory). */
const HOST_VERDICTS_KEPT = 256;

/**
 * Why a request must be refused as cross-site use of an open-mode server, or null if it may
 * go on. A `Host` must name this server as only it can be named: a loopback name, an IP
 * address (a DNS-rebinding page reaches us only under a name of its own), the configured
 * `HOST` or one of `allowedHosts`. An `Origin`, when a browser sends one, must be the
 * server's own (same host and port as `Host`) or an allowed CORS origin. curl and the
 * seed's `requests` send no `Origin` and pass. The defence of Jupyter, Vite and Redis's
 * protected mode.
 */
export function crossSiteProblem(
  headers: { host?: string; origin?: string },
  options: CrossSiteOptions,
  known: HostVerdicts = new Map(),
): AppError | null {
  const rawHost = headers.host;
  let host: { name: string; port: string } | null = null;
  if (rawHost !== undefined) {
    let verdict = known.get(rawHost);
    if (verdict === undefined) {
      const parsed = parseHost(rawHost);
      const allowed = parsed !== null && (
        isLoopback(parsed.name) || isIP(parsed.name) !== 0 || parsed.name === options.host.toLowerCase() ||
        options.allowedHosts.includes(parsed.name));
      verdict = allowed ? parsed : null;
      if (known.size >= HOST_VERDICTS_KEPT) known.clear();
      known.set(rawHost, verdict);
    }
    host = verdict;
    if (host === null) {
      return new AppError('forbidden', `this open-mode server does not answer to the host "${rawHost}"; ` +
        'list it in POSTBOX_ALLOWED_HOSTS if it is really this server\'s name', {
        errors: [{ field: 'Host', message: 'is not a name of this server' }],
      });
    }
  }
  const origin = headers.origin;
  if (origin === undefined) return null;
  if (options.corsOrigins.includes('*') || options.corsOrigins.includes(origin)) return null;
  let same = false;
  if (host !== null && origin !== 'null') {
    try {
      const o = new URL(origin);
      const defaultPort = o.protocol === 'https:' ? '443' : '80';
      same = o.hostname.replace(/^\[|\]$/g, '').toLowerCase() === host.name && (o.port || defaultPort) === (host.port || defaultPort);
    } catch {
      same = false;
    }
  }
  if (same) return null;
  return new AppError('forbidden', `a page from ${origin} may not use this open-mode server; ` +
    'list the origin in POSTBOX_CORS_ORIGINS to allow it, or run in token mode', {
    errors: [{ field: 'Origin', message: 'is not this server\'s own origin nor an allowed one' }],
  });
}

/**
 * Refuses cross-site use of an open-mode server (see {@link crossSiteProblem}) on every route
 * that reads or changes someone's data. Public routes (health, metrics, docs) hold none and
 * stay reachable by any name, so a probe may address the server as its service name.
 */
export function registerCrossSiteGuard(app: FastifyInstance, options: CrossSiteOptions): void {
  const known: HostVerdicts = new Map();
  app.addHook('onRequest', (request, _reply, done) => {
    if ((request.routeOptions.config?.access ?? 'public') === 'public') return done();
    const origin = request.headers.origin;
    done(crossSiteProblem({ host: request.host || undefined, origin: typeof origin === 'string' ? origin : undefined }, options, known) ?? undefined);
  });
}

/** What {@link registerProtection} returns: the limiter as a hook, for answers that skip the routes. */
export interface Protection {
  /** Counts a request against its bucket and sets the RateLimit headers; undefined when limits are off. */
  limit: ((request: FastifyRequest, reply: FastifyReply) => Promise<void>) | undefined;
}

/** Registers the rate limiter (unless `perMinute` is 0) and CORS. */
export async function registerProtection(app: FastifyInstance, options: { perMinute: number; corsOrigins: readonly string[] }): Promise<Protection> {
  if (options.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: options.corsOrigins.includes('*') ? '*' : [...options.corsOrigins],
      methods: ['GET', 'HEAD', 'POST', 'DELETE'],
      allowedHeaders: ['Authorization', 'Content-Type', 'Idempotency-Key', 'Last-Event-ID', 'X-Request-Id'],
      exposedHeaders: ['Location', 'Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'Idempotent-Replayed', 'Allow'],
      maxAge: 600,
    });
  }

  if (options.perMinute <= 0) return { limit: undefined };
  await app.register(rateLimit, {
    max: options.perMinute,
    timeWindow: 60_000,
    // After authentication (an app-level hook, which runs before a route's own), so only a
    // valid token gets a bucket of its own: random bogus tokens cannot each start a fresh
    // one. Before validation, so that a 400 is counted and carries the headers too.
    hook: 'onRequest',
    enableDraftSpec: true,
    keyGenerator: (request) => {
      const token = bearerToken(request);
      const kind = (request.actor as { kind?: string } | null)?.kind;
      if (token && (kind === 'user' || kind === 'admin')) {
        return `token:${createHash('sha256').update(token).digest('base64url')}`;
      }
      return `ip:${request.ip}`;
    },
    errorResponseBuilder: (_request, context) =>
      new AppError('rate_limited', `rate limit of ${context.max} requests a minute reached; retry in ${context.after}`, {
        headers: { 'Retry-After': String(Math.max(1, Math.ceil(context.ttl / 1000))) },
      }),
  });
  const limitHook = app.rateLimit();
  const hook = (request: FastifyRequest, reply: FastifyReply): Promise<void> =>
    (limitHook as unknown as (request: FastifyRequest, reply: FastifyReply) => Promise<void>)(request, reply);
  // A request refused before its route's hooks ran (no valid token: a 401; a token that may
  // not make the call, or a cross-site page in open mode: a 403; a graceful stop: a 503) is
  // still counted, by client address, and its answer carries the headers like any other.
  // The limiter counts a request once, so answers it already saw pass through unchanged.
  app.addHook('onError', async (request, reply) => {
    if (request.routeOptions.config?.rateLimit === false) return;
    try {
      await hook(request, reply);
    } catch {
      // Over the limit: the headers already say so; the refusal stands.
    }
  });
  return { limit: hook };
}
