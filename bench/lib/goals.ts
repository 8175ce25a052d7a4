/**
 * Issue 12's targets, judged from one run: Postbox on SQLite against the ceiling measured in
 * the same invocation, and legacy post's rate on a store of a million messages against its
 * rate on a store of a thousand. `npm run bench` prints the table at the end and writes it
 * into the results file.
 */
import { fmtLatency, fmtRps } from './format.js';

/** One target's medians in one scenario, as the goals read them. */
export interface GoalFigures {
  /** Median req/s over the runs. */
  rps: number;
  /** Median over the runs of wrk's p99 latency, in microseconds. */
  p99Us: number;
  /** Why these figures cannot be judged (failed requests, say); absent when they can. */
  invalid?: string;
}

/** What one scenario of the run gave, by target; a target that did not run is absent. */
export interface ScenarioFigures {
  ceiling?: GoalFigures;
  sqlite?: GoalFigures;
}

/** One of the targets. */
export type Goal =
  /** Postbox's req/s as a share of the ceiling's; `held`: the target is not to fall below the last full run's share. */
  | { label: string; kind: 'share'; scenario: string; atLeast: number; held?: boolean }
  /** Postbox's p99 as a multiple of the ceiling's. */
  | { label: string; kind: 'p99'; scenario: string; atMost: number }
  /** Postbox's req/s on the large store against the small one, as a change in percent. */
  | { label: string; kind: 'growth'; small: string; large: string; withinPercent: number };

/** The targets, in the order. */
export const GOALS: readonly Goal[] = [
  { label: 'legacy post', kind: 'share', scenario: 'legacy-post', atLeast: 0.6 },
  { label: 'v1 post', kind: 'share', scenario: 'v1-post', atLeast: 0.55 },
  { label: 'chat mix (send, then read a page)', kind: 'share', scenario: 'chat-mix', atLeast: 0.5 },
  { label: 'send p99 (legacy post)', kind: 'p99', scenario: 'legacy-post', atMost: 2 },
  { label: 'get of 20', kind: 'share', scenario: 'get-20', atLeast: 0.64, held: true },
  { label: 'get of 1,000', kind: 'share', scenario: 'get-1000', atLeast: 1.61, held: true },
  { label: 'inbox page of 50', kind: 'share', scenario: 'inbox-50', atLeast: 0.83, held: true },
  { label: 'legacy post at 1,000,000 stored vs at 1,000', kind: 'growth', small: 'legacy-post@1k', large: 'legacy-post@1M', withinPercent: 10 },
];

/** One line of the table. */
export interface GoalRow {
  goal: string;
  /** The figure, or why there is none. */
  measured: string;
  target: string;
  /** Whether the target is met; null when it could not be judged (not run, or invalid). */
  met: boolean | null;
}

type Judged = { measured: string; met: boolean | null };

/** The figures a goal needs from one scenario and target, or the reason they are missing. */
function figuresOf(run: ReadonlyMap<string, ScenarioFigures>, scenario: string, target: 'ceiling' | 'sqlite'): GoalFigures | string {
  const s = run.get(scenario);
  if (!s) return `not run (${scenario} was not in this run)`;
  const f = s[target];
  if (!f) return `not run (${scenario} had no ${target === 'ceiling' ? 'ceiling' : 'Postbox-on-SQLite'} target)`;
  if (f.invalid) return `invalid (${scenario}, ${target === 'ceiling' ? 'ceiling' : 'Postbox'}: ${f.invalid})`;
  return f;
}

function judge(goal: Goal, run: ReadonlyMap<string, ScenarioFigures>): Judged {
  if (goal.kind === 'growth') {
    if (!run.has(goal.small) || !run.has(goal.large)) return { measured: 'not run (needs --store-size)', met: null };
    const small = figuresOf(run, goal.small, 'sqlite');
    const large = figuresOf(run, goal.large, 'sqlite');
    if (typeof small === 'string') return { measured: small, met: null };
    if (typeof large === 'string') return { measured: large, met: null };
    // Judged at the precision shown, so the verdict never contradicts the figure beside it.
    const percent = Math.round((100 * large.rps) / small.rps - 100);
    const sign = percent > 0 ? '+' : percent < 0 ? '−' : '±';
    return {
      measured: `${sign}${Math.abs(percent)}% (${fmtRps(large.rps)} vs ${fmtRps(small.rps)} req/s)`,
      met: Math.abs(percent) <= goal.withinPercent,
    };
  }
  const ceiling = figuresOf(run, goal.scenario, 'ceiling');
  const postbox = figuresOf(run, goal.scenario, 'sqlite');
  if (typeof postbox === 'string') return { measured: postbox, met: null };
  if (typeof ceiling === 'string') return { measured: ceiling, met: null };
  if (goal.kind === 'p99') {
    const times = Math.round((10 * postbox.p99Us) / ceiling.p99Us) / 10;
    return {
      measured: `${times.toFixed(1)}× the ceiling's (${fmtLatency(postbox.p99Us)} vs ${fmtLatency(ceiling.p99Us)})`,
      met: times <= goal.atMost,
    };
  }
  const share = Math.round((100 * postbox.rps) / ceiling.rps) / 100;
  return {
    measured: `${share.toFixed(2)}× (${fmtRps(postbox.rps)} vs ${fmtRps(ceiling.rps)} req/s)`,
    met: share >= goal.atLeast,
  };
}

function targetText(goal: Goal): string {
  switch (goal.kind) {
    case 'share':
      return goal.held ? `no lower than ${goal.atLeast.toFixed(2)}×` : `≥ ${goal.atLeast.toFixed(2)}×`;
    case 'p99':
      return `≤ ${goal.atMost}× the ceiling's`;
    case 'growth':
      return `within ${goal.withinPercent}%`;
  }
}

/** Judges every goal against one run's figures, keyed by scenario name. */
export function judgeGoals(run: ReadonlyMap<string, ScenarioFigures>, goals: readonly Goal[] = GOALS): GoalRow[] {
  return goals.map((goal) => ({ goal: goal.label, target: targetText(goal), ...judge(goal, run) }));
}

/** The rows as a markdown table, which also reads well as plain text. */
export function formatGoals(rows: readonly GoalRow[]): string {
  return [
    '| scenario | measured (Postbox on SQLite, this run) | target | |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.goal} | ${r.measured} | ${r.target} | ${r.met === null ? '–' : r.met ? 'met' : '**missed**'} |`),
  ].join('\n');
}
