/**
 * `GET /metrics` in the Prometheus text format: requests by route and status with latency
 * histograms, messages stored, open streams, and the process's own metrics.
 *
 * Each app has its own registry, so several apps in one process (tests) do not collide.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { App } from './app-types.js';

/** The metrics an app keeps, for the parts that feed them. */
export interface AppMetrics {
  registry: Registry;
  messagesStored: Counter;
}

/** Registers the metrics hooks and route; `openStreams` reports live streams at scrape time. */
export function metricsRoutes(app: App, options: { openStreams: () => number }): AppMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const duration = new Histogram({
    name: 'postbox_http_request_duration_seconds',
    help: 'HTTP requests by method, route and status, with their duration',
    labelNames: ['method', 'route', 'status_code'] as const,
    // From a cached read (~100 µs) to a long-poll (60 s).
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: [registry],
  });
  const messagesStored = new Counter({
    name: 'postbox_messages_stored_total',
    help: 'Messages this instance stored (idempotent replays not counted)',
    registers: [registry],
  });
  new Gauge({
    name: 'postbox_streams_open',
    help: 'Live event streams open on this instance',
    registers: [registry],
    collect() {
      this.set(options.openStreams());
    },
  });

  // One child per method, route and status, found by a string key: cheaper per request than
  // having prom-client hash a labels object each time.
  const children = new Map<string, { observe(value: number): void }>();
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const key = `${request.method} ${reply.statusCode} ${route}`;
    let child = children.get(key);
    if (!child) {
      child = duration.labels({ method: request.method, route, status_code: reply.statusCode });
      children.set(key, child);
    }
    child.observe(reply.elapsedTime / 1000);
    done();
  });

  app.get('/metrics', {
    config: { access: 'public' },
    schema: { tags: ['operations'], summary: 'Prometheus metrics' },
  }, async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));

  return { registry, messagesStored };
}
