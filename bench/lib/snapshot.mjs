// A private copy of the build under test. `tsup` cleans dist/ before it writes, so a
// rebuild by someone else during a long benchmark would make the next child process fail
// to load the library, or load a different one. The runner copies dist/ once to a temp
// directory (with a node_modules link so its imports resolve) and every child loads that.
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { ROOT } from './adapters.mjs';

/** Copies the directory holding `entry` (a built index.js); returns the copy's entry and a remover. */
export function snapshotDist(entry) {
  const from = dirname(entry);
  const dir = mkdtempSync(join(tmpdir(), 'flowchain-bench-'));
  const to = join(dir, 'dist');
  cpSync(from, to, { recursive: true, filter: (f) => !f.endsWith('.d.ts') && !f.endsWith('.d.cts') });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  // ESM resolution of the copy needs the package scope ("type": "module").
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  return {
    entry: join(to, basename(entry)),
    origin: from,
    version: pkg.version,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
