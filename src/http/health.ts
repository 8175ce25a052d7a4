/**
 * Liveness and readiness: `/healthz` answers while the process serves HTTP at all;
 * `/readyz` only while storage could take a write now, so a load balancer can route around
 * an instance whose database is away, full, read-only, locked or gone.
 */
import { AppError } from '../errors.js';
import type { Storage } from '../storage/storage.js';
import type { App } from './app-types.js';
import { ProblemSchema, StatusSchema } from './schemas.js';

/** How long readiness waits for storage before it says not ready: a probe must not hang. */
export const READY_BUDGET_MS = 900;

/** Resolves with `p`, or rejects with a 503 once `ms` have passed. */
async function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new AppError('storage_unavailable',
        `storage did not answer within ${ms} ms (busy, or locked by another process)`, { headers: { 'Retry-After': '1' } })), ms);
    })]);
  } finally {
    clearTimeout(timer);
  }
}

/** Registers `GET /healthz` and `GET /readyz`. */
export function healthRoutes(app: App, storage: Storage): void {
  app.get('/healthz', {
    config: { access: 'public' },
    schema: { tags: ['operations'], summary: 'Liveness', response: { 200: StatusSchema } },
  }, () => ({ status: 'ok' }));

  app.get('/readyz', {
    config: { access: 'public' },
    schema: {
      tags: ['operations'],
      summary: 'Readiness: storage answers and could take a write now',
      description: `Answers within a second. 503 (a problem document) while storage does not answer within ${READY_BUDGET_MS} ms ` +
        '(down, or locked by another process) or could not commit a write (database file deleted or replaced, ' +
        'read-only, disk full).',
      response: {
        200: StatusSchema,
        503: { description: 'Not ready; detail says why.', content: { 'application/problem+json': { schema: ProblemSchema } } },
      },
    },
  }, async () => {
    await within(storage.ping(), READY_BUDGET_MS);
    return { status: 'ok' };
  });
}
