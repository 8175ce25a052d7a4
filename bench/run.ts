/**
 * `npm run bench`: Postbox against the ceiling — a bare node:http server doing the same
 * work in memory (bench/ceiling.ts) — measured in one run, scenario by scenario.
 *
 * For each scenario and each target (the ceiling, then Postbox on SQLite, then Postbox on
 * PostgreSQL when asked for and available): start the server on a fresh store prefilled
 * with what the scenario reads, pin it to CPU 0 and wrk to CPU 1 (when there are two),
 * check one answer (one of each kind in the chat mix), warm up, then measure N runs of wrk
 * (50 keep-alive connections by default) while sampling the server's resident memory. The
 * table reports medians, and Postbox's req/s as a share of the ceiling's from the same
 * invocation; the run ends with issue 12's targets judged on those figures
 * (bench/lib/goals.ts).
 *
 * A script, not a test: nothing here runs in `npm test`. Traffic goes only to 127.0.0.1.
 * Run with --help for the options.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatSummary, summarizeProfile } from './lib/cpuprofile.js';
import { fmtLatency, fmtMb, fmtRps } from './lib/format.js';
import { formatGoals, judgeGoals, type GoalRow, type ScenarioFigures } from './lib/goals.js';
import { describeMachine, type MachineInfo } from './lib/machine.js';
import { LOCAL_POSTGRES, postgresProblem, postgresVersion } from './lib/postgres.js';
import { ProcWatch } from './lib/proc.js';
import { itemsIn, SCENARIOS, scenarioNamed, type FollowUpRead, type Scenario } from './lib/scenarios.js';
import { freshPostgres, SqliteStores, type StoreOrigin } from './lib/stores.js';
import { buildCeiling, postboxBuilt, startCeiling, startPostbox, type RunningTarget } from './lib/targets.js';
import { errorCount, rps, runWrk, WRK_MISSING, wrkVersion, type WrkResult } from './lib/wrk.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

const HELP = `Usage: npm run bench -- [options]     (or: npx tsx bench/run.ts [options])

Measures Postbox against a bare node:http server doing the same work in memory (the
ceiling), in one run, and ends with issue 12's targets: each measured figure, its target,
and met or missed (rows whose scenarios did not run say so). Needs wrk (apt-get install -y
wrk) and a build (npm run bench builds).

Options (each also as an environment variable):
  --scenarios a,b,…   BENCH_SCENARIOS   which scenarios, by name or group (main, store-size);
                                        default: the main seven; --list shows them all
  --store-size        BENCH_STORE_SIZE=1  add legacy post and inbox page on stores of
                                        1,000 and 1,000,000 messages
  --duration S        BENCH_DURATION    seconds per measured run (default 10)
  --runs N            BENCH_RUNS        measured runs per target; medians are reported (default 5)
  --warmup S          BENCH_WARMUP      seconds of warm-up load before measuring (default 3)
  --connections N     BENCH_CONNECTIONS keep-alive connections (default 50)
  --targets a,b       BENCH_TARGETS     ceiling, sqlite, postgres (default: ceiling,sqlite, and
                                        postgres when DATABASE_URL is postgres://… or --postgres)
  --postgres          BENCH_POSTGRES=1  also run Postbox on PostgreSQL (DATABASE_URL if it is
                                        postgres://…, else ${LOCAL_POSTGRES}); a fresh
                                        database per scenario, dropped afterwards
  --out FILE          BENCH_OUT         where to write the results table (default bench/results/latest.md)
  --no-cache                            re-import large stores instead of reusing .tmp/bench-cache/
  --profile NAME                        run scenario NAME once under node --cpu-prof and print
                                        where the server's CPU time goes (no table)
  --profile-target T                    postbox (default) or ceiling, for --profile
  --list                                list the scenarios
  --help`;

interface Options {
  scenarios: Scenario[];
  seconds: number;
  runs: number;
  warmup: number;
  connections: number;
  targets: Set<TargetKind>;
  postgresUrl: string | undefined;
  out: string;
  cache: boolean;
  profile: Scenario | undefined;
  profileTarget: 'postbox' | 'ceiling';
}

type TargetKind = 'ceiling' | 'sqlite' | 'postgres';
const TARGET_NAMES: Record<TargetKind, string> = { ceiling: 'ceiling (node:http, memory)', sqlite: 'Postbox, SQLite', postgres: 'Postbox, PostgreSQL' };

class UsageError extends Error {}

function whole(raw: string, name: string, min: number, max: number): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n < min || n > max) throw new UsageError(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
  return n;
}

function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Options | 'help' | 'list' {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenarios: { type: 'string' }, 'store-size': { type: 'boolean' }, duration: { type: 'string' }, runs: { type: 'string' },
      warmup: { type: 'string' }, connections: { type: 'string' }, targets: { type: 'string' }, postgres: { type: 'boolean' },
      out: { type: 'string' }, 'no-cache': { type: 'boolean' }, profile: { type: 'string' }, 'profile-target': { type: 'string' },
      list: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  if (values.list) return 'list';
  const pick = (flag: string | undefined, name: string) => flag ?? env[name];

  const storeSize = values['store-size'] === true || env.BENCH_STORE_SIZE === '1';
  const named = pick(values.scenarios, 'BENCH_SCENARIOS');
  let scenarios: Scenario[];
  if (named) {
    scenarios = named.split(',').map((n) => n.trim()).filter(Boolean).flatMap((n) => {
      // A group's name stands for all its scenarios.
      if (n === 'main' || n === 'store-size') return SCENARIOS.filter((s) => s.group === n);
      const s = scenarioNamed(n);
      if (!s) throw new UsageError(`no scenario "${n}"; --list shows them`);
      return [s];
    });
    if (storeSize) scenarios.push(...SCENARIOS.filter((s) => s.group === 'store-size' && !scenarios.includes(s)));
  } else {
    scenarios = SCENARIOS.filter((s) => s.group === 'main' || (storeSize && s.group === 'store-size'));
  }

  const dbUrl = env.DATABASE_URL;
  const pgFromEnv = dbUrl !== undefined && /^postgres(ql)?:\/\//i.test(dbUrl);
  const wantPg = values.postgres === true || env.BENCH_POSTGRES === '1' || pgFromEnv;
  const postgresUrl = wantPg ? (pgFromEnv ? dbUrl : LOCAL_POSTGRES) : undefined;

  const targetList = pick(values.targets, 'BENCH_TARGETS');
  const targets = new Set<TargetKind>(targetList
    ? targetList.split(',').map((t) => {
      const k = t.trim() as TargetKind;
      if (!(k in TARGET_NAMES)) throw new UsageError(`no target "${t}"; use ceiling, sqlite or postgres`);
      return k;
    })
    : ['ceiling', 'sqlite', ...(wantPg ? (['postgres'] as const) : [])]);
  if (targets.has('postgres') && postgresUrl === undefined) throw new UsageError('target postgres needs --postgres or DATABASE_URL=postgres://…');

  let profile: Scenario | undefined;
  if (values.profile !== undefined) {
    profile = scenarioNamed(values.profile);
    if (!profile) throw new UsageError(`no scenario "${values.profile}" to profile; --list shows them`);
  }
  const profileTarget = values['profile-target'] ?? 'postbox';
  if (profileTarget !== 'postbox' && profileTarget !== 'ceiling') throw new UsageError('--profile-target must be postbox or ceiling');

  return {
    scenarios,
    seconds: whole(pick(values.duration, 'BENCH_DURATION') ?? '10', 'duration', 1, 600),
    runs: whole(pick(values.runs, 'BENCH_RUNS') ?? '5', 'runs', 1, 50),
    warmup: whole(pick(values.warmup, 'BENCH_WARMUP') ?? '3', 'warmup', 0, 120),
    connections: whole(pick(values.connections, 'BENCH_CONNECTIONS') ?? '50', 'connections', 1, 10_000),
    targets,
    postgresUrl,
    out: pick(values.out, 'BENCH_OUT') ?? join(ROOT, 'bench/results/latest.md'),
    cache: values['no-cache'] !== true,
    profile,
    profileTarget,
  };
}

/** Progress goes to stderr; the tables go to stdout and the results file. */
function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The sample send a POST scenario makes before measuring, like the wrk script's. */
const PROBE_MESSAGE = { fromUser: 'sender0', toUser: 'recipient0', message: 'benchmark probe: the quick brown fox' };
const PROBE_SEND = JSON.stringify(PROBE_MESSAGE);

