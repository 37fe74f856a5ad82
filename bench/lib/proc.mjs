// Process helpers shared by the parent and the child processes.
import { readFileSync } from 'node:fs';

/** Prefix of the one stdout line that carries a child's JSON result. */
export const RESULT_MARK = '@@bench-result@@';

/** Peak resident set size of this process so far, in bytes (VmHWM, or maxRSS off Linux). */
export function peakRss() {
  let peak = process.resourceUsage().maxRSS * 1024;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) peak = Math.max(peak, Number(m[1]) * 1024);
  } catch {
    // not Linux: maxRSS only
  }
  return peak;
}

/** Waits one turn of the event loop. */
export const tick = () => new Promise((resolve) => setImmediate(resolve));
