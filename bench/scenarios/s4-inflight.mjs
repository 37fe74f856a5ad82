// S4 — many chains in flight: C chains (default 100,000) of 3 flows start at once; the
// second flow of each waits on a gate that opens once all have reached it. With
// --expose-gc, heap after two gc() calls while all are parked, minus heap before, divided
// by C = bytes per in-flight chain (its data, suspended frames, promises, per-run objects
// and its slot in the array of results). One child process per library.
import { adapterByName } from '../lib/adapters.mjs';
import { median, rotate } from '../lib/inproc.mjs';
import { peakRss, tick } from '../lib/proc.mjs';
import { pool, runChild } from '../lib/spawn.mjs';
import { buildSteps, createGate, describe, styleSupportsGate } from '../lib/steps.mjs';

export const meta = { id: 'S4', order: 40, title: 'chains in flight, one child process per library' };

/** Per mode: chains in flight, rounds (median), child timeout. */
export const config = {
  full: { chains: 100_000, rounds: 3, timeoutMs: 120_000, nodeFlags: ['--max-old-space-size=12288'] },
  quick: { chains: 20_000, rounds: 1, timeoutMs: 30_000, nodeFlags: ['--max-old-space-size=12288'] },
  smoke: { chains: 300, rounds: 1, timeoutMs: 20_000, nodeFlags: [] },
};

const MB = 1024 * 1024;

export async function run(env) {
  const cfg = env.config;
  const chains = cfg.chains;
  const scenario = `S4 ${chains >= 1000 ? `${chains / 1000}k` : chains} in flight`;
  const libs = env.libs.filter((l) => styleSupportsGate(l.style));
  const runs = new Map(libs.map((l) => [l.name, []]));
  for (let round = 0; round < cfg.rounds; round++) {
    const order = rotate(libs, round);
    env.log(`  ${scenario} round ${round + 1}/${cfg.rounds}`);
    const outs = await pool(
      order.map((lib) => () =>
        runChild(import.meta.url, { lib: lib.name, chains }, {
          nodeFlags: ['--expose-gc', ...cfg.nodeFlags],
          timeoutMs: cfg.timeoutMs,
        }),
      ),
      env.settings.childConcurrency,
    );
    order.forEach((lib, i) => runs.get(lib.name).push(outs[i]));
  }
  const rows = [];
  for (const lib of libs) {
    const outs = runs.get(lib.name);
    const base = { scenario, library: lib.name };
    const bad = outs.find((o) => o.outcome !== 'ok' || o.result.outcome !== 'ok');
    if (bad !== undefined) {
      const outcome = bad.outcome !== 'ok' ? bad.outcome : bad.result.outcome;
      const problem = bad.result?.problem ?? bad.stderr;
      if (outcome === 'wrong-result' || (lib.group === 'flowchain' && outcome !== 'timeout')) {
        env.fail(lib.name, scenario, `${outcome}: ${problem}`);
      }
      rows.push({ ...base, unit: 'B heap/chain', value: null, outcome, problem, cell: outcome });
      rows.push({ ...base, unit: 'ms total', value: null, outcome, cell: outcome });
      continue;
    }
    const pick = (key) => median(outs.map((o) => o.result[key]));
    const details = { runs: outs.map((o) => o.result) };
    rows.push({ ...base, unit: 'B heap/chain', value: pick('heapPerChain'), outcome: 'ok', details });
    rows.push({ ...base, unit: 'ms total', value: pick('totalMs'), outcome: 'ok' });
    rows.push({ ...base, unit: 'B RSS/chain', value: pick('rssPerChain'), outcome: 'ok', hidden: true });
    rows.push({ ...base, unit: 'ms start loop', value: pick('startLoopMs'), outcome: 'ok', hidden: true });
    rows.push({ ...base, unit: 'ms until all parked', value: pick('parkedMs'), outcome: 'ok', hidden: true });
    rows.push({ ...base, unit: 'ms drain after release', value: pick('drainMs'), outcome: 'ok', hidden: true });
    rows.push({ ...base, unit: 'MB peak RSS', value: pick('peakRss') / MB, outcome: 'ok', hidden: true });
  }
  return rows;
}

/** In the child: start every chain, wait until all are parked, weigh the heap, release. */
export async function child({ lib, chains }) {
  if (typeof globalThis.gc !== 'function') throw new Error('S4 children need --expose-gc');
  const adapter = adapterByName(lib);
  const mod = await adapter.load();
  const gate = createGate();
  const instance = adapter.create(mod, buildSteps(adapter.style, 3, { gate }));
  const run = instance.run;
  const results = [];
  gc();
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  for (let k = 0; k < chains; k++) results.push(run({ count: 0, order: undefined }));
  const startLoopMs = performance.now() - t0;
  while (gate.parked < chains) await tick();
  const parkedMs = performance.now() - t0;
  gc();
  gc();
  const heap1 = process.memoryUsage().heapUsed;
  const rss1 = process.memoryUsage().rss;
  const tOpen = performance.now();
  gate.open();
  let wrong = 0;
  let problem;
  try {
    const datas = await Promise.all(results);
    for (const data of datas) if (data?.count !== 3) wrong++;
    if (wrong > 0) problem = `${wrong} of ${chains} chains ended with a count other than 3`;
  } catch (error) {
    problem = `a chain failed: ${describe(error)}`;
  }
  const drainMs = performance.now() - tOpen;
  return {
    outcome: problem === undefined ? 'ok' : 'wrong-result',
    problem,
    heapPerChain: (heap1 - heap0) / chains,
    rssPerChain: (rss1 - rss0) / chains,
    startLoopMs,
    parkedMs,
    drainMs,
    totalMs: parkedMs + drainMs,
    peakRss: peakRss(),
  };
}
