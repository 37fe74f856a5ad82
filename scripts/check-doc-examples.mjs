// Type-checks every ```ts block inside a TSDoc @example in src/, as a module that imports
// from the public entry points ('flowchain', 'flowchain/sqlite', ...).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const out = join(root, '.tmp', 'doc-examples');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : path.endsWith('.ts') ? [path] : [];
  });
}

let count = 0;
const files = [];
for (const file of walk(join(root, 'src'))) {
  const text = readFileSync(file, 'utf8');
  const re = /@example\s*\n((?:\s*\*.*\n)+?)\s*\*\/|@example\s*\n((?:\s*\*.*\n)+?)\s*\*\s*@/g;
  for (const comment of text.matchAll(/\/\*\*[\s\S]*?\*\//g)) {
    const lines = comment[0].split('\n').map((line) => line.replace(/^\s*\/?\*+\/?\s?/, ''));
    let inExample = false;
    let inCode = false;
    let code = [];
    for (const line of lines) {
      if (line.startsWith('@example')) {
        inExample = true;
        continue;
      }
      if (!inExample) continue;
      if (!inCode && line.trim().startsWith('```')) {
        inCode = true;
        code = [];
        continue;
      }
      if (inCode && line.trim().startsWith('```')) {
        inCode = false;
        inExample = false;
        count++;
        const name = `${relative(root, file).replace(/[\/.]/g, '_')}_${count}.ts`;
        writeFileSync(join(out, name), `${code.join('\n')}\nexport {};\n`);
        files.push(name);
        continue;
      }
      if (inCode) code.push(line);
    }
    void re;
  }
}

// The README's TypeScript snippets too: they are what a reader copies first.
const readme = readFileSync(join(root, 'README.md'), 'utf8');
for (const block of readme.matchAll(/```ts\n([\s\S]*?)```/g)) {
  count++;
  writeFileSync(join(out, `README_${count}.ts`), `${block[1]}\nexport {};\n`);
}

writeFileSync(
  join(out, 'tsconfig.json'),
  JSON.stringify(
    {
      extends: '../../tsconfig.json',
      compilerOptions: { noEmit: true, noUnusedLocals: false, rootDir: '../..', baseUrl: '../..' },
      include: ['./*.ts'],
    },
    null,
    2,
  ),
);
const result = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(out, 'tsconfig.json')], {
  stdio: 'inherit',
});
if (result.status !== 0) {
  console.error('A TSDoc @example does not compile (files in .tmp/doc-examples).');
  process.exit(1);
}
console.log(`${count} TSDoc examples compile.`);
