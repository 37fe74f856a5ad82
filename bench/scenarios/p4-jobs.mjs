// P4 — the job manager per store (spec §5): jobs per second from submit() to Succeeded for
// a trivial kind, at concurrency 1 and 64, on MemoryJobStore, SqliteJobStore (a temp file,
// WAL) and PostgresJobStore (a fresh schema on FLOWCHAIN_PG_URL, dropped after); and the
// takeover time after a node is SIGKILLed (SQLite and PostgreSQL, heartbeat 100 ms,
// lease 1 s, poll 50 ms). Each store runs in its own child process (fresh store per cell),
// and so does each takeover (its victim in a grandchild). No baseline: raw numbers, in a
// table of their own. The measurements live in bench/jobs.mjs.
//
// Every job is checked (Succeeded, jobResult "ok"; after a takeover: owned by the survivor,
// resumed exactly once, Succeeded), and a wrong answer, a crash or a hang fails the run.
// PostgreSQL unreachable: the cells are reported as skipped with a warning, and under
// CI=true the run fails (the test suite's policy).
import { median, rotate } from '../lib/inproc.mjs';
import { pool, runChild } from '../lib/spawn.mjs';
import {
  PG_URL,
  STORES,
  TAKEOVER_BOUND_MS,
  TAKEOVER_STORES,
  TAKEOVER_TIMINGS,
  libraryOf,
  probePostgres,
  redact,
  storeSite,
} from '../jobs.mjs';

export const meta = { id: 'P4', order: 50, title: 'job manager: jobs per second per store, takeover time' };

const JOBS_URL = new URL('../jobs.mjs', import.meta.url).href;

/**
 * Per mode: timed jobs per store and concurrency (a fresh store per cell; a warm-up of
 * `warmupFraction` of them, at least one per loop, runs first on the same store), rounds
 * (median; one child per store and round), jobs per takeover, and time limits. The limits
 * catch hangs only: they are an order of magnitude above any plausible run.
 */
export const config = {
  full: {
    concurrency: [1, 64],
    jobs: { memory: { 1: 100_000, 64: 100_000 }, sqlite: { 1: 3_000, 64: 4_000 }, postgres: { 1: 600, 64: 1_200 } },
    warmupFraction: 0.1,
    rounds: 3,
    takeoverJobs: 20,
    takeoverRounds: 3,
    waitTimeoutMs: 30_000,
    takeoverDeadlineMs: 20_000,
    timeoutMs: 120_000,
  },
  quick: {
    concurrency: [1, 64],
    jobs: { memory: { 1: 10_000, 64: 10_000 }, sqlite: { 1: 500, 64: 600 }, postgres: { 1: 200, 64: 300 } },
    warmupFraction: 0.1,
    rounds: 1,
    takeoverJobs: 20,
    takeoverRounds: 1,
    waitTimeoutMs: 30_000,
    takeoverDeadlineMs: 20_000,
    timeoutMs: 60_000,
  },
  smoke: {
    concurrency: [1, 64],
    jobs: { memory: { 1: 5, 64: 64 }, sqlite: { 1: 5, 64: 64 }, postgres: { 1: 5, 64: 64 } },
    warmupFraction: 0,
    rounds: 1,
    takeoverJobs: 3,
    takeoverRounds: 1,
    waitTimeoutMs: 15_000,
    takeoverDeadlineMs: 15_000,
    timeoutMs: 30_000,
  },
};

const TABLE = 'P4 — job manager per store (no baseline: raw numbers, higher jobs/s and lower ms are better)';
const throughputScenario = (c) => `P4 jobs/s c=${c}`;
const TAKEOVER = 'P4 takeover';
const OWNED = 'ms until owned';
const SUCCEEDED = 'ms until Succeeded';