/**
 * Sends one request as the scenario will and checks the answer: its status, and for a read,
 * that it holds the expected number of items. Answers the body of a read, so the targets'
 * answers can be compared: they must be the same document.
 */
async function probe(baseUrl: string, s: Scenario): Promise<string> {
  if (s.followUp) return probeMix(baseUrl, s, s.followUp);
  const res = await fetch(`${baseUrl}${s.path}`, {
    method: s.method,
    ...(s.method === 'POST' ? { body: PROBE_SEND, headers: { 'content-type': 'application/json' } } : {}),
  });
  const body = await res.text();
  if (res.status !== s.status) throw new Error(`${s.method} ${s.path} answered ${res.status}, not ${s.status}: ${body.slice(0, 300)}`);
  if (s.method === 'POST' && !res.headers.get('location')) throw new Error(`${s.method} ${s.path} answered without a Location`);
  if (s.items !== undefined) {
    const n = itemsIn(JSON.parse(body));
    if (n !== s.items) throw new Error(`${s.method} ${s.path} answered ${n} items, not ${s.items}`);
  }
  return s.method === 'GET' ? body : '';
}

/**
 * A mix's check, one answer of each kind: the recipient's newest page, a send to that
 * recipient, and the page again, which must have moved on by exactly the message just sent
 * (the newest page, oldest first, ending in it). Also checks that the send's answer names
 * its recipient the way the wrk script reads it. Answers the first page, which is the
 * dataset's alone, for comparing the targets.
 */
