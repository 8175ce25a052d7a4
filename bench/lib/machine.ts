/**
 * A description of the machine a run was made on, read from it, for the report.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem, tmpdir } from 'node:os';
import Database from 'better-sqlite3';
import { wrkVersion } from './wrk.js';

/** What the report says about the machine. */
export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memory: string;
  disk: string;
  kernel: string;
  node: string;
  sqlite: string;
  wrk: string;
  loadAverage: string;
}

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

/** The block device under `dir` and whether it is rotational, as far as /proc and /sys tell. */
function diskOf(dir: string): string {
  const line = run('df', ['-P', dir]).split('\n')[1] ?? '';
  const device = line.split(/\s+/)[0] ?? '?';
  const name = /^\/dev\/([a-z]+)/.exec(device)?.[1];
  let kind = '';
  if (name) {
    try {
      kind = readFileSync(`/sys/block/${name}/queue/rotational`, 'utf8').trim() === '1' ? ', reported rotational' : ', reported non-rotational';
    } catch {
      // Not a whole-disk device we can look up.
    }
  }
  const virtio = name?.startsWith('vd') ? ' (virtio disk of a VM)' : '';
  return `${device}${virtio}${kind}, holding ${dir}`;
}

/** The SQLite library better-sqlite3 was built with. */
export function sqliteVersion(): string {
  const db = new Database(':memory:');
  try {
    return String(db.prepare('SELECT sqlite_version()').pluck().get());
  } finally {
    db.close();
  }
}

/** Reads the machine's description. */
export function describeMachine(): MachineInfo {
  const model = cpus()[0]?.model ?? 'unknown';
  // Virtual CPUs share their host: worth knowing when reading the figures.
  const hypervisor = /^Hypervisor vendor:\s*(.+)$/m.exec(run('lscpu', []))?.[1]?.trim()
    ?? (/\bhypervisor\b/.test(readFileSafe('/proc/cpuinfo')) ? 'a hypervisor' : '');
  const container = run('systemd-detect-virt', ['--container']);
  const where = [hypervisor && `virtual CPUs under ${hypervisor}`, container && container !== 'none' && `in a ${container} container`]
    .filter(Boolean).join(', ');
  return {
    cpus: availableParallelism(),
    cpuModel: where ? `${model} (${where})` : model,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    disk: diskOf(tmpdir()),
    kernel: run('uname', ['-sr']),
    node: process.version,
    sqlite: sqliteVersion(),
    wrk: wrkVersion() ?? 'not installed',
    loadAverage: loadavg().map((l) => l.toFixed(2)).join(', '),
  };
}

function readFileSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
