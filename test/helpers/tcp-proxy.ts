/**
 * A TCP proxy a test can cut and restore, to play a database outage without touching the
 * database: cutting resets every live connection and every new one until restored.
 */
import { createServer, connect, type Socket } from 'node:net';

/** A running proxy. */
export interface TcpProxy {
  /** The local port that forwards to the target. */
  port: number;
  /** Resets every connection through the proxy, and each new one until {@link restore}. */
  cut(): void;
  /** Forwards new connections again. */
  restore(): void;
  /** Stops listening and drops every connection. */
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 (a free port) forwarding to `target`. */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let isCut = false;
  const live = new Set<Socket>();
  const server = createServer((downstream) => {
    if (isCut) {
      // A reset, not a polite close: what a crashed or unreachable server looks like.
      downstream.resetAndDestroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    live.add(downstream);
    live.add(upstream);
    const drop = () => {
      live.delete(downstream);
      live.delete(upstream);
      downstream.destroy();
      upstream.destroy();
    };
    for (const s of [downstream, upstream]) {
      s.on('error', drop);
      s.on('close', drop);
    }
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no TCP address');
  const resetAll = () => {
    for (const s of [...live]) s.resetAndDestroy();
    live.clear();
  };
  return {
    port: address.port,
    cut() {
      isCut = true;
      resetAll();
    },
    restore() {
      isCut = false;
    },
    close() {
      resetAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
