/** How the benchmark's figures are written, the same in every table. */

/** A latency in microseconds, in µs or ms with the precision it deserves. */
export function fmtLatency(us: number): string {
  return us < 1000 ? `${Math.round(us)} µs` : us < 100_000 ? `${(us / 1000).toFixed(2)} ms` : `${(us / 1000).toFixed(0)} ms`;
}

/** A rate or count, whole, with thousands separators. */
export function fmtRps(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** A size in bytes, as whole MiB. */
export function fmtMb(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MB`;
}
