/**
 * Prefilled stores for the scenarios.
 *
 * SQLite: each dataset is imported once into a template file, and every scenario runs on a
 * fresh copy of it (posts add to the store, so no scenario sees another's messages). A
 * template of 100,000 messages or more is also kept between runs under .tmp/bench-cache/,
 * keyed by the dataset and the schema, because importing a million messages takes minutes
 * while copying the file takes a second; the copy is byte for byte what an import makes.
 *
 * PostgreSQL: a fresh database per scenario, filled through the same `importAll`, dropped
 * afterwards.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MIGRATIONS } from '../../src/storage/sqlite/migrations.js';
import type { DatasetSpec } from './dataset.js';
import { prefill } from './prefill.js';
import { createDatabase, dropDatabase } from './postgres.js';

const CACHE_DIR = fileURLToPath(new URL('../../.tmp/bench-cache/', import.meta.url));
/** Templates this large are kept between runs. */
const CACHE_FROM = 100_000;

/** How a store was made, for the report. */
export interface StoreOrigin {
  messages: number;
  /** How long the import took (when it was made, for a cached template). */
  importMs: number;
  cached: boolean;
}

/** Makes and hands out SQLite stores for one benchmark invocation. */
export class SqliteStores {
  private readonly templates = new Map<string, { path: string; origin: StoreOrigin }>();
  private copies = 0;

  constructor(
    private readonly workDir: string,
    private readonly useCache: boolean,
    private readonly say: (line: string) => void,
  ) {}

  /** A fresh store file holding `spec`, how its template was made, and its removal. */
  async fresh(spec: DatasetSpec): Promise<{ path: string; origin: StoreOrigin; dispose: () => void }> {
    const template = await this.template(spec);
    const dir = join(this.workDir, `store-${++this.copies}`);
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'postbox.db');
    copyFileSync(template.path, path);
    return { path, origin: template.origin, dispose: () => rmSync(dir, { recursive: true, force: true }) };
  }

  private async template(spec: DatasetSpec): Promise<{ path: string; origin: StoreOrigin }> {
    // The schema is part of the key: a template made before a migration must not be reused.
    const key = createHash('sha256').update(JSON.stringify([spec, MIGRATIONS])).digest('hex').slice(0, 16);
    const known = this.templates.get(key);
    if (known) return known;
    const cacheable = this.useCache && spec.total >= CACHE_FROM;
    const path = cacheable ? join(CACHE_DIR, `${key}.db`) : join(this.workDir, `template-${key}.db`);
    const meta = `${path}.json`;
    let made: { path: string; origin: StoreOrigin };
    if (cacheable && existsSync(path) && existsSync(meta)) {
      const { importMs } = JSON.parse(readFileSync(meta, 'utf8')) as { importMs: number };
      this.say(`  store of ${spec.total.toLocaleString('en-US')} messages: reusing the template in ${CACHE_DIR} (its import took ${(importMs / 1000).toFixed(1)} s)`);
      made = { path, origin: { messages: spec.total, importMs, cached: true } };
    } else {
      mkdirSync(cacheable ? CACHE_DIR : this.workDir, { recursive: true });
      // Built under a temporary name, so an interrupted import never leaves a template behind.
      const partial = `${path}.partial`;
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${partial}${suffix}`, { force: true });
      this.say(`  importing ${spec.total.toLocaleString('en-US')} messages into a SQLite template…`);
      const { ms } = await prefill({ kind: 'sqlite', path: partial }, spec);
      for (const suffix of ['-wal', '-shm']) rmSync(`${partial}${suffix}`, { force: true });
      renameSync(partial, path);
      if (cacheable) writeFileSync(meta, JSON.stringify({ spec, importMs: ms, madeAt: new Date().toISOString() }));
      this.say(`  imported in ${(ms / 1000).toFixed(1)} s (${Math.round(spec.total / (ms / 1000)).toLocaleString('en-US')} messages/s)`);
      made = { path, origin: { messages: spec.total, importMs: ms, cached: false } };
    }
    this.templates.set(key, made);
    return made;
  }
}

let pgDatabases = 0;

/** A fresh PostgreSQL database filled with `spec`; `drop` removes it. */
export async function freshPostgres(adminUrl: string, spec: DatasetSpec): Promise<{ url: string; origin: StoreOrigin; drop: () => Promise<void> }> {
  const name = `postbox_bench_${process.pid}_${++pgDatabases}`;
  const url = await createDatabase(adminUrl, name);
  const drop = () => dropDatabase(adminUrl, name);
  try {
    const { ms } = await prefill({ kind: 'postgres', url }, spec);
    return { url, origin: { messages: spec.total, importMs: ms, cached: false }, drop };
  } catch (err) {
    await drop().catch(() => undefined);
    throw err;
  }
}