async function probeMix(baseUrl: string, s: Scenario, read: FollowUpRead): Promise<string> {
  const user = PROBE_MESSAGE.toUser;
  const readPath = read.path.replace('{user}', encodeURIComponent(user));
  const page = async (when: string) => {
    const res = await fetch(`${baseUrl}${readPath}`);
    const body = await res.text();
    if (res.status !== read.status) throw new Error(`GET ${readPath} ${when} answered ${res.status}, not ${read.status}: ${body.slice(0, 300)}`);
    const parsed = JSON.parse(body) as { messages?: { id: string }[] };
    const ids = (parsed.messages ?? []).map((m) => String(m.id));
    if (ids.length !== read.items) throw new Error(`GET ${readPath} ${when} answered ${ids.length} messages, not ${read.items}`);
    return { body, ids };
  };
  const before = await page('before the send');
  const res = await fetch(`${baseUrl}${s.path}`, { method: s.method, body: PROBE_SEND, headers: { 'content-type': 'application/json' } });
  const sent = await res.text();
  if (res.status !== s.status) throw new Error(`${s.method} ${s.path} answered ${res.status}, not ${s.status}: ${sent.slice(0, 300)}`);
  if (!res.headers.get('location')) throw new Error(`${s.method} ${s.path} answered without a Location`);
  // The wrk script finds the page to read by this pattern in the answer.
  if (/"toUser":"([^"]*)"/.exec(sent)?.[1] !== user) {
    throw new Error(`${s.method} ${s.path} answered no "toUser":"${user}" for the wrk script to read: ${sent.slice(0, 300)}`);
  }
  const id = String((JSON.parse(sent) as { id: unknown }).id);
  const after = await page('after the send');
  const expected = [...before.ids.slice(1), id];
  if (after.ids.join() !== expected.join()) {
    throw new Error(`GET ${readPath} after sending message ${id} answered ids ${after.ids.join(', ')}, not the newest page ${expected.join(', ')}`);
  }
  return before.body;
}

