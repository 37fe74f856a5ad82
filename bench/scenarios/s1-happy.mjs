// S1 — happy path: a chain of N flows that all succeed, every library side by side in one
// process (interleaved rounds, rotated order, medians). N=10 measures the per-chain
// overhead (chains/s); N=1,000 the per-flow cost (ns/flow).
import { interleave } from '../lib/inproc.mjs';

export const meta = { id: 'S1', order: 10, title: 'happy path, in process' };

/** Per mode: chain lengths. */
export const config = {
  full: { sizes: [10, 1000] },
  quick: { sizes: [10, 1000] },
  smoke: { sizes: [10, 50] },
};

export async function run(env) {
  const libs = env.libs;
  const cases = env.config.sizes.map((n) => ({ scenario: `S1 N=${n.toLocaleString('en-US')}`, n, failAt: -1 }));
  const results = await interleave(env, cases, libs);
  const rows = [];
  for (const c of cases) {
    const perChain = c.n <= 10;
    for (const lib of libs) {
      const slot = results.get(c.scenario).get(lib.name);
      const base = {
        scenario: c.scenario,
        library: lib.name,
        unit: perChain ? 'chains/s' : 'ns/flow',
        higherIsBetter: perChain,
        details: { msPerRunByRound: slot.rounds, n: c.n },
      };
      if (slot.problem !== undefined) {
        env.fail(lib.name, c.scenario, slot.problem);
        rows.push({ ...base, value: null, outcome: 'wrong-result', problem: slot.problem });
        continue;
      }
      const value = perChain ? 1000 / slot.msPerRun : (slot.msPerRun * 1e6) / c.n;
      rows.push({ ...base, value, outcome: 'ok' });
    }
  }
  return rows;
}
