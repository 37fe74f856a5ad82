#!/usr/bin/env node
// flowchain benchmark runner. `npm run bench` builds dist/ (tsup) and runs this.
//
//   npm run bench                  full run (a few minutes)
//   npm run bench -- --quick       under a minute; fewer rounds, S3 1M only for some libraries
//   npm run bench -- --smoke       harness smoke test for CI: tiny sizes, verifies results,
//                                  exits 1 on a wrong answer, asserts nothing about speed
//   options: --only=S1,S3,P4  --libs=flowchain,node-sagas  --rounds=N  --out=path.json
//
// Scenarios are the modules in bench/scenarios/ (see bench/README.md to add one). Results:
// one table on stdout (medians, and every library's cost ratio to baseline-async, the
// hand-written limit; P4, the job stores, in a table of its own with raw numbers), the
// same as JSON in bench/results/latest.json. Progress goes to stderr.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ADAPTERS, BASELINE, distUnderTest, ROOT } from './lib/adapters.mjs';
import { snapshotDist } from './lib/snapshot.mjs';
import { formatTables } from './lib/table.mjs';
import { evaluateTargets, formatTargets } from './lib/targets.mjs';

const BENCH = dirname(fileURLToPath(import.meta.url));

/** Settings shared by scenarios, per mode. Scenario-specific sizes live in each scenario. */
const SETTINGS = {
  full: { inproc: { rounds: 5, targetMs: 2, warmupMs: 100, sampleMs: 300, minSamples: 7 }, childConcurrency: 1 },
  quick: { inproc: { rounds: 3, targetMs: 2, warmupMs: 25, sampleMs: 80, minSamples: 5 }, childConcurrency: 1 },
  // Smoke asserts no timing, so its children may share the CPU.
  smoke: { inproc: { rounds: 1, targetMs: 0.5, warmupMs: 1, sampleMs: 1, minSamples: 2 }, childConcurrency: 3 },
};

function parseArgs(argv) {
  const args = { mode: 'full', only: undefined, libs: undefined, rounds: undefined, out: undefined };
  for (const arg of argv) {
    if (arg === '--quick') args.mode = 'quick';
    else if (arg === '--smoke') args.mode = 'smoke';
    else if (arg === '--full') args.mode = 'full';
    else if (arg.startsWith('--only=')) args.only = arg.slice(7).toUpperCase().split(',');
    else if (arg.startsWith('--libs=')) args.libs = arg.slice(7).split(',');
    else if (arg.startsWith('--rounds=')) args.rounds = Number(arg.slice(9));
    else if (arg.startsWith('--out=')) args.out = arg.slice(6);
    else if (arg === '--help' || arg === '-h') {
      console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 13).join('\n'));
      process.exit(0);
    } else {
      console.error(`unknown option ${arg} (try --help)`);
      process.exit(2);
    }
  }
  return args;
}

function git(...args) {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

function metadata(args, settings, source) {
  const cpus = os.cpus();
  const dist = readFileSync(distUnderTest());
  return {
    date: new Date().toISOString(),
    mode: args.mode,
    command: `npm run bench${args.mode === 'full' ? '' : ` -- --${args.mode}`}`,
    argv: process.argv.slice(2),
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadAverageStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
    flowchain: {
      version: JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version,
      commit: git('rev-parse', '--short', 'HEAD'),
      srcDirty: (git('status', '--porcelain', '--', 'src') ?? '') !== '',
      dist: relative(ROOT, source),
      distSha256: createHash('sha256').update(dist).digest('hex').slice(0, 16),
    },
    settings,
    baseline: BASELINE,
    ratio: 'cost relative to baseline-async measured in the same run: value / baseline, and baseline / value for chains/s; 1.00x is the limit, higher is worse',
  };
}

async function loadScenarios(only) {
  const dir = join(BENCH, 'scenarios');
  const scenarios = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.mjs'))) {
    const mod = await import(pathToFileURL(join(dir, file)).href);
    if (mod.meta === undefined || typeof mod.run !== 'function') {
      throw new Error(`bench/scenarios/${file} must export meta ({ id, order, title }) and run(env)`);
    }
    scenarios.push({ file, ...mod });
  }
  scenarios.sort((a, b) => (a.meta.order ?? 100) - (b.meta.order ?? 100) || a.file.localeCompare(b.file));
  return only === undefined ? scenarios : scenarios.filter((s) => only.includes(String(s.meta.id).toUpperCase()));
}

