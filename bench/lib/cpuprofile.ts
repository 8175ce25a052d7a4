/**
 * Reads a V8 `.cpuprofile` (what `node --cpu-prof` writes) and sums self time per function
 * and per origin (Postbox's own modules, each npm package, Node's internals, the garbage
 * collector), so a reader sees where a server spends its time without opening DevTools.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Self time of one function or origin, in microseconds. */
export interface SelfTime {
  name: string;
  us: number;
}

/** A profile, summed. */
export interface ProfileSummary {
  /** Everything sampled, idle included. */
  totalUs: number;
  /** Sampled time not idle: the percentages are of this. */
  busyUs: number;
  functions: SelfTime[];
  origins: SelfTime[];
}

const SPECIAL = new Set(['(garbage collector)', '(program)', '(idle)', '(root)']);

/** Which part of the system a frame belongs to. */
export function originOf(frame: CallFrame, root: string): string {
  const { url, functionName } = frame;
  if (SPECIAL.has(functionName)) return functionName;
  if (url === '') return '(V8 builtins and native code)';
  if (url.startsWith('node:')) return 'node: internals';
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/');
    return `npm ${rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (path.startsWith(root)) {
    const rel = path.slice(root.length);
    const m = /^(dist|src|bench)\/(?:([^/]+)\/)?/.exec(rel);
    if (m) return `postbox ${m[1]}/${m[2] ?? ''}`.replace(/\/$/, '');
    return `postbox ${rel}`;
  }
  return path;
}

function label(frame: CallFrame, root: string): string {
  const name = frame.functionName || '(anonymous)';
  if (frame.url === '') return name;
  const path = frame.url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  const short = nm >= 0 ? path.slice(nm + '/node_modules/'.length) : path.startsWith(root) ? path.slice(root.length) : path;
  return `${name}  ${short}:${frame.lineNumber + 1}`;
}

function sorted(map: Map<string, number>): SelfTime[] {
  return [...map].map(([name, us]) => ({ name, us })).sort((a, b) => b.us - a.us);
}

/**
 * The part of a profile to sum, counted back from its end: the measured load, without the
 * start-up, the warm-up and the shutdown that the profile also holds.
 */
export interface ProfileWindow {
  /** Microseconds between the end of the window and the end of the profile. */
  endGapUs: number;
  /** The window's length in microseconds. */
  lengthUs: number;
}

/**
 * Sums the self time of every function and origin in the profile at `path`, within
 * `window` if given. Self time is wall time at the top of the stack: a function blocked in
 * a system call (SQLite's COMMIT waiting for fsync) is charged for the wait, so on the
 * writer thread "busy" includes time the disk takes.
 */
export function summarizeProfile(path: string, root: string, window?: ProfileWindow): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const functions = new Map<string, number>();
  const origins = new Map<string, number>();
  let total = 0;
  let idle = 0;
  const { samples, timeDeltas } = profile;
  const to = window ? profile.endTime - window.endGapUs : Infinity;
  const from = window ? to - window.lengthUs : -Infinity;
  let at = profile.startTime;
  for (let i = 0; i < samples.length; i++) {
    at += timeDeltas[i] ?? 0;
    if (at < from || at > to) continue;
    // A sample stands for the time until the next one.
    const next = i + 1 < timeDeltas.length ? timeDeltas[i + 1]! : 0;
    const us = Math.max(0, next);
    const frame = byId.get(samples[i]!);
    if (!frame) continue;
    total += us;
    if (frame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const fn = label(frame, root);
    functions.set(fn, (functions.get(fn) ?? 0) + us);
    const origin = originOf(frame, root);
    origins.set(origin, (origins.get(origin) ?? 0) + us);
  }
  return { totalUs: total, busyUs: total - idle, functions: sorted(functions), origins: sorted(origins) };
}

/** The summary as text: origins, then the top `top` functions by self time. */
export function formatSummary(title: string, s: ProfileSummary, top = 25): string {
  const pct = (us: number) => `${((100 * us) / Math.max(1, s.busyUs)).toFixed(1).padStart(5)}%`;
  const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(7)} ms`;
  const head = `${title}: ${(s.totalUs / 1e6).toFixed(1)} s sampled, ${(s.busyUs / 1e6).toFixed(1)} s busy`;
  if (s.busyUs === 0) return `${head} (idle throughout)`;
  const lines = [
    `${head} (percentages are of busy time)`,
    '',
    '  self time by origin:',
    ...s.origins.slice(0, 15).map((o) => `  ${pct(o.us)} ${ms(o.us)}  ${o.name}`),
    '',
    `  top ${top} functions by self time:`,
    ...s.functions.slice(0, top).map((f) => `  ${pct(f.us)} ${ms(f.us)}  ${f.name}`),
  ];
  return lines.join('\n');
}
