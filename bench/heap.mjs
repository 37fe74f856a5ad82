#!/usr/bin/env node
// What an in-flight chain keeps alive, by object type (not part of `npm run bench`).
//
//   npx tsup && node bench/heap.mjs [--lib=flowchain] [--chains=10000]
//
// Starts `chains` S4 chains (3 flows, the second parked on a gate), then diffs two heap
// snapshots (before starting, and with every chain parked) and prints the retained bytes
// and object counts per chain for each V8 object type/constructor.
import { getHeapSnapshot } from 'node:v8';
import { adapterByName } from './lib/adapters.mjs';
import { tick } from './lib/proc.mjs';
import { buildSteps, createGate } from './lib/steps.mjs';

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k, v ?? true];
  }),
);
const lib = args.lib ?? 'flowchain';
const chains = Number(args.chains ?? 10_000);

async function aggregate() {
  const chunks = [];
  for await (const chunk of getHeapSnapshot()) chunks.push(chunk);
  const snapshot = JSON.parse(Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c))).toString('utf8'));
  const { node_fields: fields, node_types: [types] } = snapshot.snapshot.meta;
  const width = fields.length;
  const T = fields.indexOf('type');
  const N = fields.indexOf('name');
  const S = fields.indexOf('self_size');
  const out = new Map();
  const nodes = snapshot.nodes;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + T]];
    let name = snapshot.strings[nodes[i + N]];
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') name = '(strings)';
    if (type === 'number') name = '(heap numbers)';
    if (type === 'code') name = '(code)';
    if (name.length > 60) name = `${name.slice(0, 57)}...`;
    const key = `${type}: ${name}`;
    const slot = out.get(key) ?? { count: 0, bytes: 0 };
    slot.count++;
    slot.bytes += nodes[i + S];
    out.set(key, slot);
  }
  return out;
}

const adapter = adapterByName(lib);
const gate = createGate();
const instance = adapter.create(await adapter.load(), buildSteps(adapter.style, 3, { gate }));
// Warm the code paths (and their one-off allocations) with a few chains first.
{
  const warm = createGate();
  const w = adapter.create(await adapter.load(), buildSteps(adapter.style, 3, { gate: warm }));
  const ps = [];
  for (let k = 0; k < 100; k++) ps.push(w.run({ count: 0, order: undefined }));
  while (warm.parked < 100) await tick();
  warm.open();
  await Promise.all(ps);
}
const results = [];
const before = await aggregate();
for (let k = 0; k < chains; k++) results.push(instance.run({ count: 0, order: undefined }));
while (gate.parked < chains) await tick();
const after = await aggregate();

const rows = [];
let total = 0;
for (const [key, b] of after) {
  const a = before.get(key) ?? { count: 0, bytes: 0 };
  const bytes = (b.bytes - a.bytes) / chains;
  const count = (b.count - a.count) / chains;
  if (Math.abs(bytes) < 1) continue;
  total += bytes;
  rows.push({ key, bytes, count });
}
rows.sort((x, y) => y.bytes - x.bytes);
console.log(`${lib}: ${chains} chains parked; retained per chain by type (heap snapshot diff)\n`);
console.log('   bytes  objects  type: constructor/name');
for (const r of rows.slice(0, 40)) console.log(`${r.bytes.toFixed(0).padStart(8)} ${r.count.toFixed(2).padStart(8)}  ${r.key}`);
console.log(`${total.toFixed(0).padStart(8)}           total`);
gate.open();
await Promise.all(results);
