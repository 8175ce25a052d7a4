/**
 * Liveness and readiness: `/healthz` answers while the process serves HTTP at all;
 * `/readyz` only while storage answers too, so a load balancer can route around an
 * instance whose database is away.
 */
import type { Storage } from '../storage/storage.js';
import type { App } from './app-types.js';
import { StatusSchema } from './schemas.js';

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
      summary: 'Readiness: storage answers',
      description: '503 (a problem document) while storage does not answer.',
      response: { 200: StatusSchema },
    },
  }, async () => {
    await storage.ping();
    return { status: 'ok' };
  });
}
