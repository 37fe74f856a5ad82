// P4 measurements (spec §5): the job manager on each store, against the BUILT package
// (the snapshot of dist/ the runner makes; dist/ itself when run alone).
//
// 1. Throughput: jobs per second from submit() to Succeeded for a trivial kind
//    (`start: async () => 'ok'`), at concurrency 1 (submit, waitFor, repeat) and C
//    (C such loops in parallel), on a fresh store per cell. Every job is checked: it must
//    end Succeeded with jobResult '"ok"', and the store must hold exactly the jobs submitted.
// 2. Takeover: a survivor manager (B) runs here; a victim manager (A) in a child process
//    submits N long jobs of a kind with `resume`, reports them Running, and is SIGKILLed.
//    B measures the time from the kill until it owns every one of those jobs (its
//    `job:claim` events: the claim is committed) and until every one ended Succeeded via
//    resume; each job must be resumed exactly once, by B, and never started by B.
//
// The scenario module bench/scenarios/p4-jobs.mjs runs each store in its own child process
// (bench/lib/child.mjs calls `child(args)` below) and turns the results into rows. Alone:
//
//   node bench/jobs.mjs throughput --store=memory|sqlite|postgres [--jobs=2000] [--concurrency=64]
//   node bench/jobs.mjs takeover --store=sqlite|postgres [--jobs=20]
//
// (add --cpu-prof to profile; PostgreSQL from FLOWCHAIN_PG_URL). Nothing here asserts speed:
// the only time limits are liveness deadlines far beyond any plausible run.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { distUnderTest } from './lib/adapters.mjs';
import { peakRss } from './lib/proc.mjs';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'lib', 'child.mjs');

/** The stores P4 measures, and the library name each is reported under. */
export const STORES = ['memory', 'sqlite', 'postgres'];
export const TAKEOVER_STORES = ['sqlite', 'postgres'];
export const libraryOf = (store) => `flowchain-${store}`;

/** PostgreSQL the benchmark uses (as the test suite: FLOWCHAIN_PG_URL or the local default). */
export const PG_URL = process.env.FLOWCHAIN_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** Every schema the benchmark creates starts with this (the tests use fc_test_). */
export const SCHEMA_PREFIX = 'fc_bench_';

/** Scaled-down liveness timings of the takeover measurement (as the J8 tests). */
export const TAKEOVER_TIMINGS = { heartbeatIntervalMs: 100, leaseTtlMs: 1_000, pollIntervalMs: 50 };
/** The configured takeover bound: a lease, a heartbeat (reaping runs at most once per heartbeat) and a poll. */
export const TAKEOVER_BOUND_MS = TAKEOVER_TIMINGS.leaseTtlMs + TAKEOVER_TIMINGS.heartbeatIntervalMs + TAKEOVER_TIMINGS.pollIntervalMs;

const TRIVIAL = 'P4Trivial';
const LONG = 'P4Long';
const SURVIVOR = 'p4-survivor';
const VICTIM = 'p4-victim';

export function redact(url) {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}

// ---- loading the build and opening stores ------------------------------------------------

async function loadBuild() {
  const dir = dirname(distUnderTest());
  const load = async (file) => {
    const path = join(dir, file);
    try {
      return await import(pathToFileURL(path).href);
    } catch (error) {
      throw new Error(`cannot load ${path} (build it with \`npx tsup\`): ${error.message}`);
    }
  };
  const [index, sqlite, postgres] = await Promise.all([load('index.js'), load('sqlite.js'), load('postgres.js')]);
  return { JobManager: index.JobManager, MemoryJobStore: index.MemoryJobStore, SqliteJobStore: sqlite.SqliteJobStore, PostgresJobStore: postgres.PostgresJobStore };
}

/**
 * A store spec is JSON (it crosses process boundaries):
 * { kind: 'memory' } | { kind: 'sqlite', filename } | { kind: 'postgres', connectionString, schema }.
 */
function openStore(build, spec) {
  switch (spec.kind) {
    case 'memory':
      return new build.MemoryJobStore();
    case 'sqlite':
      // The store sets journal_mode=WAL and synchronous=FULL itself.
      return new build.SqliteJobStore({ filename: spec.filename });
    case 'postgres':
      // Default pool size (10), as users get it.
      return new build.PostgresJobStore({ connectionString: spec.connectionString, schema: spec.schema, applicationName: 'flowchain-bench' });
    default:
      throw new Error(`unknown store kind ${spec.kind}`);
  }
}

