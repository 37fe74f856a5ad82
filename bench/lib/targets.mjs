// The targets of SPEC §5 (P1–P3), read off a run's rows. A verdict is printed and written
// to the JSON; it never changes the exit code (speed is reported, not asserted). A target
// whose rows are missing (a partial run: --only, --libs, smoke mode) is reported as such.

const PEER_GROUP = 'peer';

/** The value of one (scenario, library, unit) cell, or undefined. */
function cell(rows, scenario, library, unit) {
  const row = rows.find((r) => r.scenario === scenario && r.library === library && r.unit === unit);
  return row !== undefined && row.outcome === 'ok' && typeof row.value === 'number' ? row.value : undefined;
}

function fmt(value, digits = 2) {
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/**
 * Verdicts for P1 (promise and callback style), P2 and P3 from `rows`.
 * `adapters` are the libraries measured (for the peer list). Returns
 * [{ id, target, value, met }] where met is true, false, or null (not measured).
 */
export function evaluateTargets(rows, adapters) {
  const verdicts = [];
  const missing = (id, target) => verdicts.push({ id, target, value: 'not measured in this run', met: null });

  // P1, promise style: within 1.3× of the async loop, and ahead of every peer.
  {
    const id = 'P1';
    const target = '1,000 promise-style flows within 1.3x of baseline-async, ahead of every peer';
    const scenario = 'S1 N=1,000';
    const base = cell(rows, scenario, 'baseline-async', 'ns/flow');
    const ours = cell(rows, scenario, 'flowchain', 'ns/flow');
    if (base === undefined || ours === undefined) missing(id, target);
    else {
      const ratio = ours / base;
      const peers = adapters
        .filter((a) => a.group === PEER_GROUP)
        .map((a) => ({ name: a.name, value: cell(rows, scenario, a.name, 'ns/flow') }))
        .filter((p) => p.value !== undefined);
      const behind = peers.filter((p) => p.value <= ours);
      const fastest = peers.reduce((best, p) => (best === undefined || p.value < best.value ? p : best), undefined);
      const peerText = fastest === undefined ? 'no peer measured' : `fastest peer ${fastest.name} ${fmt(fastest.value / base)}x`;
      verdicts.push({
        id,
        target,
        value: `${fmt(ratio)}x (${fmt(ours, 1)} vs ${fmt(base, 1)} ns/flow); ${peerText}${behind.length > 0 ? `; behind ${behind.map((p) => p.name).join(', ')}` : ''}`,
        met: ratio <= 1.3 && behind.length === 0,
      });
    }
  }

  // P1, callback style: within 5× of the synchronous loop.
  ratioTarget(verdicts, rows, {
    id: 'P1 callback',
    target: 'callback-style flows completing synchronously within 5x of baseline-sync-loop',
    scenario: 'S1 N=1,000',
    unit: 'ns/flow',
    baseline: 'baseline-sync-loop',
    library: 'flowchain-cb',
    limit: 5,
    digits: 2,
  });

  // P2: heap per in-flight chain within 1.5× of the async loop.
  ratioTarget(verdicts, rows, {
    id: 'P2',
    target: 'heap per in-flight chain (S4) within 1.5x of baseline-async',
    scenario: 'S4 100k in flight',
    unit: 'B heap/chain',
    baseline: 'baseline-async',
    library: 'flowchain',
    limit: 1.5,
    digits: 0,
  });

  // P3: 1,000,000 flows complete, time per flow at 1M within 1.5× of that at 100k.
  {
    const id = 'P3';
    const target = 'S3 completes at 1,000,000 flows; per-flow time at 1M within 1.5x of 100k (both styles, happy and failing)';
    const parts = [];
    let met = true;
    let measured = false;
    for (const library of ['flowchain', 'flowchain-cb']) {
      for (const kind of ['happy', 'fail@last']) {
        const small = cell(rows, `S3 100k ${kind}`, library, 'ms');
        const large = cell(rows, `S3 1M ${kind}`, library, 'ms');
        if (small === undefined || large === undefined) continue;
        measured = true;
        const growth = large / 1_000_000 / (small / 100_000);
        if (growth > 1.5) met = false;
        parts.push(`${library} ${kind} ${fmt(growth)}`);
      }
    }
    if (!measured) missing(id, target);
    else verdicts.push({ id, target, value: `per-flow time 1M / 100k: ${parts.join(', ')}`, met });
  }
  return verdicts;
}

/** A target on one ratio: `library` over `baseline` in one cell, at most `limit`. */
function ratioTarget(verdicts, rows, { id, target, scenario, unit, baseline, library, limit, digits }) {
  const base = cell(rows, scenario, baseline, unit);
  const ours = cell(rows, scenario, library, unit);
  if (base === undefined || ours === undefined) {
    verdicts.push({ id, target, value: 'not measured in this run', met: null });
    return;
  }
  const ratio = ours / base;
  verdicts.push({ id, target, value: `${fmt(ratio)}x (${fmt(ours, digits)} vs ${fmt(base, digits)} ${unit})`, met: ratio <= limit });
}

/** The verdicts as terminal lines. */
export function formatTargets(verdicts) {
  const mark = (met) => (met === true ? 'met' : met === false ? 'MISSED' : 'n/a');
  return verdicts.map((v) => `- ${v.id} [${mark(v.met)}] ${v.target}: ${v.value}`).join('\n');
}