export async function run(env) {
  const cfg = env.config;
  if (!env.libs.some((l) => l.group === 'flowchain')) {
    env.log('  P4 skipped: --libs leaves out flowchain');
    return [];
  }
  const cells = (store) => [
    ...cfg.concurrency.map((c) => ({ scenario: throughputScenario(c), unit: 'jobs/s', library: libraryOf(store) })),
    ...(TAKEOVER_STORES.includes(store)
      ? [OWNED, SUCCEEDED].map((unit) => ({ scenario: TAKEOVER, unit, library: libraryOf(store) }))
      : []),
  ];

  // PostgreSQL: probed once; unreachable is an outcome here, and a failure under CI.
  let stores = STORES;
  const skipped = [];
  const unreachable = await probePostgres();
  if (unreachable !== undefined) {
    stores = STORES.filter((s) => s !== 'postgres');
    const where = `${redact(PG_URL)} (${unreachable})`;
    if (process.env.CI === 'true') {
      env.fail(libraryOf('postgres'), 'P4', `PostgreSQL is not reachable at ${where} and CI=true: P4 must measure it in CI`);
    } else {
      env.warn(`P4: PostgreSQL is not reachable at ${where}: its cells are skipped. Start it (scripts/ensure-postgres.sh) or set FLOWCHAIN_PG_URL; under CI=true this fails instead.`);
    }
    const outcome = process.env.CI === 'true' ? 'unreachable' : 'skipped';
    for (const cell of cells('postgres')) skipped.push({ ...cell, value: null, outcome, problem: unreachable, cell: outcome, ratioToBaseline: null, table: TABLE });
  }

  // One child per store and round (a fresh store per cell), then one per takeover.
  const tasks = [];
  for (let round = 0; round < cfg.rounds; round++) {
    for (const store of rotate(stores, round)) tasks.push({ kind: 'throughput', store, round });
  }
  for (let round = 0; round < cfg.takeoverRounds; round++) {
    for (const store of rotate(stores.filter((s) => TAKEOVER_STORES.includes(s)), round)) tasks.push({ kind: 'takeover', store, round });
  }
  const outs = await pool(
    tasks.map((task) => async () => {
      const site = storeSite(task.store);
      env.log(`  P4 ${task.kind} ${task.store}${cfg.rounds > 1 ? ` round ${task.round + 1}` : ''}`);
      try {
        const args =
          task.kind === 'throughput'
            ? {
                task: 'throughput',
                specs: cfg.concurrency.map(() => site.make()),
                cells: cfg.concurrency.map((concurrency) => ({ concurrency, jobs: cfg.jobs[task.store][concurrency] })),
                warmupFraction: cfg.warmupFraction,
                waitTimeoutMs: cfg.waitTimeoutMs,
              }
            : { task: 'takeover', spec: site.make(), jobs: cfg.takeoverJobs, deadlineMs: cfg.takeoverDeadlineMs };
        return await runChild(JOBS_URL, args, { timeoutMs: cfg.timeoutMs });
      } finally {
        await site.cleanup().catch((error) => env.log(`  P4: cleaning up after ${task.store}: ${error.message}`));
      }
    }),
    env.settings.childConcurrency,
  );

  const byTask = (kind, store) => outs.filter((_, i) => tasks[i].kind === kind && tasks[i].store === store);
  const rows = [];
  for (const store of STORES) {
    if (!stores.includes(store)) {
      rows.push(...skipped.filter((row) => row.library === libraryOf(store)));
      continue;
    }
    rows.push(...throughputRows(env, cfg, store, byTask('throughput', store)));
    if (TAKEOVER_STORES.includes(store)) rows.push(...takeoverRows(env, store, byTask('takeover', store)));
  }
  env.note(`P4: jobs/s = timed jobs / time from the first submit() to the last waitFor() at concurrency c (c loops of submit → waitFor), trivial kind (start: async () => 'ok'), default manager options, a fresh store per cell; median of ${cfg.rounds} child process(es) per store.`);
  env.note(`P4 takeover: ${cfg.takeoverJobs} long jobs Running on a node that is SIGKILLed; time from the kill until the survivor owns all of them, and until all ended Succeeded via resume (heartbeat ${TAKEOVER_TIMINGS.heartbeatIntervalMs} ms, lease ${TAKEOVER_TIMINGS.leaseTtlMs.toLocaleString('en-US')} ms, poll ${TAKEOVER_TIMINGS.pollIntervalMs} ms; bound = lease + heartbeat + poll = ${TAKEOVER_BOUND_MS.toLocaleString('en-US')} ms, printed, not asserted). MemoryJobStore lives in one process: no takeover.`);
  return rows;
}