/** A fresh store location for `kind`: a spec maker (one fresh store per call) and a cleanup. */
export function storeSite(kind) {
  if (kind === 'memory') return { make: () => ({ kind }), cleanup: async () => {} };
  if (kind === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'flowchain-bench-p4-'));
    let n = 0;
    return {
      dir,
      make: () => ({ kind, filename: join(dir, `jobs-${n++}.db`) }),
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const base = `${SCHEMA_PREFIX}${randomBytes(5).toString('hex')}`;
  let n = 0;
  return {
    base,
    make: () => ({ kind, connectionString: PG_URL, schema: `${base}_${n++}` }),
    cleanup: () => dropSchemas(base),
  };
}

async function loadPg() {
  const mod = await import('pg');
  return mod.default ?? mod;
}

/** Undefined when PostgreSQL answers at PG_URL, else the reason (as test/helpers/pg.ts probes). */
export async function probePostgres() {
  let pg;
  try {
    pg = await loadPg();
  } catch (error) {
    return `the pg package cannot be loaded: ${error.message}`;
  }
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message || error.name : String(error);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Drops every schema whose name starts with `base` (the cells of one child). */
export async function dropSchemas(base) {
  if (!base.startsWith(SCHEMA_PREFIX) || !/^[a-z0-9_]+$/.test(base)) throw new Error(`refusing to drop schemas like ${base}`);
  const pg = await loadPg();
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3_000, application_name: 'flowchain-bench-admin' });
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query(`SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, [base]);
    for (const { nspname } of rows) await client.query(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`);
    return rows.length;
  } finally {
    await client.end().catch(() => {});
  }
}

// ---- throughput ----------------------------------------------------------------------------

const quantile = (sorted, q) => (sorted.length === 0 ? undefined : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]);

/**
 * One cell: a fresh manager on a fresh store; `warmup` jobs, then `jobs` jobs timed, spread
 * over `concurrency` submit → waitFor loops. Returns the rate and what was wrong, if anything.
 */
async function throughputCell(build, spec, { jobs, concurrency, warmup, waitTimeoutMs }) {
  const store = openStore(build, spec);
  const manager = new build.JobManager({ store, nodeId: `p4-${spec.kind}` });
  manager.register(TRIVIAL, { start: async () => 'ok' });
  const problems = [];
  const latencies = new Float64Array(jobs);
  let submitted = 0;
  try {
    await manager.start();
    const loops = async (count, record) => {
      let next = 0;
      const loop = async () => {
        while (next < count && problems.length === 0) {
          const i = next++;
          const t0 = performance.now();
          let job;
          try {
            submitted++;
            job = await manager.submit({ jobName: TRIVIAL });
            const done = await manager.waitFor(job.uuid, { timeoutMs: waitTimeoutMs });
            if (done.state !== 'Succeeded' || done.jobResult !== '"ok"') {
              problems.push(`job ${done.uuid} ended ${done.state} with jobResult ${done.jobResult}`);
            }
          } catch (error) {
            problems.push(`job ${job?.uuid ?? '(submit)'}: ${error?.code ?? ''} ${error?.message ?? error}`);
          }
          if (record) latencies[i] = performance.now() - t0;
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, count) }, loop));
    };
    await loops(warmup, false);
    const t0 = performance.now();
    await loops(jobs, true);
    const ms = performance.now() - t0;
    if (problems.length === 0) {
      // The store holds exactly the jobs submitted, every one Succeeded.
      const total = await manager.count();
      const succeeded = await manager.count({ state: 'Succeeded' });
      if (total !== submitted || succeeded !== submitted) {
        problems.push(`the store holds ${total} jobs, ${succeeded} Succeeded; ${submitted} were submitted`);
      }
    }
    await manager.stop();
    const sorted = Array.from(latencies).sort((a, b) => a - b);
    return {
      jobs,
      concurrency,
      warmup,
      ms,
      jobsPerSecond: (jobs / ms) * 1000,
      latencyMs: { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) },
      problem: problems.length === 0 ? undefined : `${problems.length} wrong: ${problems.slice(0, 3).join('; ')}`,
    };
  } finally {
    await manager.stop().catch(() => {});
    await store.close();
  }
}

/** In a child: every cell of one store, each on a fresh store made by `specs[i]`. */
async function throughputChild({ specs, cells, warmupFraction, waitTimeoutMs }) {
  const build = await loadBuild();
  const results = [];
  for (let i = 0; i < cells.length; i++) {
    const { jobs, concurrency } = cells[i];
    const warmup = Math.max(concurrency, Math.min(2_000, Math.round(jobs * warmupFraction)));
    const result = await throughputCell(build, specs[i], { jobs, concurrency, warmup, waitTimeoutMs });
    results.push(result);
    if (result.problem !== undefined) break;
  }
  const bad = results.find((r) => r.problem !== undefined);
  return { outcome: bad === undefined ? 'ok' : 'wrong-result', problem: bad?.problem, cells: results, peakRss: peakRss() };
}