/** One target's figures in one scenario. */
interface TargetResult {
  target: TargetKind;
  runs: { wrk: WrkResult; rps: number; rssPeak: number; cpuPercent: number }[];
  store?: StoreOrigin;
  /** Why it was not measured. */
  skipped?: string;
  /** The answer to the probe request, for comparing targets. */
  probeBody?: string;
}

interface ScenarioResult {
  scenario: Scenario;
  targets: TargetResult[];
  notes: string[];
}

/** Everything to clean up if the run is interrupted. */
const live = new Set<RunningTarget>();
const cleanups = new Set<() => Promise<void>>();

async function measureTarget(
  s: Scenario, kind: TargetKind, o: Options, ctx: { work: string; ceiling: string; cpus: { server?: number; wrk?: number }; stores: SqliteStores },
): Promise<TargetResult> {
  const logPath = join(ctx.work, `${s.name.replace(/[^\w.-]/g, '_')}-${kind}.log`);
  let target: RunningTarget;
  let store: StoreOrigin | undefined;
  let dropPg: (() => Promise<void>) | undefined;
  let disposeStore: (() => void) | undefined;
  if (kind === 'ceiling') {
    target = await startCeiling(ctx.ceiling, s.dataset, { logPath, cpu: ctx.cpus.server });
  } else if (kind === 'sqlite') {
    const fresh = await ctx.stores.fresh(s.dataset);
    store = fresh.origin;
    disposeStore = fresh.dispose;
    try {
      target = await startPostbox(`sqlite:${fresh.path}`, { logPath, cpu: ctx.cpus.server });
    } catch (err) {
      fresh.dispose();
      throw err;
    }
  } else {
    say(`  importing ${s.dataset.total.toLocaleString('en-US')} messages into a fresh PostgreSQL database…`);
    const pg = await freshPostgres(o.postgresUrl!, s.dataset);
    store = pg.origin;
    dropPg = pg.drop;
    cleanups.add(dropPg);
    try {
      target = await startPostbox(pg.url, { logPath, cpu: ctx.cpus.server });
    } catch (err) {
      await dropPg();
      cleanups.delete(dropPg);
      throw err;
    }
  }
  live.add(target);
  try {
    const probeBody = await probe(target.baseUrl, s);
    const load = (seconds: number) => runWrk({
      baseUrl: target.baseUrl, method: s.method, path: s.path, followUp: s.followUp?.path, connections: o.connections, seconds, cpu: ctx.cpus.wrk,
    });
    if (o.warmup > 0) await load(o.warmup);
    const runs: TargetResult['runs'] = [];
    for (let r = 1; r <= o.runs; r++) {
      const watch = new ProcWatch(target.pid);
      const wrk = await load(o.seconds);
      const { rssPeak, cpuPercent } = watch.stop();
      runs.push({ wrk, rps: rps(wrk), rssPeak, cpuPercent });
      const errors = errorCount(wrk);
      say(`  ${TARGET_NAMES[kind]}, run ${r}/${o.runs}: ${fmtRps(rps(wrk))} req/s, p50 ${fmtLatency(wrk.p50Us)}, ` +
        `p99 ${fmtLatency(wrk.p99Us)}, RSS ${fmtMb(rssPeak)}, CPU ${cpuPercent.toFixed(0)}% (wrk ${wrk.cpuPercent.toFixed(0)}%)` +
        `${wrk.mix ? `, ${fmtRps(wrk.mix.sends)} sends + ${fmtRps(wrk.mix.reads)} reads` : ''}${errors ? `, ${errors} ERRORS` : ''}`);
    }
    return { target: kind, runs, store, probeBody };
  } finally {
    await target.stop();
    live.delete(target);
    disposeStore?.();
    if (dropPg) {
      await dropPg();
      cleanups.delete(dropPg);
    }
  }
}

