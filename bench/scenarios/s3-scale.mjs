// S3 — scale: one chain of 100,000 and 1,000,000 synchronous-body flows (spec F13, P3),
// on the happy path and failing at the last flow (then every flow rolls back, order
// checked). Each library runs in its own child process: peak RSS belongs to it alone, and
// a stack overflow, an out-of-memory or a hang is reported as such instead of stopping the
// run. One cold run per child: the time includes JIT warm-up and GC, so it is indicative.
import { adapterByName } from '../lib/adapters.mjs';
import { median, rotate } from '../lib/inproc.mjs';
import { peakRss } from '../lib/proc.mjs';
import { pool, runChild } from '../lib/spawn.mjs';
import { buildSteps, checkRun, describe, expectedOutcome, newCtx } from '../lib/steps.mjs';

export const meta = { id: 'S3', order: 30, title: 'scale, one child process per library' };

const BIG_HEAP = ['--max-old-space-size=12288'];
/**
 * Per mode: chain lengths; rounds (median of that many cold runs) below `largeFrom` and
 * from it; which libraries run from `largeFrom` (undefined: all) and which of those get more
 * than one round there (the slow peers take tens of seconds per 1M run); child timeout.
 */
export const config = {
  full: {
    sizes: [100_000, 1_000_000],
    rounds: 3,
    largeFrom: 1_000_000,
    largeRounds: 3,
    largeRoundsLibs: ['baseline-async', 'baseline-sync-loop', 'flowchain', 'flowchain-cb', 'node-sagas'],
    largeLibs: undefined,
    timeoutMs: 120_000,
    nodeFlags: BIG_HEAP,
  },
  quick: {
    sizes: [100_000, 1_000_000],
    rounds: 1,
    largeFrom: 1_000_000,
    largeRounds: 1,
    largeLibs: ['baseline-async', 'baseline-sync-loop', 'flowchain', 'flowchain-cb'],
    timeoutMs: 30_000,
    nodeFlags: BIG_HEAP,
  },
  smoke: { sizes: [2_000], rounds: 1, largeFrom: Infinity, largeRounds: 1, largeLibs: undefined, timeoutMs: 20_000, nodeFlags: [] },
};

const MB = 1024 * 1024;
const short = (n) => (n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : `${n}`);

export async function run(env) {
  const cfg = env.config;
  const rows = [];
  for (const n of cfg.sizes) {
    const libs = env.libs.filter((l) => cfg.largeLibs === undefined || n < cfg.largeFrom || cfg.largeLibs.includes(l.name));
    for (const fail of [false, true]) {
      const scenario = `S3 ${short(n)} ${fail ? 'fail@last' : 'happy'}`;
      const rounds = n >= cfg.largeFrom ? cfg.largeRounds : cfg.rounds;
      const runs = new Map(libs.map((l) => [l.name, []]));
      for (let round = 0; round < rounds; round++) {
        const order = rotate(libs, round).filter(
          (l) => round === 0 || n < cfg.largeFrom || cfg.largeRoundsLibs === undefined || cfg.largeRoundsLibs.includes(l.name),
        );
        env.log(`  ${scenario} round ${round + 1}/${rounds}`);
        const outs = await pool(
          order.map((lib) => () =>
            runChild(import.meta.url, { lib: lib.name, n, fail }, { nodeFlags: cfg.nodeFlags, timeoutMs: cfg.timeoutMs }),
          ),
          env.settings.childConcurrency,
        );
        order.forEach((lib, i) => runs.get(lib.name).push(outs[i]));
      }
      for (const lib of libs) rows.push(...summarize(env, scenario, lib, runs.get(lib.name), cfg.timeoutMs));
    }
  }
  return rows;
}

function outcomeOf(out) {
  if (out.outcome !== 'ok') return out.outcome;
  return out.result.outcome;
}

function summarize(env, scenario, lib, outs, timeoutMs) {
  const base = { scenario, library: lib.name };
  const bad = outs.find((o) => outcomeOf(o) !== 'ok');
  const peak = median(outs.map((o) => o.peakRss));
  const peakMB = peak === undefined ? undefined : peak / MB;
  const details = {
    runs: outs.map((o) => ({
      outcome: outcomeOf(o),
      ms: o.result?.ms,
      buildMs: o.result?.buildMs,
      loadedRssMB: o.result ? o.result.loadedRss / MB : undefined,
      peakRssMB: o.peakRss / MB,
      problem: o.result?.problem,
      stderr: o.outcome === 'ok' ? undefined : o.stderr,
    })),
  };
  if (bad !== undefined) {
    let outcome = outcomeOf(bad);
    const problem = bad.result?.problem ?? bad.stderr;
    if (outcome === 'timeout') outcome = `timeout>${Math.round(timeoutMs / 1000)}s`;
    const expectedOverflow = outcome === 'stack-overflow' && lib.expectStackOverflow;
    // A wrong answer fails the benchmark for anyone; FlowChain must also finish (F13),
    // short of a timeout, which would be a speed verdict.
    if (outcome === 'wrong-result' || (lib.group === 'flowchain' && !outcome.startsWith('timeout'))) {
      env.fail(lib.name, scenario, `${outcome}: ${problem}`);
    }
    return [
      {
        ...base,
        unit: 'ms',
        value: null,
        outcome,
        problem: expectedOverflow ? undefined : problem,
        notes: expectedOverflow ? 'expected: naive recursion' : undefined,
        details,
        cell: `${outcome}${peakMB === undefined || peakMB === 0 ? '' : ` ${Math.round(peakMB)}MB`}`,
      },
      { ...base, unit: 'MB peak RSS', value: peakMB ?? null, outcome, hidden: true, ratioToBaseline: null },
    ];
  }
  const ms = median(outs.map((o) => o.result.ms));
  return [
    { ...base, unit: 'ms', value: ms, outcome: 'ok', details, cellSuffix: ` ${Math.round(peakMB)}MB` },
    { ...base, unit: 'MB peak RSS', value: peakMB, outcome: 'ok', hidden: true },
  ];
}

/** In the child: build the steps (untimed), then time one cold run and check it. */
export async function child({ lib, n, fail }) {
  const adapter = adapterByName(lib);
  const mod = await adapter.load();
  const loadedRss = process.memoryUsage().rss;
  const failAt = fail ? n - 1 : -1;
  const b0 = performance.now();
  const instance = adapter.create(mod, buildSteps(adapter.style, n, { failAt }));
  const buildMs = performance.now() - b0;
  const ctx = newCtx(true);
  let threw = false;
  let error;
  let data;
  const t0 = performance.now();
  try {
    data = instance.sync ? instance.run(ctx) : await instance.run(ctx);
  } catch (e) {
    threw = true;
    error = e;
  }
  const ms = performance.now() - t0;
  if (threw) {
    try {
      data = instance.finalData(ctx);
    } catch {
      data = undefined;
    }
  }
  const problem = checkRun(expectedOutcome(n, failAt, adapter.rollsBackFailing), { threw, error, data });
  const outcome = problem === undefined ? 'ok' : problem === 'stack-overflow' ? 'stack-overflow' : 'wrong-result';
  return {
    outcome,
    problem: problem === 'stack-overflow' ? describe(error) : problem,
    ms,
    buildMs,
    loadedRss,
    peakRss: peakRss(),
  };
}