// ---- takeover ------------------------------------------------------------------------------

/** In the victim process: manager A submits `jobs` long jobs, reports them Running, then waits to be killed. */
async function victimChild({ spec, jobs }) {
  // Never outlive the process that will kill us (it holds our stdin), nor run forever.
  process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume();
  setTimeout(() => process.exit(3), 120_000);
  const build = await loadBuild();
  const store = openStore(build, spec);
  const manager = new build.JobManager({ store, nodeId: VICTIM, ...TAKEOVER_TIMINGS });
  let started = 0;
  let allStarted;
  const running = new Promise((resolve) => {
    allStarted = resolve;
  });
  manager.register(LONG, {
    async start(_job, ctx) {
      if (++started === jobs) allStarted();
      await sleep(600_000, undefined, { signal: ctx.signal });
      return 'finished-by-victim';
    },
    async resume() {
      return 'resumed-by-victim';
    },
  });
  await manager.start();
  const uuids = [];
  for (let i = 0; i < jobs; i++) uuids.push((await manager.submit({ jobName: LONG })).uuid);
  await running;
  process.stdout.write(`running ${JSON.stringify(uuids)}\n`);
  return new Promise(() => {}); // the stdin and exit timers keep the process alive until the kill
}

/** `promise`, or a rejection with `message` after `ms` (the timer is cleared either way). */
function within(promise, ms, message) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

function spawnVictim(spec, jobs) {
  const proc = spawn(process.execPath, [CHILD, import.meta.url, JSON.stringify({ task: 'victim', spec, jobs })], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (s) => {
    stderr = (stderr + s).slice(-10_000);
  });
  const exited = new Promise((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })));
  const running = new Promise((resolve, reject) => {
    proc.stdout.setEncoding('utf8').on('data', (s) => {
      stdout += s;
      const line = stdout.split('\n').find((l) => l.startsWith('running '));
      if (line !== undefined) resolve(JSON.parse(line.slice('running '.length)));
    });
    void exited.then(({ code, signal }) => reject(new Error(`the victim exited (${code ?? signal}) before its jobs ran: ${stderr.trim().split('\n').slice(-5).join(' | ')}`)));
  });
  return { proc, running, exited };
}

