/**
 * Crash and resume: a durable FlowChain job survives the death of its process.
 *
 *   npx tsx examples/crash-resume/index.ts
 *
 * 1. A process submits a volume-migration job (allocate → copy → switch → clean up) whose
 *    body is a durable chain, on a SQLite file.
 * 2. While `copy` runs, this script kills that process with SIGKILL.
 * 3. A new process starts a JobManager with the same nodeId: it reclaims the job at once,
 *    skips `allocate-space` (checkpointed as done), runs `copy` again (it was in doubt,
 *    with the same idempotency key) and finishes the chain.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { newUuid } from 'flowchain';

const dir = mkdtempSync(join(tmpdir(), 'flowchain-crash-resume-'));
const filename = join(dir, 'jobs.db');
const logFile = join(dir, 'execution.log');
const uuid = newUuid();
const worker = fileURLToPath(new URL('./worker.ts', import.meta.url));

function start(mode: 'submit' | 'resume') {
  const child = spawn(process.execPath, ['--import', 'tsx', worker, mode, filename, uuid, logFile], { stdio: 'inherit' });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
  return { child, exited };
}

try {
  console.log('1) Start the job in a first process:');
  const first = start('submit');
  while (!(existsSync(logFile) && readFileSync(logFile, 'utf8').includes('run copy'))) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await new Promise((resolve) => setTimeout(resolve, 150));
  console.log('\n2) Kill it with SIGKILL while `copy` runs.');
  first.child.kill('SIGKILL');
  console.log(`   first process ended by ${String(await first.exited)}`);

  console.log('\n3) Start a new process with the same nodeId: it resumes the job from its checkpoint:');
  const second = start('resume');
  const code = await second.exited;
  if (code !== 0) throw new Error(`the resuming process exited with ${String(code)}`);

  const lines = readFileSync(logFile, 'utf8').trim().split('\n');
  const runs = (name: string) => lines.filter((line) => line.startsWith(`run ${name} `)).length;
  console.log(`\nallocate-space ran ${runs('allocate-space')}×, copy ${runs('copy')}× (in doubt when killed), switch ${runs('switch')}×, clean-up-source ${runs('clean-up-source')}×.`);
  if (runs('allocate-space') !== 1 || runs('copy') !== 2 || runs('switch') !== 1) throw new Error('unexpected execution log');
  if (!lines.at(-1)?.includes('Succeeded')) throw new Error('the job did not succeed');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
