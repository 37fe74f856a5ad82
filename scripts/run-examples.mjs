// Runs every example under examples/ (type-checked by `npm run typecheck`) and fails if any
// exits non-zero. An example that needs a database skips itself when none is configured.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dir = join(root, 'examples');
const entries = readdirSync(dir)
  .map((name) => join(dir, name))
  .map((path) => (statSync(path).isDirectory() ? join(path, 'index.ts') : path))
  .filter((path) => path.endsWith('.ts'))
  .sort();

let failed = 0;
for (const file of entries) {
  const label = file.slice(root.length);
  process.stdout.write(`--- ${label}\n`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', file], {
    cwd: root,
    stdio: 'inherit',
    timeout: 120_000,
    env: { ...process.env, FLOWCHAIN_EXAMPLE: '1' },
  });
  if (result.status !== 0) {
    failed++;
    console.error(`FAILED: ${label} (exit ${result.status ?? result.signal})`);
  }
}
if (failed > 0) process.exit(1);
console.log(`\n${entries.length} examples ran.`);