/** In a child: survivor B here, victim A in a grandchild; measures the takeover once. */
async function takeoverChild({ spec, jobs, deadlineMs }) {
  const build = await loadBuild();
  const store = openStore(build, spec);
  const manager = new build.JobManager({ store, nodeId: SURVIVOR, ...TAKEOVER_TIMINGS });
  const resumes = new Map();
  const claims = new Map();
  const succeeded = new Map();
  let starts = 0;
  let deadAt;
  let watched;
  let allDone;
  const done = new Promise((resolve) => {
    allDone = resolve;
  });
  const check = () => {
    if (watched !== undefined && claims.size === watched.size && succeeded.size === watched.size) allDone();
  };
  manager.register(LONG, {
    async start(_job, ctx) {
      starts++;
      await sleep(600_000, undefined, { signal: ctx.signal });
      return 'finished-by-survivor';
    },
    async resume(job) {
      resumes.set(job.uuid, (resumes.get(job.uuid) ?? 0) + 1);
      return 'resumed';
    },
  });
  manager.on('node:dead', () => {
    deadAt ??= performance.now();
  });
  manager.on('job:claim', (job, reason) => {
    if (watched?.has(job.uuid) && !claims.has(job.uuid)) claims.set(job.uuid, { at: performance.now(), reason });
    check();
  });
  manager.on('job:state', (job) => {
    if (job.state === 'Succeeded' && watched?.has(job.uuid) && !succeeded.has(job.uuid)) succeeded.set(job.uuid, performance.now());
    check();
  });
  let victim;
  const problems = [];
  try {
    // B first: it creates the schema, and it is up (as a survivor is) before A dies.
    await manager.start();
    victim = spawnVictim(spec, jobs);
    const uuids = await within(victim.running, 30_000, 'the victim did not report its jobs Running within 30 s');
    watched = new Set(uuids);
    const before = await store.queryJobs({ uuid: uuids });
    const notRunning = before.filter((job) => job.state !== 'Running' || job.managementNodeUuid !== VICTIM);
    if (before.length !== jobs || notRunning.length > 0) {
      throw new Error(`before the kill, ${before.length - notRunning.length} of ${jobs} jobs are Running on ${VICTIM}`);
    }
    const killedAt = performance.now();
    victim.proc.kill('SIGKILL');
    const exit = await victim.exited;
    const exitMs = performance.now() - killedAt;
    const timedOut = await within(done, deadlineMs, 'deadline').then(
      () => false,
      () => true,
    );
    if (timedOut) {
      problems.push(`within ${deadlineMs} ms of the kill, ${claims.size} of ${jobs} jobs were claimed by ${SURVIVOR} and ${succeeded.size} ended Succeeded`);
    }
    // Verify in the store, not only in the events.
    const after = await store.queryJobs({ uuid: uuids });
    for (const job of after) {
      const n = resumes.get(job.uuid) ?? 0;
      if (job.state !== 'Succeeded' || job.managementNodeUuid !== SURVIVOR || job.jobResult !== '"resumed"' || n !== 1) {
        problems.push(`job ${job.uuid}: ${job.state} on ${job.managementNodeUuid}, jobResult ${job.jobResult}, resumed ${n} times`);
      }
      if (claims.has(job.uuid) && claims.get(job.uuid).reason !== 'orphan') problems.push(`job ${job.uuid} was claimed as ${claims.get(job.uuid).reason}`);
    }
    if (after.length !== jobs) problems.push(`${after.length} of ${jobs} jobs found after the takeover`);
    if (starts !== 0) problems.push(`${SURVIVOR} started ${starts} jobs instead of resuming them`);
    const unexpected = [...resumes.keys()].filter((uuid) => !watched.has(uuid));
    if (unexpected.length > 0) problems.push(`${SURVIVOR} resumed ${unexpected.length} unknown jobs`);
    const latest = (map, pick) => Math.max(...[...map.values()].map(pick));
    return {
      outcome: problems.length === 0 ? 'ok' : 'wrong-result',
      problem: problems.length === 0 ? undefined : problems.slice(0, 4).join('; '),
      jobs,
      ownedMs: claims.size === jobs ? latest(claims, (c) => c.at) - killedAt : undefined,
      succeededMs: succeeded.size === jobs ? latest(succeeded, (t) => t) - killedAt : undefined,
      firstClaimMs: claims.size > 0 ? Math.min(...[...claims.values()].map((c) => c.at)) - killedAt : undefined,
      reapedMs: deadAt === undefined ? undefined : deadAt - killedAt,
      victimExitMs: exitMs,
      victimExit: exit,
      boundMs: TAKEOVER_BOUND_MS,
      timings: TAKEOVER_TIMINGS,
      peakRss: peakRss(),
    };
  } catch (error) {
    return { outcome: 'wrong-result', problem: error.message, jobs, boundMs: TAKEOVER_BOUND_MS };
  } finally {
    if (victim !== undefined && victim.proc.exitCode === null && victim.proc.signalCode === null) victim.proc.kill('SIGKILL');
    await manager.stop({ timeoutMs: 2_000 }).catch(() => {});
    await store.close().catch(() => {});
  }
}

/** Entry point of P4's child processes (bench/lib/child.mjs calls it). */
export async function child(args) {
  switch (args.task) {
    case 'throughput':
      return throughputChild(args);
    case 'takeover':
      return takeoverChild(args);
    case 'victim':
      return victimChild(args);
    default:
      throw new Error(`unknown P4 task ${args.task}`);
  }
}

// ---- alone: node bench/jobs.mjs throughput|takeover --store=… ------------------------------

async function main(argv) {
  const [task, ...rest] = argv;
  const opts = Object.fromEntries(rest.map((a) => a.replace(/^--/, '').split('=')));
  const kind = opts.store ?? 'memory';
  if (!['throughput', 'takeover'].includes(task) || !STORES.includes(kind) || (task === 'takeover' && kind === 'memory')) {
    console.error('usage: node bench/jobs.mjs throughput --store=memory|sqlite|postgres [--jobs=N] [--concurrency=C]\n       node bench/jobs.mjs takeover --store=sqlite|postgres [--jobs=N]');
    process.exit(2);
  }
  const site = storeSite(kind);
  try {
    const result =
      task === 'throughput'
        ? await throughputChild({
            specs: [site.make()],
            cells: [{ jobs: Number(opts.jobs ?? 2_000), concurrency: Number(opts.concurrency ?? 1) }],
            warmupFraction: 0.1,
            waitTimeoutMs: 60_000,
          })
        : await takeoverChild({ spec: site.make(), jobs: Number(opts.jobs ?? 20), deadlineMs: 30_000 });
    console.log(JSON.stringify(result, null, 2));
    process.exitCode = result.outcome === 'ok' ? 0 : 1;
  } finally {
    await site.cleanup();
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main(process.argv.slice(2));
  // Stray handles (a pg pool's idle timers) must not keep a finished run alive.
  process.exit();
}
