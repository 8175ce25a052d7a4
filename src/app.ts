/**
 * buildApp: the Fastify instance with every part registered explicitly, in order.
 * It never listens (house rule 1); `main.ts` does, and tests listen on port 0.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { MessageService } from './domain/messages.js';
import { loadJwtVerifier } from './domain/jwt.js';
import { UserService } from './domain/users.js';
import { WebhookService } from './domain/webhooks.js';
import { AppError } from './errors.js';
import type { App } from './http/app-types.js';
import { registerAuth } from './http/auth.js';
import { registerBodyParser } from './http/body.js';
import { docsRoutes } from './http/docs.js';
import { healthRoutes } from './http/health.js';
import { legacyRoutes } from './http/legacy.js';
import { messageRoutes } from './http/messages.js';
import { metricsRoutes } from './http/metrics.js';
import { streamRoutes } from './http/stream.js';
import { userRoutes } from './http/users.js';
import { webhookRoutes } from './http/webhooks.js';
import { clientErrorHandler, problemRoutes, registerNotFound, registerProblemHandlers, sendProblem, toAppError } from './http/problems.js';
import { registerCrossSiteGuard, registerFirstHooks, registerProtection, setAnswerHeaders, type Protection } from './http/protection.js';
import { sessionRoutes } from './http/session.js';
import { addMethodNotAllowed, recordRoutes, supportAllMethods, type RouteEntry } from './http/route-table.js';
import { validatorCompiler } from './http/validation.js';
import { webAppRoutes } from './http/webapp.js';
import type { Hub } from './realtime/hub.js';
import { StreamRegistry } from './realtime/streams.js';
import type { Retention } from './storage/retention.js';
import type { Storage } from './storage/storage.js';
import { packageVersion } from './version.js';

/** What the app is built from; `main.ts` (or a test) makes each one. */
export interface AppDeps {
  config: Config;
  storage: Storage;
  hub: Hub;
  logger: Logger;
  /** Background pruning, whose runs `/metrics` reports; absent when retention is off. */
  retention?: Retention | undefined;
  /** The clock JWT expiry and webhook retries are judged by, in epoch ms; tests move it. Default Date.now. */
  clock?: () => number;
}

/** The built app, with its route table for the docs and the access tests. */
export type PostboxApp = App & { routeTable: readonly RouteEntry[] };

/** The largest body accepted: a maximal message with every byte JSON-escaped, plus room for the rest. */
export function bodyLimitFor(maxMessageBytes: number): number {
  return Math.max(1024 * 1024, maxMessageBytes * 6 + 16 * 1024);
}

let requestCounter = 0;

/**
 * Access logging at debug level: two info lines per request would be the largest single
 * cost at tens of thousands of requests a second. Errors are logged by the error handler.
 */
class AccessLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(_error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    reply.log.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: reply.elapsedTime }, 'request completed');
  }

  /** A stream cut short (a client gone, a slow reader dropped) is routine for event streams. */
  override streamError(error: Error & { code?: string }, request: FastifyRequest, reply: FastifyReply): void {
    if (error.code === 'ERR_STREAM_PREMATURE_CLOSE') reply.log.debug({ url: request.url }, 'stream closed before its end');
    else super.streamError(error, request, reply);
  }
}

/** Fastify's form of the trust-proxy setting: a hop count becomes a function of the hop. */
function trustProxyOption(setting: Config['trustProxy']): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (typeof setting === 'number') return (_address, hop) => hop < setting;
  if (typeof setting === 'boolean') return setting;
  return [...setting];
}