function tableFor(r: ScenarioResult): string {
  const rows = [
    '| target | req/s | p50 | p99 | server RSS (peak) | server CPU | requests per CPU-second | wrk CPU | vs ceiling | req/s over runs (min–max) | errors |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  const ceiling = r.targets.find((t) => t.target === 'ceiling' && t.runs.length > 0);
  const ceilingRps = ceiling ? median(ceiling.runs.map((x) => x.rps)) : undefined;
  for (const t of r.targets) {
    if (t.skipped) {
      rows.push(`| ${TARGET_NAMES[t.target]} | skipped: ${t.skipped.replace(/\|/g, '/').replace(/\s+/g, ' ')} |${' |'.repeat(9)}`);
      continue;
    }
    const med = median(t.runs.map((x) => x.rps));
    const rpss = t.runs.map((x) => x.rps);
    const errors = t.runs.reduce((a, x) => a + errorCount(x.wrk), 0);
    const ratio = ceilingRps ? `${((100 * med) / ceilingRps).toFixed(0)}%` : '–';
    rows.push(`| ${TARGET_NAMES[t.target]} | ${fmtRps(med)} | ${fmtLatency(median(t.runs.map((x) => x.wrk.p50Us)))} | ` +
      `${fmtLatency(median(t.runs.map((x) => x.wrk.p99Us)))} | ${fmtMb(Math.max(...t.runs.map((x) => x.rssPeak)))} | ` +
      `${median(t.runs.map((x) => x.cpuPercent)).toFixed(0)}% | ${fmtRps(median(t.runs.map((x) => x.rps / (x.cpuPercent / 100))))} | ` +
      `${median(t.runs.map((x) => x.wrk.cpuPercent)).toFixed(0)}% | ` +
      `${t.target === 'ceiling' ? '100%' : ratio} | ${fmtRps(Math.min(...rpss))}–${fmtRps(Math.max(...rpss))} | ${errors || '0'} |`);
  }
  return rows.join('\n');
}

/** The requests a scenario makes, for the report. */
function describeRequests(s: Scenario): string {
  if (!s.followUp) return `${s.method} ${s.path}`;
  return `${s.method} ${s.path}, each answered send followed by GET ${s.followUp.path.replace('{user}', '{its recipient}')}`;
}

/** In a mix, each target's answered sends and reads over its measured runs; else undefined. */
function mixCounts(r: ScenarioResult): string | undefined {
  if (!r.scenario.followUp) return undefined;
  return r.targets.filter((t) => t.runs.length > 0).map((t) => {
    const sends = t.runs.reduce((a, x) => a + (x.wrk.mix?.sends ?? 0), 0);
    const reads = t.runs.reduce((a, x) => a + (x.wrk.mix?.reads ?? 0), 0);
    return `${TARGET_NAMES[t.target]} ${fmtRps(sends)} sends and ${fmtRps(reads)} reads`;
  }).join('; ');
}

/**
 * True when every run of a target in a mix followed each answered send with a read: reads
 * never outrun sends, and the sends still without an answered read when wrk stops are at
 * most one per connection (its read queued or in flight).
 */
function mixPaired(t: TargetResult, connections: number): boolean {
  return t.runs.every(({ wrk: { mix } }) => mix !== undefined && mix.reads <= mix.sends && mix.sends - mix.reads <= connections);
}

/** The medians the issue's targets are judged on, by scenario, with what makes a target's figures unfit. */
function goalFigures(results: readonly ScenarioResult[], connections: number): Map<string, ScenarioFigures> {
  const figures = new Map<string, ScenarioFigures>();
  for (const r of results) {
    const entry: ScenarioFigures = {};
    for (const t of r.targets) {
      if ((t.target !== 'ceiling' && t.target !== 'sqlite') || t.runs.length === 0) continue;
      const failed = t.runs.reduce((a, x) => a + errorCount(x.wrk), 0);
      entry[t.target] = {
        rps: median(t.runs.map((x) => x.rps)),
        p99Us: median(t.runs.map((x) => x.wrk.p99Us)),
        invalid: failed > 0 ? `${failed} failed requests`
          : r.scenario.followUp && !mixPaired(t, connections) ? 'sends and reads did not pair' : undefined,
      };
    }
    figures.set(r.scenario.name, entry);
  }
  return figures;
}

const GOALS_TITLE = 'Issue 12\'s targets (SQLite, default fsync durability, ratios to the ceiling from this run)';

function report(
  results: ScenarioResult[], goals: readonly GoalRow[], o: Options, machine: MachineInfo,
  meta: { command: string; pinned: string; started: Date; loadEnd: string; notes: string[] },
): string {
  const parts = [
    `# Postbox benchmark results`,
    '',
    `Run ${meta.started.toISOString()} with \`${meta.command}\`.`,
    '',
    `- Machine: ${machine.cpus} CPUs, ${machine.cpuModel}; ${machine.memory} memory; disk ${machine.disk}`,
    `- Software: ${machine.kernel}; Node ${machine.node}; SQLite ${machine.sqlite}; ${machine.wrk}`,
    `- Load: ${o.connections} keep-alive connections, one wrk thread; ${o.warmup} s warm-up, then ${o.runs} run(s) of ${o.seconds} s per target; medians of the runs`,
    `- Pinning: ${meta.pinned}`,
    `- Load average (1, 5, 15 min) at start: ${machine.loadAverage}; at end: ${meta.loadEnd}`,
    `- Postbox: built dist/, default settings (POSTBOX_DURABILITY=fsync: every answered send is on disk), LOG_LEVEL=warn, POSTBOX_RATE_LIMIT=0`,
    ...meta.notes.map((n) => `- Note: ${n}`),
    '',
    `## ${GOALS_TITLE}`,
    '',
    formatGoals(goals),
    '',
  ];
  for (const r of results) {
    parts.push(`## ${r.scenario.name}: ${r.scenario.title}`, '');
    const store = r.targets.find((t) => t.store)?.store;
    parts.push(`${describeRequests(r.scenario)} over ${r.scenario.dataset.total.toLocaleString('en-US')} stored messages` +
      (store ? ` (imported in ${(store.importMs / 1000).toFixed(1)} s${store.cached ? ', template reused from an earlier run' : ''})` : '') + '.', '');
    parts.push(tableFor(r), '');
    const mix = mixCounts(r);
    if (mix) parts.push(`Answered over the measured runs: ${mix}.`, '');
    for (const n of r.notes) parts.push(`Note: ${n}`, '');
  }
  return parts.join('\n');
}

async function profileRun(o: Options, s: Scenario, cpus: { server?: number; wrk?: number }, work: string, ceiling: string, stores: SqliteStores): Promise<void> {
  const dir = join(work, 'cpuprofile');
  mkdirSync(dir, { recursive: true });
  const logPath = join(work, 'profile.log');
  say(`profiling ${s.name} on ${o.profileTarget === 'ceiling' ? 'the ceiling' : 'Postbox (SQLite)'}: ${o.warmup} s warm-up, ${o.seconds} s of load, under node --cpu-prof`);
  const target = o.profileTarget === 'ceiling'
    ? await startCeiling(ceiling, s.dataset, { logPath, cpu: cpus.server, cpuProfileDir: dir })
    : await startPostbox(`sqlite:${(await stores.fresh(s.dataset)).path}`, { logPath, cpu: cpus.server, cpuProfileDir: dir });
  live.add(target);
  let wrk: WrkResult;
  let loadEnded = 0;
  try {
    await probe(target.baseUrl, s);
    const load = (seconds: number) => runWrk({
      baseUrl: target.baseUrl, method: s.method, path: s.path, followUp: s.followUp?.path, connections: o.connections, seconds, cpu: cpus.wrk,
    });
    if (o.warmup > 0) await load(o.warmup);
    wrk = await load(o.seconds);
    loadEnded = performance.now();
  } finally {
    // The profile is written when the process exits, so it must exit cleanly, not be killed.
    await target.stop(30_000);
    live.delete(target);
  }
  // Only the measured load is summed: it ended this long before the process did.
  const window = { endGapUs: (performance.now() - loadEnded) * 1000, lengthUs: wrk.durationUs };
  // Profiles are named CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile; thread 0 is the main thread.
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => ({ f, thread: Number(f.split('.')[4] ?? 0) }))
    .sort((a, b) => a.thread - b.thread);
  if (files.length === 0) throw new Error(`no CPU profile was written; the server's log is ${logPath}`);
  const keep = join(ROOT, 'bench/results');
  mkdirSync(keep, { recursive: true });
  const out = [
    `CPU profile of ${o.profileTarget} under ${s.name} (${s.method} ${s.path}), ${o.connections} connections: ` +
      `${fmtRps(rps(wrk))} req/s while profiled (sampling costs some), p50 ${fmtLatency(wrk.p50Us)}, p99 ${fmtLatency(wrk.p99Us)}.`,
    `Summed over the ${(wrk.durationUs / 1e6).toFixed(1)} s of measured load only; the saved profiles also hold start-up, warm-up and shutdown.`,
    'Self time is wall time at the top of the stack: a call blocked in the kernel (the writer\'s COMMIT waiting for fsync) counts as busy.',
  ];
  for (const [i, { f, thread }] of files.entries()) {
    // Postbox on SQLite has one worker thread, the group-commit writer.
    const writer = o.profileTarget === 'postbox' && files.length === 2 ? ' (the SQLite writer)' : '';
    const name = thread === 0 ? 'main thread' : `worker thread ${thread}${writer}`;
    const saved = join(keep, `${s.name.replace(/[^\w.-]/g, '_')}-${o.profileTarget}-${i}.cpuprofile`);
    copyFileSync(join(dir, f), saved);
    out.push('', formatSummary(`${name} (${relative(ROOT, saved)}, open in Chrome DevTools for the call tree)`, summarizeProfile(join(dir, f), ROOT, window)));
  }
  const text = out.join('\n');
  process.stdout.write(`${text}\n`);
  const summaryPath = join(keep, `profile-${s.name.replace(/[^\w.-]/g, '_')}-${o.profileTarget}.txt`);
  writeFileSync(summaryPath, `${text}\n`);
  say(`\nwritten to ${relative(ROOT, summaryPath)}`);
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions(process.argv.slice(2), process.env);
  } catch (err) {
    say(`bench: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (parsed === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (parsed === 'list') {
    for (const s of SCENARIOS) process.stdout.write(`${s.name.padEnd(20)} ${s.group === 'main' ? '' : '(--store-size) '}${s.title}\n`);
    return 0;
  }
  const o = parsed;
  if (wrkVersion() === null) {
    say(WRK_MISSING);
    return 2;
  }
  if (!postboxBuilt()) {
    say('bench: dist/ is missing: run `npm run build` first (`npm run bench` does).');
    return 2;
  }

  const machine = describeMachine();
  const pinned = machine.cpus >= 2;
  const cpus = pinned ? { server: 0, wrk: 1 } : {};
  const pinnedText = pinned
    ? 'server on CPU 0 (taskset -c 0, all its threads), wrk on CPU 1 (taskset -c 1)'
    : `not pinned: this machine has ${machine.cpus} CPU, so server and wrk share it`;
  const work = mkdtempSync(join(tmpdir(), 'postbox-bench-'));
  workDir = work;
  const ceiling = buildCeiling(join(work, 'ceiling'));
  const stores = new SqliteStores(work, o.cache, say);
  const started = new Date();
  const notes: string[] = [];
  if (!pinned) notes.push(pinnedText);

  try {
    if (o.profile) {
      await profileRun(o, o.profile, cpus, work, ceiling, stores);
      return 0;
    }
    let pgSkip: string | undefined;
    if (o.targets.has('postgres')) {
      const problem = await postgresProblem(o.postgresUrl!);
      if (problem) pgSkip = `PostgreSQL at ${redact(o.postgresUrl!)} does not answer (${problem})`;
      else notes.push(`PostgreSQL ${await postgresVersion(o.postgresUrl!)} at ${redact(o.postgresUrl!)}`);
    }

    say(`Machine: ${machine.cpus} CPUs, ${machine.cpuModel}, ${machine.memory}; load average ${machine.loadAverage}`);
    say(`${pinnedText}; ${o.connections} connections, ${o.warmup} s warm-up, ${o.runs} × ${o.seconds} s per target\n`);
    const results: ScenarioResult[] = [];
    for (const s of o.scenarios) {
      say(`== ${s.name}: ${s.title}`);
      const result: ScenarioResult = { scenario: s, targets: [], notes: [] };
      for (const kind of ['ceiling', 'sqlite', 'postgres'] as const) {
        if (!o.targets.has(kind)) continue;
        if (kind === 'postgres' && pgSkip) {
          result.targets.push({ target: kind, runs: [], skipped: pgSkip });
          continue;
        }
        try {
          result.targets.push(await measureTarget(s, kind, o, { work, ceiling, cpus, stores }));
        } catch (err) {
          const message = (err as Error).message;
          // The PostgreSQL backend may not exist in this build: say so once and skip it from then on.
          if (kind === 'postgres') {
            pgSkip = `Postbox could not use PostgreSQL: ${message.split('\n')[0]}`;
            result.targets.push({ target: kind, runs: [], skipped: pgSkip });
            say(`  ${pgSkip}`);
            continue;
          }
          throw err;
        }
      }
      const bodies = result.targets.filter((t) => t.probeBody);
      if (bodies.length > 1 && !bodies.every((t) => sameJson(t.probeBody!, bodies[0]!.probeBody!))) {
        result.notes.push('the targets\' answers to the same read differ: the comparison is not like for like');
        say('  WARNING: the targets answered the same read differently');
      }
      if (s.followUp && !result.targets.every((t) => mixPaired(t, o.connections))) {
        result.notes.push('the mix did not follow every send with one read (see the sends and reads answered): those figures are not valid');
      }
      if (result.targets.some((t) => t.runs.some((x) => errorCount(x.wrk) > 0))) {
        result.notes.push('some requests failed (see the errors column): those figures are not valid');
      }
      results.push(result);
      process.stdout.write(`\n${s.name}: ${s.title}\n${tableFor(result)}\n\n`);
    }
    if (pgSkip && !notes.some((n) => n.startsWith('PostgreSQL skipped'))) notes.push(`PostgreSQL skipped: ${pgSkip}`);
    const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
    const goals = judgeGoals(goalFigures(results, o.connections));
    process.stdout.write(`${GOALS_TITLE}\n${formatGoals(goals)}\n\n`);
    const md = report(results, goals, o, machine, { command, pinned: pinnedText, started, loadEnd: describeMachine().loadAverage, notes });
    mkdirSync(dirname(o.out), { recursive: true });
    writeFileSync(o.out, `${md}\n`);
    const raw = {
      machine,
      goals,
      options: {
        ...o,
        targets: [...o.targets],
        scenarios: o.scenarios.map((s) => s.name),
        postgresUrl: o.postgresUrl && redact(o.postgresUrl),
        profile: undefined,
      },
      results: results.map((r) => ({
        ...r,
        scenario: r.scenario.name,
        // The probe answers were for comparing the targets; a 1,000-message body is no result.
        targets: r.targets.map(({ probeBody: _probeBody, ...t }) => t),
      })),
    };
    writeFileSync(`${o.out.replace(/\.md$/, '')}.json`, `${JSON.stringify(raw, null, 2)}\n`);
    say(`results written to ${relative(process.cwd(), o.out)}`);
    return results.some((r) => r.notes.length > 0) ? 1 : 0;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function sameJson(a: string, b: string): boolean {
  try {
    return JSON.stringify(JSON.parse(a)) === JSON.stringify(JSON.parse(b));
  } catch {
    return a === b;
  }
}

/** A database URL without its password, for the report. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the given URL';
  }
}

/** The run's scratch directory (stores, logs), removed at the end. */
let workDir: string | undefined;

async function stopEverything(): Promise<void> {
  await Promise.allSettled([...live].map((t) => t.stop(2000)));
  await Promise.allSettled([...cleanups].map((c) => c()));
  if (workDir) rmSync(workDir, { recursive: true, force: true });
}

let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  say('\ninterrupted: stopping the servers');
  void stopEverything().finally(() => process.exit(130));
});

const code = await main().catch(async (err: unknown) => {
  say(`bench failed: ${(err as Error).stack ?? String(err)}`);
  await stopEverything();
  return 1;
});
process.exitCode = code;
