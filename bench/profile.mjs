#!/usr/bin/env node
// CPU profile of the flowchain hot path (not part of `npm run bench`).
//
//   npx tsup && node bench/profile.mjs [--style=promise|callback] [--n=1000] [--fail] [--seconds=4] [--mixed]
//
// --mixed first runs both styles, short and failing chains, as a full run does before the
// measured case, so that the profile shows the engine with the type feedback it has there.
// Runs chains of n flows back to back for the given time in a child process under
// `node --cpu-prof`, then prints the functions with the most self time, mapped back to
// src/ through dist's source map. The .cpuprofile is kept in bench/results/profiles/
// (open it in Chrome DevTools → Performance, or VS Code).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { adapterByName, distUnderTest, ROOT } from './lib/adapters.mjs';
import { snapshotDist } from './lib/snapshot.mjs';
import { buildSteps, expectedOutcome, newCtx } from './lib/steps.mjs';

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k, v ?? true];
  }),
);
const style = args.style ?? 'promise';
const n = Number(args.n ?? 1000);
const fail = args.fail === true;
const seconds = Number(args.seconds ?? 4);
const library = style === 'callback' ? 'flowchain-cb' : style === 'promise' ? 'flowchain' : style;

if (args.child) {
  if (args.mixed) {
    // As in a full `npm run bench`: the other style, short chains and failing chains ran
    // first in the same process, so the engine's call sites carry their feedback too.
    for (const [name, size, failAt] of [['flowchain', 10, -1], ['flowchain', 1000, -1], ['flowchain-cb', 10, -1], ['flowchain', 100, 99], ['flowchain-cb', 100, 99]]) {
      const other = adapterByName(name);
      const warm = other.create(await other.load(), buildSteps(other.style, size, { failAt }));
      for (let k = 0; k < 300; k++) await Promise.resolve(warm.run(newCtx(false))).catch(() => {});
    }
  }
  const adapter = adapterByName(library);
  const instance = adapter.create(await adapter.load(), buildSteps(adapter.style, n, { failAt: fail ? n - 1 : -1 }));
  const expected = expectedOutcome(n, fail ? n - 1 : -1, adapter.rollsBackFailing);
  const end = performance.now() + seconds * 1000;
  let runs = 0;
  while (performance.now() < end) {
    for (let k = 0, batch = Math.max(1, Math.floor(50_000 / n)); k < batch; k++) {
      const ctx = newCtx(false);
      let data;
      try {
        data = await instance.run(ctx);
      } catch {
        data = instance.finalData(ctx);
      }
      if (data.count !== expected.count) throw new Error(`wrong count ${data.count}`);
      runs++;
    }
  }
  const ns = (seconds * 1e9) / runs / n;
  console.log(`${library}: ${runs} chains of ${n} flows${fail ? ' (failing at the last)' : ''} in ${seconds} s ≈ ${ns.toFixed(0)} ns/flow (profiler on)`);
  process.exit(0);
}

// Profile a private copy, so a rebuild meanwhile cannot break the source mapping.
const snapshot = snapshotDist(distUnderTest());
process.on('exit', snapshot.remove);
const DIST = snapshot.entry;
const dir = join(ROOT, 'bench', 'results', 'profiles');
mkdirSync(dir, { recursive: true });
const started = Date.now();
const child = spawnSync(
  process.execPath,
  ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${library}-n${n}${fail ? '-fail' : ''}-${started}.cpuprofile`, fileURLToPath(import.meta.url), '--child', ...process.argv.slice(2)],
  { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, BENCH_FLOWCHAIN_DIST: DIST } },
);
if (child.status !== 0) process.exit(child.status ?? 1);
const file = readdirSync(dir)
  .filter((f) => f.endsWith('.cpuprofile'))
  .map((f) => join(dir, f))
  .filter((f) => statSync(f).mtimeMs >= started - 1000)
  .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
const profile = JSON.parse(readFileSync(file, 'utf8'));

// Self time per node = samples hitting it × sampling interval.
const hits = new Map();
for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
const total = profile.samples.length;
// The build may be split into chunks: every file of the snapshot's dist/ is flowchain.
const distDirUrl = pathToFileURL(dirname(DIST)).href + '/';
const isDist = (url) => url.startsWith(distDirUrl);
// Source-map paths are relative to where the build was made.
const originDirUrl = pathToFileURL(snapshot.origin).href + '/';
const files = new Map();
const fileOf = (url) => {
  if (!files.has(url)) {
    const path = fileURLToPath(url);
    let map;
    try {
      map = new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8')));
    } catch {
      map = undefined;
    }
    files.set(url, { map, lines: readFileSync(path, 'utf8').split('\n'), name: url.slice(distDirUrl.length) });
  }
  return files.get(url);
};
const original = (entry) =>
  `${relative(ROOT, fileURLToPath(new URL(entry.originalSource, new URL(fileOf.current ?? '', originDirUrl))))}:${entry.originalLine + 1}`;
const mapped = (url, line0, column) => {
  const { map, name } = fileOf(url);
  fileOf.current = name;
  const entry = map?.findEntry(line0, column);
  return entry?.originalSource ? original(entry) : `dist/${name}:${line0 + 1}`;
};
const where = (frame) => {
  const { url, lineNumber, columnNumber } = frame;
  if (isDist(url)) return mapped(url, lineNumber, columnNumber);
  if (url === '') return '(native)';
  if (url.startsWith('node:')) return url;
  try {
    return `${relative(ROOT, fileURLToPath(url))}:${lineNumber + 1}`;
  } catch {
    return url;
  }
};
const byFunction = new Map();
const byArea = new Map();
for (const node of profile.nodes) {
  const count = hits.get(node.id) ?? 0;
  if (count === 0) continue;
  const frame = node.callFrame;
  const key = `${frame.functionName || '(anonymous)'}  ${where(frame)}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + count);
  const area =
    isDist(frame.url)
      ? 'flowchain (dist)'
      : frame.url.includes('/bench/')
        ? 'bench steps + harness'
        : frame.functionName === '(garbage collector)'
          ? 'GC'
          : frame.url === ''
            ? `native/VM: ${frame.functionName}`
            : 'other JS';
  byArea.set(area, (byArea.get(area) ?? 0) + count);
}
// Line-level self time inside flowchain (positionTicks; lines are 1-based), mapped to src/.
// Ticks of inlined callees are reported at their own lines inside the caller.
const byLine = new Map();
for (const node of profile.nodes) {
  if (!isDist(node.callFrame.url) || node.positionTicks === undefined) continue;
  const { lines } = fileOf(node.callFrame.url);
  for (const { line, ticks } of node.positionTicks) {
    const text = lines[line - 1] ?? '';
    const at = mapped(node.callFrame.url, line - 1, text.length - text.trimStart().length);
    const key = `${node.callFrame.functionName || '(anonymous)'}  ${at}  ${text.trim().slice(0, 80)}`;
    byLine.set(key, (byLine.get(key) ?? 0) + ticks);
  }
}
const pct = (c) => `${((100 * c) / total).toFixed(1).padStart(5)}%`;
console.log(`\nprofile: ${relative(process.cwd(), file)} (${total} samples)\n\nself time by area:`);
for (const [area, c] of [...byArea].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${pct(c)}  ${area}`);
console.log('\nself time by function (top 30):');
for (const [key, c] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`  ${pct(c)}  ${key}`);
console.log('\nself time by line inside flowchain (top 25):');
for (const [key, c] of [...byLine].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${pct(c)}  ${key}`);
