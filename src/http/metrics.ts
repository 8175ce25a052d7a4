/**
 * `GET /metrics` in the Prometheus text format: requests by route and status with latency
 * histograms, messages stored, open streams, and the process's own metrics; and what an
 * operator watches of the store: messages it holds, its size and its WAL's, the age of its
 * oldest message, the last checkpoint and retention run, writes waiting for a commit, the
 * size and duration of each group commit, and the duration of each WAL fsync. Figures a
 * backend has no equivalent of (PostgreSQL's WAL is the server's) are left out, not 0.
 *
 * Each app has its own registry, so several apps in one process (tests) do not collide.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Retention } from '../storage/retention.js';
import type { Storage, StoreStats } from '../storage/storage.js';
import type { App } from './app-types.js';

/** The metrics an app keeps, for the parts that feed them. */
export interface AppMetrics {
  registry: Registry;
  messagesStored: Counter;
}

/** What the metrics read at scrape time. */
export interface MetricsSources {
  openStreams: () => number;
  storage?: Storage;
  retention?: Retention | undefined;
}

/** A gauge whose value is read from the store's statistics at scrape time (null: 0, not applicable). */
function storeGauge(registry: Registry, storage: Storage, name: string, help: string, read: (s: StoreStats) => number | null): void {
  new Gauge({
    name, help, registers: [registry],
    async collect() {
      this.set(read(await storage.stats()) ?? 0);
    },
  });
}

/** The store's figures (see the module comment). */
function storeMetrics(registry: Registry, storage: Storage, retention: Retention | undefined): void {
  storeGauge(registry, storage, 'postbox_store_messages', 'Messages the store holds (counted at most every 2 s)', (s) => s.messages);
  storeGauge(registry, storage, 'postbox_store_bytes', 'Bytes the store takes (SQLite: the database file; PostgreSQL: its tables and indexes)', (s) => s.storeBytes);
  // A WAL and checkpoints of the store's own (SQLite): PostgreSQL's are the server's, for
  // its own monitoring; a 0 here would only mislead.
  if (storage.ownWal) {
    storeGauge(registry, storage, 'postbox_store_wal_bytes', 'Bytes of the SQLite write-ahead log', (s) => s.walBytes);
    storeGauge(registry, storage, 'postbox_store_last_checkpoint_timestamp_seconds',
      'When the SQLite WAL was last folded back into the database (0 before the first)',
      (s) => (s.lastCheckpointAt === null ? null : s.lastCheckpointAt / 1000));
  }
  storeGauge(registry, storage, 'postbox_store_oldest_message_age_seconds', 'Age of the oldest message the store holds (0 when empty)',
    (s) => (s.oldestSentAt === null ? 0 : Math.max(0, (Date.now() - Date.parse(s.oldestSentAt)) / 1000)));
  new Gauge({
    name: 'postbox_writes_pending', help: 'Writes queued or being committed, not yet answered', registers: [registry],
    collect() {
      this.set(storage.pendingWrites);
    },
  });
  const size = new Histogram({
    name: 'postbox_commit_batch_size', help: 'Writes committed together in one group commit',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], registers: [registry],
  });
  const seconds = new Histogram({
    name: 'postbox_commit_duration_seconds',
    help: 'Time to commit one group of writes (PostgreSQL: the server\'s sync included; SQLite: the WAL append, its fsync timed apart)',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [registry],
  });
  storage.onCommit((n, s) => {
    size.observe(n);
    seconds.observe(s);
  });
  // Only where the store makes its own fsyncs (SQLite in `fsync` durability): PostgreSQL's
  // happen inside the server's commit, which the commit duration already holds.
  const fsync = new Histogram({
    name: 'postbox_fsync_duration_seconds', help: 'Time of one fsync of the SQLite write-ahead log (one serves every commit made before it began)',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [],
  });
  if (storage.onSync((s) => fsync.observe(s))) registry.registerMetric(fsync);
  const lastRun = (name: string, help: string, read: (at: number, removed: number, ms: number) => number) => new Gauge({
    name, help, registers: [registry],
    collect() {
      const run = retention?.last;
      this.set(run ? read(run.at, run.removed, run.durationMs) : 0);
    },
  });
  new Gauge({
    name: 'postbox_retention_last_run_timestamp_seconds',
    help: 'When retention last started a run on any instance of this store (0 before the first)',
    registers: [registry],
    async collect() {
      // The store's claims row, so that every instance reports the run whichever one made it.
      const ranAt = (await storage.stats()).retentionRanAt ?? retention?.last?.at;
      this.set(ranAt === undefined ? 0 : ranAt / 1000);
    },
  });
  lastRun('postbox_retention_last_run_removed', 'Messages the last retention run of this instance removed', (_at, removed) => removed);
  lastRun('postbox_retention_last_run_duration_seconds', 'How long the last retention run of this instance took', (_at, _r, ms) => ms / 1000);
  new Gauge({
    name: 'postbox_retention_removed', help: 'Messages retention removed on this instance since it started', registers: [registry],
    collect() {
      this.set(retention?.removed ?? 0);
    },
  });
}

/** Registers the metrics hooks and route; the sources are read at scrape time. */
export function metricsRoutes(app: App, options: MetricsSources): AppMetrics {
  const registry = new Registry();
  if (options.storage) storeMetrics(registry, options.storage, options.retention);
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
