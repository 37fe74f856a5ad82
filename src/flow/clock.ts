/**
 * A cheap wall clock for traces.
 *
 * Reading `performance.now()` costs about 50 ns on Node 20 in a tight loop and several
 * hundred between promise reactions (measured: a read every 64 steps added about 10 ns
 * per promise-style step, a tenth of the step), so the trace does not read it at every
 * step boundary. The
 * clock is read at most once per event-loop turn (and again after every
 * {@link REFRESH_EVERY} reads in the same turn): flows whose work crosses a turn, which is
 * every flow that does I/O, get exact times, while flows that finish within the turn they
 * started in share one timestamp. `preciseTiming` on a chain reads the clock every time.
 */
const REFRESH_EVERY = 1024;

// Captured once so fake timers installed later (tests) do not stop the cache from expiring.
const realSetImmediate: typeof setImmediate = setImmediate;

// One object, not module-level `let`s: optimized code reads a const binding's fields
// directly, and a double field is updated in place, with no allocation per refresh.
const state = { cached: 0, reads: REFRESH_EVERY, expiryScheduled: false };

/** Milliseconds since the epoch, from the per-turn cache. @internal */
export function now(): number {
  if (state.reads < REFRESH_EVERY) {
    state.reads++;
    return state.cached;
  }
  return refresh();
}

/** Milliseconds since the epoch, read now. @internal */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

function refresh(): number {
  const time = performance.timeOrigin + performance.now();
  state.cached = time;
  state.reads = 1;
  if (!state.expiryScheduled) {
    state.expiryScheduled = true;
    realSetImmediate(expire).unref();
  }
  return time;
}

function expire(): void {
  state.expiryScheduled = false;
  state.reads = REFRESH_EVERY;
}
