/**
 * A cheap wall clock for traces.
 *
 * Reading `performance.now()` costs about 50 ns on Node 20, half the cost of a whole
 * promise-style flow step, so the trace does not read it at every step boundary. The
 * clock is read at most once per event-loop turn (and again after every
 * {@link REFRESH_EVERY} reads in the same turn): flows whose work crosses a turn, which is
 * every flow that does I/O, get exact times, while flows that finish within the turn they
 * started in share one timestamp. `preciseTiming` on a chain reads the clock every time.
 */
const REFRESH_EVERY = 64;

// Captured once so fake timers installed later (tests) do not stop the cache from expiring.
const realSetImmediate: typeof setImmediate = setImmediate;

let cached = 0;
let reads = REFRESH_EVERY;
let expiryScheduled = false;

/** Milliseconds since the epoch, from the per-turn cache. @internal */
export function now(): number {
  if (reads < REFRESH_EVERY) {
    reads++;
    return cached;
  }
  return refresh();
}

/** Milliseconds since the epoch, read now. @internal */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

function refresh(): number {
  cached = performance.timeOrigin + performance.now();
  reads = 1;
  if (!expiryScheduled) {
    expiryScheduled = true;
    realSetImmediate(expire).unref();
  }
  return cached;
}

function expire(): void {
  expiryScheduled = false;
  reads = REFRESH_EVERY;
}