/** Builds the Postbox HTTP app. */
export async function buildApp(deps: AppDeps): Promise<PostboxApp> {
  const { config, storage, hub, logger } = deps;
  const bodyLimit = bodyLimitFor(config.maxMessageBytes);
  // Typed as Fastify's logger so every route and plugin sees one logger type.
  const loggerInstance: FastifyBaseLogger = logger;

  // The limiter, once registered below; the answers Fastify writes before any hook use it.
  const limiter: Protection = { limit: undefined };
  const app = Fastify({
    loggerInstance,
    logController: new AccessLog(),
    bodyLimit,
    // Every phase of a request has a deadline, so a client that stalls (slow headers, a body
    // that never finishes) cannot hold a connection and its memory for good: Node answers
    // 408 through clientErrorHandler and closes. Streams and long-polls are answers, not
    // requests, and are not cut by these.
    requestTimeout: config.requestTimeoutSeconds * 1000,
    keepAliveTimeout: config.keepAliveTimeoutSeconds * 1000,
    http: {
      headersTimeout: config.headersTimeoutSeconds * 1000,
      // How often Node looks for requests past those deadlines (its default is 30 s).
      connectionsCheckingInterval: 1000,
    },
    clientErrorHandler,
    // A graceful stop answers with the contract's 503 (see registerFirstHooks), not Fastify's.
    return503OnClosing: false,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.:-]{1,64}$/.test(given) ? given : `r${(++requestCounter).toString(36)}`;
    },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1024 },
    trustProxy: trustProxyOption(config.trustProxy),
    // Answered before any hook runs (a URL that is not UTF-8, a path parameter too long): the
    // headers and the rate limit of every answer are applied here, by the same code the hooks use.
    frameworkErrors: (error, request, reply) => {
      setAnswerHeaders(request, reply);
      const detail = error.code === 'FST_ERR_BAD_URL' ? 'the URL is not valid percent-encoded UTF-8' : error.message;
      const refusal = new AppError('validation', detail, { errors: [{ field: 'url', message: 'is not valid' }] });
      const counted = limiter.limit ? limiter.limit(request, reply) : Promise.resolve();
      counted.then(() => sendProblem(reply, refusal), (limited: unknown) => sendProblem(reply, toAppError(limited, bodyLimit) ?? refusal));
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // The docs UI and the CORS preflight route (`OPTIONS *`) come from plugins.
  supportAllMethods(app);
  const routeTable = recordRoutes(app, { publicPrefixes: ['/docs', '*'] });
  app.setValidatorCompiler(validatorCompiler());
  registerBodyParser(app, bodyLimit);
  registerProblemHandlers(app, bodyLimit);
  app.server.maxConnections = config.maxConnections;
  registerFirstHooks(app);
  // A bearer token is not ambient authority; only open mode can be driven by a foreign page.
  if (config.auth === 'open') {
    registerCrossSiteGuard(app, { host: config.host, allowedHosts: config.allowedHosts, corsOrigins: config.corsOrigins });
  }

  // The document generator must be in place before the routes it describes.
  await docsRoutes(app, { version: packageVersion(), mode: config.auth });
  const jwt = config.auth === 'jwt'
    ? await loadJwtVerifier({
      secret: config.jwtSecret, publicKey: config.jwtPublicKey, jwksFile: config.jwksFile,
      issuer: config.jwtIssuer, audience: config.jwtAudience, leewaySeconds: config.jwtLeewaySeconds, now: deps.clock,
    })
    : undefined;
  const users = new UserService(storage, { mode: config.auth, adminToken: config.adminToken, jwt, clock: deps.clock });
  const stopWatchingRemovals = users.watchRemovals();
  const messages = new MessageService(storage, hub, {
    maxMessageBytes: config.maxMessageBytes,
    ...(config.auth === 'open' ? {} : { checkRecipient: (id: string) => users.assertRecipient(id) }),
    onStored: () => metrics.messagesStored.inc(),
  });
  const streams = new StreamRegistry(hub, {
    perUser: config.streamsPerUser,
    total: config.streamsTotal,
    heartbeatMs: config.heartbeatSeconds * 1000,
    bufferBytes: config.streamBufferBytes,
    retryMs: 2000,
  }, logger, { messages, users });
  const metrics = metricsRoutes(app, { openStreams: () => streams.open, storage, retention: deps.retention });
  // Streams and long-polls would hold a graceful close open: end them first. A request that
  // finishes during the close leaves its keep-alive socket idle after Node's one sweep of
  // idle sockets, and the close would wait out the keep-alive timeout: keep sweeping.
  let sweeper: NodeJS.Timeout | undefined;
  app.addHook('preClose', (done) => {
    streams.closeAll();
    hub.close();
    sweeper = setInterval(() => app.server.closeIdleConnections(), 25);
    sweeper.unref();
    done();
  });
  app.addHook('onClose', (_instance, done) => {
    clearInterval(sweeper);
    stopWatchingRemovals();
    done();
  });

  registerAuth(app, users, config.auth);
  const protection = await registerProtection(app, { perMinute: config.rateLimit, corsOrigins: config.corsOrigins });
  limiter.limit = protection.limit;
  registerNotFound(app, protection.limit);
  healthRoutes(app, storage);
  problemRoutes(app);
  legacyRoutes(app, messages);
  messageRoutes(app, messages);
  userRoutes(app, users);
  streamRoutes(app, streams);
  webhookRoutes(app, new WebhookService(storage.webhooks, { allowPrivate: config.webhookAllowPrivate, clock: deps.clock }));
  sessionRoutes(app, { auth: config.auth === 'jwt' ? 'token' : config.auth, maxMessageBytes: config.maxMessageBytes, version: packageVersion() });
  webAppRoutes(app);

  // Last, once every route (plugins' included) is known.
  void app.register((instance, _options, done) => {
    addMethodNotAllowed(instance, routeTable, { answerOptions: config.corsOrigins.length === 0, limit: protection.limit });
    done();
  });
  return Object.assign(app, { routeTable });
}
