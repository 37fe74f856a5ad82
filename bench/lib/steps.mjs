// The step functions every library runs, and what a correct run must end with.
//
// Method (see /work/shared/reference/perf-peers.md): every library runs the same step
// bodies. A promise step is `async (ctx) => { await RESOLVED; ctx.count++ }` and its
// rollback `async (ctx) => { await RESOLVED; ctx.count--; ctx.order?.push(i) }`; the
// synchronous and callback styles do the same work without the await. Adapters (see
// adapters.mjs) add only the glue their library needs.
//
// Each call to buildSteps() compiles the step bodies afresh with `new Function`. Closures
// made from one function literal share V8's type feedback, so without this the steps of
// one library would see the ctx shapes of every other library measured in the same
// process (listr2 and p-waterfall add fields to ctx), and whichever library ran first
// would run against cleaner feedback. Fresh code per library keeps them independent.

export const ERR_TOKEN = 'flowchain-bench: injected step failure';
/** The one error every failing step fails with. */
export const ERR = new Error(ERR_TOKEN);
/** The promise every promise-style step awaits: one microtask hop, nothing else. */
export const RESOLVED = Promise.resolve();

/**
 * A gate for S4: the second flow of every chain counts itself as parked and waits for
 * the gate to open.
 */
export function createGate() {
  let open;
  const promise = new Promise((resolve) => {
    open = resolve;
  });
  return { parked: 0, promise, open };
}

// Step sources, one per style. (n, failAt, gate, RESOLVED, ERR) → array of n steps.
// failAt = index of the failing step (-1: none). gate = createGate() result or undefined
// (it replaces step 1).
const SOURCES = {
  // { run(ctx): Promise, rollback(ctx): Promise } — baseline-async and the promise peers.
  promise: `
    const steps = new Array(n);
    for (let i = 0; i < n; i++) {
      let run;
      if (i === failAt) run = async (ctx) => { await RESOLVED; throw ERR; };
      else if (gate !== undefined && i === 1) run = async (ctx) => { gate.parked++; await gate.promise; ctx.count++; };
      else run = async (ctx) => { await RESOLVED; ctx.count++; };
      steps[i] = { run, rollback: async (ctx) => { await RESOLVED; ctx.count--; ctx.order?.push(i); } };
    }
    return steps;`,

  // { run(ctx), rollback(ctx) } synchronous; a failure throws — baseline-sync-loop.
  sync: `
    if (gate !== undefined) throw new Error('the sync style has no gate');
    const steps = new Array(n);
    for (let i = 0; i < n; i++) {
      const run = i === failAt ? (ctx) => { throw ERR; } : (ctx) => { ctx.count++; };
      steps[i] = { run, rollback: (ctx) => { ctx.count--; ctx.order?.push(i); } };
    }
    return steps;`,

  // Node-style callbacks called synchronously — baseline-sync-cps.
  cps: `
    if (gate !== undefined) throw new Error('the cps style has no gate');
    const steps = new Array(n);
    for (let i = 0; i < n; i++) {
      const run = i === failAt ? (ctx, cb) => { cb(ERR); } : (ctx, cb) => { ctx.count++; cb(null); };
      steps[i] = { run, rollback: (ctx, cb) => { ctx.count--; ctx.order?.push(i); cb(null); } };
    }
    return steps;`,

  // FlowChain flows, promise style: run(trigger, data) returns a promise.
  'fc-promise': `
    const flows = new Array(n);
    for (let i = 0; i < n; i++) {
      let run;
      if (i === failAt) run = async (t, d) => { await RESOLVED; throw ERR; };
      else if (gate !== undefined && i === 1) run = async (t, d) => { gate.parked++; await gate.promise; d.count++; };
      else run = async (t, d) => { await RESOLVED; d.count++; };
      flows[i] = { run, rollback: async (t, d) => { await RESOLVED; d.count--; d.order?.push(i); } };
    }
    return flows;`,

  // FlowChain flows, callback style completing synchronously: trigger.next()/fail()/rollback().
  'fc-callback': `
    const flows = new Array(n);
    for (let i = 0; i < n; i++) {
      let run;
      if (i === failAt) run = (t, d) => { t.fail(ERR); };
      else if (gate !== undefined && i === 1) run = (t, d) => { gate.parked++; gate.promise.then(() => { d.count++; t.next(); }); };
      else run = (t, d) => { d.count++; t.next(); };
      flows[i] = { run, rollback: (t, d) => { d.count--; d.order?.push(i); t.rollback(); } };
    }
    return flows;`,
};

