// Runs one measurement in its own Node process, so its peak RSS and heap belong to one
// library and a crash or hang of one library cannot stop the run.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RESULT_MARK } from './proc.mjs';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'child.mjs');

function polledHwm(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Spawns `child.mjs moduleUrl args`. Resolves (never rejects) with
 * { outcome, result, peakRss, wallMs, stderr }: outcome is 'ok' when the child printed a
 * result (the result may still report a wrong answer), else 'timeout', 'stack-overflow',
 * 'out-of-memory' or 'crash'.
 */
export function runChild(moduleUrl, args, { nodeFlags = [], timeoutMs = 60_000 } = {}) {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(process.execPath, [...nodeFlags, CHILD, moduleUrl, JSON.stringify(args)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let peak = 0;
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (s) => {
      stdout += s;
    });
    child.stderr.setEncoding('utf8').on('data', (s) => {
      stderr = (stderr + s).slice(-20_000);
    });
    const poll = setInterval(() => {
      peak = Math.max(peak, polledHwm(child.pid));
    }, 100);
    const timer = setTimeout(() => {
      timedOut = true;
      peak = Math.max(peak, polledHwm(child.pid));
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearInterval(poll);
      clearTimeout(timer);
      const wallMs = performance.now() - started;
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_MARK));
      if (line !== undefined) {
        const result = JSON.parse(line.slice(RESULT_MARK.length));
        resolve({ outcome: 'ok', result, peakRss: Math.max(peak, result.peakRss ?? 0), wallMs, stderr });
        return;
      }
      let outcome = 'crash';
      if (timedOut) outcome = 'timeout';
      else if (/Maximum call stack size exceeded/.test(stderr)) outcome = 'stack-overflow';
      else if (/heap out of memory|Allocation failed/.test(stderr)) outcome = 'out-of-memory';
      const tail = stderr.trim().split('\n').slice(-6).join('\n');
      resolve({ outcome, result: undefined, peakRss: peak, wallMs, stderr: tail, exit: { code, signal } });
    });
  });
}

/** Runs async jobs with at most `limit` at a time, keeping the result order. */
export async function pool(jobs, limit) {
  const results = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, jobs.length)) }, worker));
  return results;
}
