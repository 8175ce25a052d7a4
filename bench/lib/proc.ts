/**
 * A server process's memory and CPU use, read from /proc while the load runs.
 */
import { execFileSync } from 'node:child_process';
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

/** Kernel clock ticks a second, the unit of /proc/PID/stat's CPU times. */
const CLOCK_TICKS = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** CPU time the process (all its threads) has used, in seconds, or NaN. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

/** What a {@link ProcWatch} saw. */
export interface ProcFigures {
  /** Peak resident memory, bytes. */
  rssPeak: number;
  /** CPU used over the run, as a percentage of one CPU (above 100 means more than one core). */
  cpuPercent: number;
}

/**
 * Watches a process during one measurement. Memory: resets the kernel's high-water mark at
 * the start (so the peak is this run's, not start-up's or an earlier run's) and also samples
 * VmRSS every 100 ms, in case the reset is not permitted. CPU: the process's user + system
 * time over the run, which tells a saturated server (near 100% of its one pinned CPU) from
 * one that waits (on the disk, or on a starved load generator).
 */
export class ProcWatch {
  private peak = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly resetWorked: boolean;
  private readonly cpuStart: number;
  private readonly wallStart = performance.now();

  constructor(private readonly pid: number) {
    let reset = true;
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      reset = false;
    }
    this.resetWorked = reset;
    this.cpuStart = cpuSeconds(pid);
    this.sample();
    this.timer = setInterval(() => this.sample(), 100);
  }

  /** Stops watching; answers the run's figures. */
  stop(): ProcFigures {
    clearInterval(this.timer);
    this.sample();
    const wall = (performance.now() - this.wallStart) / 1000;
    const hwm = this.resetWorked ? statusBytes(this.pid, 'VmHWM') : NaN;
    return {
      rssPeak: Number.isFinite(hwm) ? Math.max(hwm, this.peak) : this.peak,
      cpuPercent: wall > 0 ? (100 * (cpuSeconds(this.pid) - this.cpuStart)) / wall : NaN,
    };
  }

  private sample(): void {
    const rss = statusBytes(this.pid, 'VmRSS');
    if (Number.isFinite(rss)) this.peak = Math.max(this.peak, rss);
  }
}
