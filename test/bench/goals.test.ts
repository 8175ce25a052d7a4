/**
 * Issue 12's target table: each figure judged at the precision it is shown, and a row whose
 * scenario did not run, or ran with failures, says so instead of judging.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatGoals, judgeGoals, type ScenarioFigures } from '../../bench/lib/goals.js';

const figures = (rps: number, p99Us = 1000, invalid?: string) => ({ rps, p99Us, ...(invalid ? { invalid } : {}) });

function row(run: Map<string, ScenarioFigures>, goal: string) {
  const r = judgeGoals(run).find((x) => x.goal === goal);
  assert.ok(r, `no row ${goal}`);
  return r;
}

describe('bench goals', () => {
  it('judges a share of the ceiling at the two decimals it shows', () => {
    // 0.596 shows as 0.60×, and 0.60× meets "≥ 0.60×".
    const met = row(new Map([['legacy-post', { ceiling: figures(10_000), sqlite: figures(5_960) }]]), 'legacy post');
    assert.equal(met.measured, '0.60× (5,960 vs 10,000 req/s)');
    assert.equal(met.target, '≥ 0.60×');
    assert.equal(met.met, true);
    const missed = row(new Map([['legacy-post', { ceiling: figures(10_000), sqlite: figures(5_940) }]]), 'legacy post');
    assert.equal(missed.measured, '0.59× (5,940 vs 10,000 req/s)');
    assert.equal(missed.met, false);
  });

  it('holds the reads to the last full run\'s shares', () => {
    const r = row(new Map([['get-1000', { ceiling: figures(1_000), sqlite: figures(1_700) }]]), 'get of 1,000');
    assert.equal(r.target, 'no lower than 1.61×');
    assert.equal(r.met, true);
  });

  it('compares the send p99 with the ceiling\'s, lower being better', () => {
    const run = new Map([['legacy-post', { ceiling: figures(30_000, 9_800), sqlite: figures(7_000, 39_630) }]]);
    const r = row(run, 'send p99 (legacy post)');
    assert.equal(r.measured, '4.0× the ceiling\'s (39.63 ms vs 9.80 ms)');
    assert.equal(r.target, '≤ 2× the ceiling\'s');
    assert.equal(r.met, false);
  });

  it('takes the store-size row within 10% either way, from Postbox alone', () => {
    const run = (large: number) => new Map([
      ['legacy-post@1k', { sqlite: figures(8_547) }],
      ['legacy-post@1M', { sqlite: figures(large) }],
    ]);
    const slower = row(run(7_229), 'legacy post at 1,000,000 stored vs at 1,000');
    assert.equal(slower.measured, '−15% (7,229 vs 8,547 req/s)');
    assert.equal(slower.met, false);
    assert.equal(row(run(7_800), 'legacy post at 1,000,000 stored vs at 1,000').met, true);
    assert.equal(row(run(9_500), 'legacy post at 1,000,000 stored vs at 1,000').met, false);
  });

  it('says why a row is not judged', () => {
    const run = new Map<string, ScenarioFigures>([
      ['v1-post', { sqlite: figures(8_000) }],
      ['get-20', { ceiling: figures(30_000), sqlite: figures(20_000, 1000, '3 failed requests') }],
    ]);
    const rows = judgeGoals(run);
    const by = (goal: string) => rows.find((r) => r.goal === goal)!;
    assert.match(by('chat mix (send, then read a page)').measured, /^not run \(chat-mix was not in this run\)$/);
    assert.match(by('v1 post').measured, /no ceiling target/);
    assert.match(by('get of 20').measured, /^invalid .*3 failed requests/);
    assert.equal(by('legacy post at 1,000,000 stored vs at 1,000').measured, 'not run (needs --store-size)');
    for (const goal of ['chat mix (send, then read a page)', 'v1 post', 'get of 20']) assert.equal(by(goal).met, null);
    // Every one of the rows is printed, judged or not.
    const table = formatGoals(rows).split('\n');
    assert.equal(table.length, 2 + 8);
    assert.match(table.find((l) => l.startsWith('| get of 20 '))!, /\| – \|$/);
  });
});
