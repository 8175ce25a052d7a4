/**
 * A server process's memory, read from /proc while the load runs.
 */
import { readFileSync, writeFileSync } from 'node:fs';

/** A field of /proc/PID/status in bytes (VmRSS, VmHWM), or NaN if it cannot be read. */
export function statusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Watches a process's resident memory during one measurement: resets the kernel's
 * high-water mark at the start (so the peak is this run's, not start-up's or an earlier
 * run's) and also samples VmRSS every 100 ms, in case the reset is not permitted.
 */
export class RssWatch {
  private peak = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly resetWorked: boolean;

  constructor(private readonly pid: number) {
    let reset = true;
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      reset = false;
    }
    this.resetWorked = reset;
    this.sample();
    this.timer = setInterval(() => this.sample(), 100);
  }

  /** Stops sampling; answers the peak resident memory of the run, in bytes. */
  stop(): number {
    clearInterval(this.timer);
    this.sample();
    const hwm = this.resetWorked ? statusBytes(this.pid, 'VmHWM') : NaN;
    return Number.isFinite(hwm) ? Math.max(hwm, this.peak) : this.peak;
  }

  private sample(): void {
    const rss = statusBytes(this.pid, 'VmRSS');
    if (Number.isFinite(rss)) this.peak = Math.max(this.peak, rss);
  }
}