/** Outcome of one child: 'ok', or what went wrong; fails the run unless ok. */
function check(env, library, scenario, out) {
  const outcome = out.outcome !== 'ok' ? out.outcome : out.result.outcome;
  if (outcome === 'ok') return undefined;
  const problem = out.result?.problem ?? out.stderr;
  // A timeout here is a hang (the limits are far above any plausible run), not slowness.
  env.fail(library, scenario, `${outcome}: ${problem}`);
  return { outcome, problem };
}

function throughputRows(env, cfg, store, outs) {
  const library = libraryOf(store);
  const rows = [];
  const bad = outs.map((out) => check(env, library, 'P4 jobs/s', out)).find((b) => b !== undefined);
  cfg.concurrency.forEach((c, i) => {
    const scenario = throughputScenario(c);
    const base = { scenario, library, unit: 'jobs/s', higherIsBetter: true, ratioToBaseline: null, table: TABLE };
    const runs = outs.map((out) => out.result?.cells?.[i]);
    if (bad !== undefined || runs.some((r) => r === undefined)) {
      const outcome = bad?.outcome ?? 'not-run';
      rows.push({ ...base, value: null, outcome, problem: bad?.problem, cell: outcome });
      return;
    }
    const details = {
      jobs: runs[0].jobs,
      concurrency: c,
      warmup: runs[0].warmup,
      runs: runs.map((r) => ({ jobsPerSecond: r.jobsPerSecond, ms: r.ms, latencyMs: r.latencyMs })),
    };
    rows.push({ ...base, value: median(runs.map((r) => r.jobsPerSecond)), outcome: 'ok', details });
    rows.push({ ...base, unit: 'ms p50 latency', higherIsBetter: false, value: median(runs.map((r) => r.latencyMs.p50)), outcome: 'ok', hidden: true });
    rows.push({ ...base, unit: 'ms p99 latency', higherIsBetter: false, value: median(runs.map((r) => r.latencyMs.p99)), outcome: 'ok', hidden: true });
  });
  return rows;
}

function takeoverRows(env, store, outs) {
  const library = libraryOf(store);
  const base = { scenario: TAKEOVER, library, ratioToBaseline: null, table: TABLE };
  const bad = outs.map((out) => check(env, library, TAKEOVER, out)).find((b) => b !== undefined);
  if (bad !== undefined) {
    return [OWNED, SUCCEEDED].map((unit) => ({ ...base, unit, value: null, outcome: bad.outcome, problem: bad.problem, cell: bad.outcome }));
  }
  const runs = outs.map((out) => out.result);
  const pick = (key) => median(runs.map((r) => r[key]));
  const details = {
    jobs: runs[0].jobs,
    timings: TAKEOVER_TIMINGS,
    boundMs: TAKEOVER_BOUND_MS,
    runs: runs.map(({ ownedMs, succeededMs, firstClaimMs, reapedMs, victimExitMs }) => ({ ownedMs, succeededMs, firstClaimMs, reapedMs, victimExitMs })),
  };
  return [
    { ...base, unit: OWNED, value: pick('ownedMs'), outcome: 'ok', details, cellSuffix: ` (bound ${TAKEOVER_BOUND_MS.toLocaleString('en-US')})` },
    { ...base, unit: SUCCEEDED, value: pick('succeededMs'), outcome: 'ok' },
    { ...base, unit: 'ms until reaped', value: pick('reapedMs'), outcome: 'ok', hidden: true },
  ];
}
