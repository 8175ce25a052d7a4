/**
 * Starting the SQLite backend's worker threads, from source (tsx) or from the build alike.
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/** The URL of a worker module beside this one: .ts under tsx, .js once built. */
export function siblingModule(name: string): URL {
  return new URL(`./${name}${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
}

/** Starts a worker thread running the module at `url` with `data`. */
export function startWorker(url: URL, data: unknown): Worker {
  return url.pathname.endsWith('.ts')
    // Running from source under tsx: loader hooks do not reach worker threads on Node 20,
    // so the worker registers tsx itself before loading the TypeScript module.
    ? new Worker(
      `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`,
      { eval: true, workerData: data },
    )
    : new Worker(url, { workerData: data });
}
