// S2 — failure at the last flow of N (default 100): the step fails, the completed flows are
// rolled back in reverse. The rollback order is checked exactly before timing, every round:
// libraries that also roll back the failing flow itself (FlowChain by spec F4, node-sagas)
// must do it first, and end with count -1 instead of 0.
import { interleave } from '../lib/inproc.mjs';
import { expectedOutcome } from '../lib/steps.mjs';

export const meta = { id: 'S2', order: 20, title: 'failure at the last flow, in process' };

/** Per mode: chain length (the last flow fails). */
export const config = {
  full: { n: 100 },
  quick: { n: 100 },
  smoke: { n: 20 },
};

export async function run(env) {
  const libs = env.libs;
  const n = env.config.n;
  const scenario = `S2 fail@${n}/${n}`;
  const results = await interleave(env, [{ scenario, n, failAt: n - 1 }], libs);
  const rows = [];
  for (const lib of libs) {
    const slot = results.get(scenario).get(lib.name);
    const expected = expectedOutcome(n, n - 1, lib.rollsBackFailing);
    const base = { scenario, library: lib.name, details: { msPerRunByRound: slot.rounds, n } };
    if (slot.problem !== undefined) {
      env.fail(lib.name, scenario, slot.problem);
      rows.push({ ...base, unit: 'µs/run', value: null, outcome: 'wrong-result', problem: slot.problem });
      rows.push({ ...base, unit: 'rollbacks', value: null, outcome: 'wrong-result', cell: 'WRONG' });
      continue;
    }
    rows.push({ ...base, unit: 'µs/run', value: slot.msPerRun * 1000, outcome: 'ok' });
    rows.push({
      ...base,
      unit: 'rollbacks',
      value: expected.order.length,
      ratioToBaseline: null,
      outcome: 'ok',
      notes: lib.rollsBackFailing ? 'also rolls back the failing flow, first (order verified)' : 'order verified',
      cell: `${expected.order.length} ok${lib.rollsBackFailing ? '*' : ''}`,
    });
  }
  return rows;
}