/** Fills ratioToBaseline where a row has none: cost relative to baseline-async, same scenario and unit. */
function addRatios(rows) {
  const baseline = new Map();
  for (const row of rows) {
    if (row.library === BASELINE && typeof row.value === 'number') baseline.set(`${row.scenario}\u0000${row.unit}`, row.value);
  }
  for (const row of rows) {
    if (row.ratioToBaseline !== undefined) continue;
    const base = baseline.get(`${row.scenario}\u0000${row.unit}`);
    if (typeof row.value !== 'number' || base === undefined || base === 0 || row.value === 0) {
      row.ratioToBaseline = null;
      continue;
    }
    row.ratioToBaseline = row.higherIsBetter ? base / row.value : row.value / base;
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const settings = structuredClone(SETTINGS[args.mode]);
  if (args.rounds !== undefined) settings.inproc.rounds = args.rounds;
  const source = distUnderTest();
  if (!existsSync(source)) {
    console.error(`bench: ${relative(ROOT, source)} is missing; run \`npx tsup\` first (npm run bench does).`);
    process.exit(2);
  }
  // Every process of this run (children inherit the variable) loads one private copy.
  const snapshot = snapshotDist(source);
  process.env.BENCH_FLOWCHAIN_DIST = snapshot.entry;
  process.on('exit', snapshot.remove);
  process.once('SIGINT', () => process.exit(130));
  let libs = ADAPTERS;
  if (args.libs !== undefined) {
    const unknown = args.libs.filter((name) => !ADAPTERS.some((a) => a.name === name));
    if (unknown.length > 0) {
      console.error(`unknown libraries: ${unknown.join(', ')}; known: ${ADAPTERS.map((a) => a.name).join(', ')}`);
      process.exit(2);
    }
    libs = ADAPTERS.filter((a) => a.name === BASELINE || args.libs.includes(a.name));
  }

  const meta = metadata(args, settings, source);
  const failures = [];
  const warnings = [];
  const notes = [];
  const modules = new Map();
  const log = (message) => process.stderr.write(`${message}\n`);
  const env = {
    mode: args.mode,
    settings,
    config: undefined,
    libs,
    log,
    /** Loads a library once per process. */
    async load(lib) {
      if (!modules.has(lib.name)) modules.set(lib.name, await lib.load());
      return modules.get(lib.name);
    },
    /** Records a wrong answer (or a FlowChain crash): the run then exits 1. Never for speed. */
    fail(library, scenario, problem) {
      failures.push({ library, scenario, problem });
    },
    /** Something the reader must not miss (e.g. cells skipped): on stderr now, and again under the table. */
    warn(message) {
      warnings.push(message);
      log(`WARNING: ${message}`);
    },
    /** A line explaining a scenario's cells, printed under the tables. */
    note(message) {
      notes.push(message);
    },
  };

  const scenarios = await loadScenarios(args.only);
  log(`flowchain bench (${args.mode}): node ${process.version}, ${meta.cpu} x${meta.cores}; scenarios ${scenarios.map((s) => s.meta.id).join(', ')}`);
  const rows = [];
  const started = performance.now();
  for (const scenario of scenarios) {
    const t0 = performance.now();
    log(`${scenario.meta.id}: ${scenario.meta.title}`);
    const scenarioEnv = { ...env, config: scenario.config?.[args.mode] ?? scenario.config?.full };
    rows.push(...(await scenario.run(scenarioEnv)));
    log(`  ${scenario.meta.id} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  addRatios(rows);
  meta.loadAverageEnd = os.loadavg().map((l) => Math.round(l * 100) / 100);
  meta.durationSeconds = Math.round((performance.now() - started) / 100) / 10;

  const libraries = ADAPTERS.filter((a) => libs.includes(a)).map((a) => ({
    name: a.name,
    version: a.version(),
    style: a.style,
    rollsBackFailingFlow: a.rollsBackFailing,
    notes: a.notes,
  }));
  const tables = formatTables(rows, libraries);
  const header = `flowchain bench — ${args.mode} — node ${meta.node} (V8 ${meta.v8}) — ${meta.cpu}, ${meta.cores} cores, ${meta.memoryGiB} GiB — load avg ${meta.loadAverageStart.join('/')} → ${meta.loadAverageEnd.join('/')} — ${meta.durationSeconds} s`;
  console.log(`\n${header}`);
  const mainTable = tables.find((t) => t.title === undefined);
  if (mainTable !== undefined) {
    console.log(`\n${mainTable.text}`);
    console.log('\nx = cost relative to baseline-async in the same run (for chains/s: baseline / value); 1.00x is the limit, higher is worse.');
    console.log('* = also runs the failing flow\'s own rollback, first (flowchain by spec F4; node-sagas by design): 1 more rollback than the baseline.');
    console.log('S3 cells: median time (x) and peak RSS; S4: heap bytes per in-flight chain after gc, and total ms (start → all parked, plus drain).');
  }
  for (const table of tables.filter((t) => t.title !== undefined)) console.log(`\n${table.title}\n\n${table.text}`);
  if (notes.length > 0) console.log(`\n${notes.join('\n')}`);
  for (const warning of warnings) console.log(`\nWARNING: ${warning}`);
  const targets = evaluateTargets(rows, libs);
  console.log(`\nTargets (SPEC §5; reported, never asserted):\n${formatTargets(targets)}`);
  console.log('\nLibraries:');
  for (const lib of libraries) console.log(`- ${lib.name} ${lib.version}: ${lib.notes}`);

  const out = args.out ?? join(BENCH, 'results', args.mode === 'smoke' ? 'smoke.tmp.json' : 'latest.json');
  mkdirSync(dirname(out), { recursive: true });
  const clean = rows.map(({ cell, cellSuffix, hidden, table, ...row }) => row);
  writeFileSync(out, `${JSON.stringify({ metadata: { ...meta, failures, warnings, notes }, libraries, targets, rows: clean }, null, 2)}\n`);
  console.log(`\nJSON: ${relative(process.cwd(), out)}`);

  if (failures.length > 0) {
    console.error(`\nVERIFICATION FAILED (${failures.length}):`);
    for (const f of failures) console.error(`- ${f.scenario} / ${f.library}: ${f.problem}`);
    process.exit(1);
  }
  console.log('All results verified.');
}

await main();