/** Whether a step style can park on an S4 gate. */
export function styleSupportsGate(style) {
  return style !== 'sync' && style !== 'cps';
}

/** Builds n fresh step definitions of a style (see SOURCES). */
export function buildSteps(style, n, { failAt = -1, gate } = {}) {
  const source = SOURCES[style];
  if (source === undefined) throw new Error(`unknown step style ${style}`);
  // eslint-disable-next-line no-new-func -- fresh code per call, see the header comment.
  const factory = new Function('n', 'failAt', 'gate', 'RESOLVED', 'ERR', `'use strict';${source}`);
  return factory(n, failAt, gate, RESOLVED, ERR);
}

/** A fresh ctx. Always the same two keys, so every step body sees one object shape. */
export function newCtx(trackOrder) {
  return { count: 0, order: trackOrder ? [] : undefined };
}

/**
 * What a correct run ends with. `rollsBackFailing`: the library also runs the failing
 * step's own rollback (FlowChain by spec F4, and node-sagas), which runs first.
 */
export function expectedOutcome(n, failAt, rollsBackFailing) {
  if (failAt < 0) return { rejects: false, count: n, order: [] };
  const first = rollsBackFailing ? failAt : failAt - 1;
  const order = [];
  for (let i = first; i >= 0; i--) order.push(i);
  return { rejects: true, count: failAt - order.length, order };
}

/** Whether err is, wraps (cause, error, errors, originalError) or re-messages ERR. */
export function containsErr(err, depth = 0) {
  if (err === ERR) return true;
  if (err === null || typeof err !== 'object' || depth > 6) return false;
  // node-sagas wraps the error in SagaExecutionFailed(e.message) and drops the original.
  if (typeof err.message === 'string' && err.message.includes(ERR_TOKEN)) return true;
  for (const key of ['cause', 'error', 'originalError', 'reason']) {
    if (key in err && containsErr(err[key], depth + 1)) return true;
  }
  if (Array.isArray(err.errors)) return err.errors.some((e) => containsErr(e, depth + 1));
  return false;
}

/** Whether err is, or wraps, a stack overflow. */
export function isStackOverflow(err, depth = 0) {
  if (err === null || typeof err !== 'object' || depth > 6) return false;
  if (err instanceof RangeError && /Maximum call stack size exceeded/.test(String(err.message))) return true;
  if (typeof err.message === 'string' && /Maximum call stack size exceeded/.test(err.message)) return true;
  for (const key of ['cause', 'error', 'originalError', 'reason']) {
    if (key in err && isStackOverflow(err[key], depth + 1)) return true;
  }
  return false;
}

/**
 * Checks one finished run against the expectation. Returns undefined when it is right,
 * else a short description of what is wrong.
 */
export function checkRun(expected, { threw, error, data }) {
  if (threw && isStackOverflow(error)) return 'stack-overflow';
  if (expected.rejects && !threw) return 'resolved, but the run should have failed';
  if (!expected.rejects && threw) return `rejected: ${describe(error)}`;
  if (threw && !containsErr(error)) return `rejected with an unrelated error: ${describe(error)}`;
  if (data === null || typeof data !== 'object') return `no data (${typeof data})`;
  if (data.count !== expected.count) return `count ${data.count}, expected ${expected.count}`;
  if (Array.isArray(data.order)) {
    const got = data.order;
    const want = expected.order;
    if (got.length !== want.length) {
      return `${got.length} rollbacks, expected ${want.length} (first: ${got.slice(0, 3).join(',')})`;
    }
    for (let k = 0; k < want.length; k++) {
      if (got[k] !== want[k]) return `rollback #${k} rolled back step ${got[k]}, expected ${want[k]}`;
    }
  }
  return undefined;
}

export function describe(error) {
  if (error instanceof Error) return `${error.name}: ${error.message}`.slice(0, 300);
  try {
    return JSON.stringify(error).slice(0, 300);
  } catch {
    return String(error).slice(0, 300);
  }
}
