// Every library under test, adapted to one contract:
//
//   adapter.create(mod, steps) → { sync, run(ctx), finalData(ctx) }
//
// `steps` come from buildSteps(adapter.style, …) and are built once, outside any timing.
// `run(ctx)` executes one chain over them with `ctx` as the shared data: it returns the
// final data (a promise of it unless `sync`) or fails with the step's error after the
// rollbacks. `finalData(ctx)` returns the data a *failed* run ended with (FlowChain
// shallow-copies its initial data, so there it is the chain's live object).
// Per-run objects a library requires (a FlowChain, a built saga, a Listr) are created
// inside run(), so they are part of the measured cost, as they are for users.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The build users get. */
export const DIST = join(ROOT, 'dist', 'index.js');

/**
 * The build under test: BENCH_FLOWCHAIN_DIST when set (run.mjs points it at a private
 * snapshot of dist/, so a concurrent rebuild cannot pull the files from under a run; or
 * set it to a build in another checkout), else dist/index.js.
 */
export function distUnderTest() {
  return process.env.BENCH_FLOWCHAIN_DIST ?? DIST;
}
const require = createRequire(join(ROOT, 'package.json'));

function version(pkg) {
  try {
    return JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), 'utf8')).version;
  } catch {
    // ESM-only packages without an exported package.json.
    try {
      return JSON.parse(readFileSync(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')).version;
    } catch {
      return 'unknown';
    }
  }
}

const identity = (ctx) => ctx;

/** Loads the built library (dist/index.js by default), which is what users get. */
async function loadFlowchain(path = distUnderTest()) {
  try {
    return await import(pathToFileURL(path).href);
  } catch (error) {
    throw new Error(`cannot load ${path} (build it with \`npx tsup\`): ${error.message}`);
  }
}

/**
 * BENCH_FLOWCHAIN_ALT=/path/to/other/dist/index.js adds flowchain-alt and flowchain-cb-alt:
 * a second build (another branch, a patched engine) measured side by side in the same
 * run. Its own imports must resolve (keep it inside a checkout with node_modules).
 */
const ALT = process.env.BENCH_FLOWCHAIN_ALT;

function flowchainAdapter(name, style, notes, path) {
  return {
    name,
    style,
    group: 'flowchain',
    rollsBackFailing: true,
    notes,
    version: () => (path === undefined ? JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version : path),
    load: () => loadFlowchain(path),
    create({ FlowChain, defineFlows }, flows) {
      const n = flows.length;
      // The flow list is defined once (validated and frozen), as a user defines a chain's
      // flows once and builds a chain per operation; builds without defineFlows (older
      // alt builds) add the flows one by one.
      const defined = typeof defineFlows === 'function' ? defineFlows(flows) : undefined;
      let last;
      return {
        sync: false,
        run(ctx) {
          // A chain starts once (spec F9): build one per run, as a user does.
          let chain;
          if (defined !== undefined) {
            chain = new FlowChain({ data: ctx, flows: defined });
          } else {
            chain = new FlowChain({ data: ctx });
            for (let i = 0; i < n; i++) chain.flow(flows[i]);
          }
          last = chain;
          return chain.start();
        },
        // Only valid for the most recent run; failure checks run one chain at a time.
        finalData: () => last.data,
      };
    },
  };
}

export const ADAPTERS = [
  {
    name: 'baseline-async',
    style: 'promise',
    group: 'baseline',
    rollsBackFailing: false,
    notes: 'The limit: for loop awaiting steps[i].run(ctx) in try/catch; on failure awaits the completed steps\' rollbacks in reverse.',
    version: () => '-',
    load: async () => ({}),
    create(_mod, steps) {
      const n = steps.length;
      return {
        sync: false,
        async run(ctx) {
          let i = 0;
          try {
            for (; i < n; i++) await steps[i].run(ctx);
          } catch (error) {
            for (let j = i - 1; j >= 0; j--) await steps[j].rollback(ctx);
            throw error;
          }
          return ctx;
        },
        finalData: identity,
      };
    },
  },
  {
    name: 'baseline-sync-loop',
    style: 'sync',
    group: 'baseline',
    rollsBackFailing: false,
    notes: 'Floor for synchronous steps: the same loop without await. No S4 (it cannot wait).',
    version: () => '-',
    load: async () => ({}),
    create(_mod, steps) {
      const n = steps.length;
      return {
        sync: true,
        run(ctx) {
          let i = 0;
          try {
            for (; i < n; i++) steps[i].run(ctx);
          } catch (error) {
            for (let j = i - 1; j >= 0; j--) steps[j].rollback(ctx);
            throw error;
          }
          return ctx;
        },
        finalData: identity,
      };
    },
  },
  {
    name: 'baseline-sync-cps',
    style: 'cps',
    group: 'baseline',
    rollsBackFailing: false,
    expectStackOverflow: true,
    notes: 'Naive recursive node-style callbacks called synchronously; overflows the stack on long chains (S3; expected, it is the reason a callback engine must trampoline). No S4.',
    version: () => '-',
    load: async () => ({}),
    create(_mod, steps) {
      const n = steps.length;
      const runCps = (ctx, done) => {
        let i = 0;
        const unwind = (j, error) => {
          if (j < 0) done(error);
          else steps[j].rollback(ctx, () => unwind(j - 1, error));
        };
        const next = (error) => {
          if (error) unwind(i - 2, error); // steps[i - 1] failed; 0 … i-2 completed
          else if (i === n) done(null, ctx);
          else steps[i++].run(ctx, next);
        };
        next(null);
      };
      return {
        sync: true,
        run(ctx) {
          let finished = false;
          let failure;
          runCps(ctx, (error) => {
            finished = true;
            failure = error;
          });
          if (!finished) throw new Error('baseline-sync-cps did not finish synchronously');
          if (failure) throw failure;
          return ctx;
        },
        finalData: identity,
      };
    },
  },
  flowchainAdapter(
    'flowchain',
    'fc-promise',
    'Promise style: async run(t, d) { await RESOLVED; d.count++ }. Flows defined once with defineFlows(); new FlowChain({ data, flows }) + start() per run (a chain starts once, F9). Spec F4: the failing flow\'s own rollback runs first, so S2 does 100 rollbacks (count ends at -1) where the baseline does 99.',
  ),
  flowchainAdapter(
    'flowchain-cb',
    'fc-callback',
    'Callback style completing synchronously: run(t, d) { d.count++; t.next() }; rollback via t.rollback(). Compare with baseline-sync-loop as the floor. F4 as for flowchain.',
  ),
  ...(ALT === undefined
    ? []
    : [
        flowchainAdapter('flowchain-alt', 'fc-promise', `flowchain promise style, from ${ALT}`, ALT),
        flowchainAdapter('flowchain-cb-alt', 'fc-callback', `flowchain callback style, from ${ALT}`, ALT),
      ]),
  {
    name: 'node-sagas',
    pkg: 'node-sagas',
    style: 'promise',
    group: 'peer',
    rollsBackFailing: true,
    notes: 'SagaBuilder.step().invoke(run).withCompensation(rollback) built once; builder.build() per run (Saga/SagaFlow are stateful). Pushes a step onto the compensation list before invoking it, so the failing step\'s own compensation also runs (100 rollbacks in S2, count -1). Errors are re-wrapped in SagaExecutionFailed (message kept, original dropped).',
    version: () => version('node-sagas'),
    load: () => import('node-sagas'),
    create(mod, steps) {
      const { SagaBuilder } = mod.default ?? mod;
      const builder = new SagaBuilder();
      for (const step of steps) builder.step().invoke(step.run).withCompensation(step.rollback);
      return {
        sync: false,
        run: (ctx) => builder.build().execute(ctx),
        finalData: identity,
      };
    },
  },
  {
    name: 'listr2',
    pkg: 'listr2',
    style: 'promise',
    group: 'peer',
    rollsBackFailing: false,
    notes: 'new Listr(tasks, { renderer: "silent", registerSignalListeners: false, exitOnError: true, ctx }) per run. Its rollback hook fires only for the failing task, so each task pushes itself on a ctx undo stack and the shared rollback hook unwinds it in reverse. At 1M tasks new Listr() throws RangeError: Maximum call stack size exceeded from `this.tasks.push(...tasks)` in Listr.add (argument spread), reported as stack-overflow.',
    version: () => version('listr2'),
    load: () => import('listr2'),
    create({ Listr }, steps) {
      const unwind = async (ctx) => {
        const undo = ctx.undo;
        for (let k = undo.length - 1; k >= 0; k--) await undo[k].rollback(ctx);
      };
      const tasks = steps.map((step) => ({
        task: async (ctx) => {
          await step.run(ctx);
          ctx.undo.push(step);
        },
        rollback: unwind,
      }));
      return {
        sync: false,
        run(ctx) {
          ctx.undo = [];
          return new Listr(tasks, { renderer: 'silent', registerSignalListeners: false, exitOnError: true, ctx }).run();
        },
        finalData: identity,
      };
    },
  },
  {
    name: 'p-waterfall',
    pkg: 'p-waterfall',
    style: 'promise',
    group: 'peer',
    rollsBackFailing: false,
    notes: 'No rollback or ctx concept: each task awaits its step, counts its progress on ctx and passes ctx on; on failure a second pWaterfall runs the completed steps\' rollbacks in reverse.',
    version: () => version('p-waterfall'),
    load: () => import('p-waterfall'),
    create({ default: pWaterfall }, steps) {
      const n = steps.length;
      const forward = steps.map((step) => async (ctx) => {
        await step.run(ctx);
        ctx.done++;
        return ctx;
      });
      const backward = steps
        .map((step) => async (ctx) => {
          await step.rollback(ctx);
          return ctx;
        })
        .reverse();
      return {
        sync: false,
        async run(ctx) {
          ctx.done = 0;
          try {
            return await pWaterfall(forward, ctx);
          } catch (error) {
            await pWaterfall(backward.slice(n - ctx.done), ctx);
            throw error;
          }
        },
        finalData: identity,
      };
    },
  },
  {
    name: 'async',
    pkg: 'async',
    style: 'promise',
    group: 'peer',
    rollsBackFailing: false,
    notes: 'async.eachOfSeries(steps, async iteratee) in promise form; no rollback, so on failure async.eachSeries runs the completed steps\' rollbacks in reverse. Iteratees must be real async functions (async detects them by Symbol.toStringTag).',
    version: () => version('async'),
    load: () => import('async'),
    create(mod, steps) {
      const async = mod.default ?? mod;
      return {
        sync: false,
        async run(ctx) {
          let done = 0;
          try {
            await async.eachOfSeries(steps, async (step, i) => {
              await step.run(ctx);
              done = i + 1;
            });
          } catch (error) {
            await async.eachSeries(steps.slice(0, done).reverse(), async (step) => {
              await step.rollback(ctx);
            });
            throw error;
          }
          return ctx;
        },
        finalData: identity,
      };
    },
  },
  {
    name: 'effect',
    pkg: 'effect',
    style: 'promise',
    group: 'peer',
    rollsBackFailing: false,
    notes: 'Effect.scoped(Effect.forEach(steps, s => Effect.acquireRelease(Effect.tryPromise(run), (_, exit) => Exit.isFailure(exit) ? Effect.promise(rollback) : Effect.void))) and Effect.runPromise per run; scope finalizers run in reverse. The step error arrives wrapped in UnknownError (tryPromise without catch).',
    version: () => version('effect'),
    load: () => import('effect'),
    create({ Effect, Exit }, steps) {
      const program = (ctx) =>
        Effect.as(
          Effect.scoped(
            Effect.forEach(
              steps,
              (step) =>
                Effect.acquireRelease(
                  Effect.tryPromise(() => step.run(ctx)),
                  (_, exit) => (Exit.isFailure(exit) ? Effect.promise(() => step.rollback(ctx)) : Effect.void),
                ),
              { discard: true },
            ),
          ),
          ctx,
        );
      return {
        sync: false,
        run: (ctx) => Effect.runPromise(program(ctx)),
        finalData: identity,
      };
    },
  },
];

export const BASELINE = 'baseline-async';

export function adapterByName(name) {
  const adapter = ADAPTERS.find((a) => a.name === name);
  if (adapter === undefined) throw new Error(`unknown library ${name}; known: ${ADAPTERS.map((a) => a.name).join(', ')}`);
  return adapter;
}
