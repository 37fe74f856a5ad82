// In-process measurement: every library side by side in one process, in interleaved
// rounds with the library order rotated each round. Each sample is a batch of chain runs
// sized to about `targetMs`; per round we keep the p50 of the samples, and report the
// median across rounds (perf-peers.md, "Method").

import { buildSteps, checkRun, describe, expectedOutcome, newCtx } from './steps.mjs';

const now = () => performance.now();

// The timed loops are compiled per (library, case) with `new Function`, so that each has
// its own type feedback: a loop shared by all libraries would turn its `run()` call site
// megamorphic after the first library and favour whichever was measured first. Each run
// gets a fresh ctx of the one shape the steps expect; the result is checked every run (a
// compare per chain), so a library that skips work cannot come out ahead.
const LOOPS = {
  asyncOk: `return async function batch(k) {
    let bad = 0;
    for (let r = 0; r < k; r++) {
      const data = await run({ count: 0, order: undefined });
      if (data.count !== count) bad++;
    }
    return bad;
  };`,
  asyncFail: `return async function batch(k) {
    let bad = 0;
    for (let r = 0; r < k; r++) {
      const ctx = { count: 0, order: undefined };
      try { await run(ctx); bad++; } catch { if (finalData(ctx).count !== count) bad++; }
    }
    return bad;
  };`,
  syncOk: `return function batch(k) {
    let bad = 0;
    for (let r = 0; r < k; r++) {
      const data = run({ count: 0, order: undefined });
      if (data.count !== count) bad++;
    }
    return bad;
  };`,
  syncFail: `return function batch(k) {
    let bad = 0;
    for (let r = 0; r < k; r++) {
      const ctx = { count: 0, order: undefined };
      try { run(ctx); bad++; } catch { if (finalData(ctx).count !== count) bad++; }
    }
    return bad;
  };`,
};

function makeBatch(instance, expected) {
  const key = (instance.sync ? 'sync' : 'async') + (expected.rejects ? 'Fail' : 'Ok');
  // eslint-disable-next-line no-new-func -- fresh code per library, see above.
  return new Function('run', 'finalData', 'count', LOOPS[key])(instance.run, instance.finalData, expected.count);
}

/** One full run with rollback-order tracking, checked against the expectation. */
export async function verifyOnce(instance, expected) {
  const ctx = newCtx(true);
  let threw = false;
  let error;
  let data;
  try {
    data = instance.sync ? instance.run(ctx) : await instance.run(ctx);
  } catch (e) {
    threw = true;
    error = e;
    data = instance.finalData(ctx);
  }
  return checkRun(expected, { threw, error, data });
}

/** Times one (library, case): warm-up and calibration, then samples; returns the p50 ms per run. */
export async function measure(instance, expected, { targetMs, warmupMs, sampleMs, minSamples }) {
  const batch = makeBatch(instance, expected);
  const sync = instance.sync;
  let bad = 0;
  let k = 1;
  const started = now();
  for (;;) {
    const t0 = now();
    bad += sync ? batch(k) : await batch(k);
    const dt = now() - t0;
    if (now() - started >= warmupMs) {
      k = Math.max(1, Math.min(1e7, Math.round((k * targetMs) / Math.max(dt, 1e-3))));
      break;
    }
    if (dt < targetMs) k = Math.min(k * 2, 1e7);
  }
  const perRun = [];
  const sampling = now();
  while (perRun.length < minSamples || now() - sampling < sampleMs) {
    const t0 = now();
    bad += sync ? batch(k) : await batch(k);
    perRun.push((now() - t0) / k);
  }
  perRun.sort((a, b) => a - b);
  return { msPerRun: perRun[Math.floor(perRun.length / 2)], samples: perRun.length, batch: k, bad };
}

export function median(values) {
  const sorted = values.filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function rotate(list, by) {
  if (list.length === 0) return list;
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/**
 * Runs `cases` ({ scenario, n, failAt }) for every library in `libs`, in `rounds`
 * interleaved rounds. Returns Map<scenario, Map<library, { msPerRun, rounds, problem }>>.
 */
export async function interleave(env, cases, libs) {
  const { rounds, targetMs, warmupMs, sampleMs, minSamples } = env.settings.inproc;
  const instances = new Map();
  const results = new Map(cases.map((c) => [c.scenario, new Map(libs.map((l) => [l.name, { rounds: [], problem: undefined }]))]));
  for (let round = 0; round < rounds; round++) {
    const order = rotate(libs, round);
    env.log(`  round ${round + 1}/${rounds}: ${order.map((l) => l.name).join(' → ')}`);
    for (const c of cases) {
      for (const lib of order) {
        const slot = results.get(c.scenario).get(lib.name);
        if (slot.problem !== undefined) continue;
        const expected = expectedOutcome(c.n, c.failAt, lib.rollsBackFailing);
        try {
          const key = `${c.scenario}/${lib.name}`;
          let instance = instances.get(key);
          if (instance === undefined) {
            const mod = await env.load(lib);
            instance = lib.create(mod, buildSteps(lib.style, c.n, { failAt: c.failAt }));
            instances.set(key, instance);
          }
          const problem = await verifyOnce(instance, expected);
          if (problem !== undefined) {
            slot.problem = problem;
            continue;
          }
          globalThis.gc?.();
          const m = await measure(instance, expected, { targetMs, warmupMs, sampleMs, minSamples });
          if (m.bad > 0) {
            slot.problem = `${m.bad} timed runs ended with a wrong count`;
            continue;
          }
          slot.rounds.push(m.msPerRun);
        } catch (error) {
          slot.problem = `threw: ${describe(error)}`;
        }
      }
    }
  }
  for (const byLib of results.values()) {
    for (const slot of byLib.values()) slot.msPerRun = slot.problem === undefined ? median(slot.rounds) : undefined;
  }
  return results;
}
