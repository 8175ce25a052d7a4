/**
 * Abuse limits and browser-facing safety: per-token rate limits (per client address without
 * a token), security headers, and CORS when configured.
 */
import { createHash } from 'node:crypto';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';
import { bearerToken } from './auth.js';

/** Registers the rate limiter (unless `perMinute` is 0), security headers and CORS. */
export async function registerProtection(app: FastifyInstance, options: { perMinute: number; corsOrigins: readonly string[] }): Promise<void> {
  app.addHook('onRequest', (_request, reply, done) => {
    // API answers are data, never pages to sniff or to frame.
    reply.header('x-content-type-options', 'nosniff');
    reply.header('x-frame-options', 'DENY');
    done();
  });

  if (options.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: options.corsOrigins.includes('*') ? '*' : [...options.corsOrigins],
      methods: ['GET', 'HEAD', 'POST', 'DELETE'],
      allowedHeaders: ['Authorization', 'Content-Type', 'Idempotency-Key', 'Last-Event-ID', 'X-Request-Id'],
      exposedHeaders: ['Location', 'Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'Idempotent-Replayed', 'Allow'],
      maxAge: 600,
    });
  }

  if (options.perMinute > 0) {
    await app.register(rateLimit, {
      max: options.perMinute,
      timeWindow: 60_000,
      // After authentication, so only a valid token gets a bucket of its own: random bogus
      // tokens cannot each start a fresh one.
      hook: 'preHandler',
      enableDraftSpec: true,
      keyGenerator: (request) => {
        const token = bearerToken(request);
        if (token && request.actor?.kind !== 'anyone') {
          return `token:${createHash('sha256').update(token).digest('base64url')}`;
        }
        return `ip:${request.ip}`;
      },
      errorResponseBuilder: (_request, context) =>
        new AppError('rate_limited', `rate limit of ${context.max} requests a minute reached; retry in ${context.after}`, {
          headers: { 'Retry-After': String(Math.max(1, Math.ceil(context.ttl / 1000))) },
        }),
    });
  }
}
