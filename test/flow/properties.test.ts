import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FlowChain, FlowChainError, type Flow, type FlowOutcome, type FlowTrigger } from '../../src/index.js';
import { turn } from './helpers.js';

/*
 * R4: random chains with random completions, failures, throws, timeouts, skips, setError,
 * double calls and failing rollbacks, checked against a model of F3–F6 (and F8's handler
 * order). Timeouts use fake timers, so a run costs no wall-clock time. Set
 * FLOWCHAIN_PROPERTY_RUNS to run more cases (20,000 take about 15 s).
 */

const TIMEOUT_MS = 100;
const LATE_MS = 150;

type Outcome =
  | 'next' // trigger.next()
  | 'fail' // trigger.fail(error)
  | 'throw' // synchronous throw
  | 'resolve' // returned promise fulfils
  | 'reject' // returned promise rejects
  | 'timeout' // never completes (maybe calls next() late)
  | 'nextThenThrow' // next() then a synchronous throw: next wins
  | 'nextThenReject' // async run: next() then rejects: next wins, silently
  | 'failOnAbort'; // fails from its signal's abort listener (so on its timeout)
type RollbackKind = 'none' | 'ok' | 'okPromise' | 'okDouble' | 'throw' | 'reject' | 'hang';

interface FlowSpec {
  outcome: Outcome;
  async: boolean;
  delay: number;
  skip: 'no' | 'sync' | 'async';
  double: boolean;
  setError: boolean;
  rollback: RollbackKind;
  rollbackAsync: boolean;
}

interface ChainSpec {
  flows: FlowSpec[];
  noRollback: boolean;
  /** Flows `[from, to)` run inside a nested chain instead of directly (F12). */
  nested?: [from: number, to: number];
}

const weighted = <Value>(...pairs: [Value, number][]): fc.Arbitrary<Value> =>
  fc.oneof(...pairs.map(([value, weight]) => ({ arbitrary: fc.constant(value), weight })));

const flowSpec: fc.Arbitrary<FlowSpec> = fc.record({
  outcome: weighted<Outcome>(
    ['next', 6],
    ['resolve', 4],
    ['fail', 1],
    ['throw', 1],
    ['reject', 1],
    ['timeout', 1],
    ['nextThenThrow', 1],
    ['nextThenReject', 1],
    ['failOnAbort', 1],
  ),
  async: fc.boolean(),
  delay: fc.integer({ min: 0, max: 50 }),
  skip: weighted<FlowSpec['skip']>(['no', 6], ['sync', 1], ['async', 1]),
  double: fc.boolean(),
  setError: weighted([false, 9], [true, 1]),
  rollback: weighted<RollbackKind>(
    ['none', 2],
    ['ok', 3],
    ['okPromise', 2],
    ['okDouble', 1],
    ['throw', 1],
    ['reject', 1],
    ['hang', 1],
  ),
  rollbackAsync: fc.boolean(),
});

const chainSpec: fc.Arbitrary<ChainSpec> = fc.record({
  flows: fc.array(flowSpec, { minLength: 1, maxLength: 8 }),
  noRollback: weighted([false, 9], [true, 1]),
});

const FAILING: ReadonlySet<Outcome> = new Set(['fail', 'throw', 'reject', 'timeout', 'failOnAbort']);
const TIMES_OUT: ReadonlySet<Outcome> = new Set(['timeout', 'failOnAbort']);
const DOUBLES: ReadonlySet<Outcome> = new Set(['next', 'fail', 'resolve', 'reject']);
const ROLLBACK_FAILS: ReadonlySet<RollbackKind> = new Set(['throw', 'reject', 'hang']);

/** What the spec says must happen. */
function model(spec: ChainSpec) {
  const n = spec.flows.length;
  let failing = -1;
  const ran: number[] = [];
  for (let i = 0; i < n; i++) {
    const flow = spec.flows[i] as FlowSpec;
    if (flow.skip !== 'no') continue;
    ran.push(i);
    if (FAILING.has(flow.outcome)) {
      failing = i;
      break;
    }
  }
  const setErrorAt = failing >= 0 ? -1 : ran.find((i) => spec.flows[i]?.setError === true) ?? -1;
  const rolledBack =
    failing < 0 || spec.noRollback ? [] : ran.filter((i) => spec.flows[i]?.rollback !== 'none').reverse();
  const rollbackFailures = rolledBack.filter((i) => ROLLBACK_FAILS.has(spec.flows[i]?.rollback as RollbackKind));
  const reached = failing < 0 ? n : failing + 1;
  const outcomes: FlowOutcome[] = spec.flows.map((flow, i) => {
    if (i >= reached) return 'notRun';
    if (flow.skip !== 'no') return 'skipped';
    if (rolledBack.includes(i)) return ROLLBACK_FAILS.has(flow.rollback) ? 'rollbackFailed' : 'rolledBack';
    return i === failing ? 'failed' : 'done';
  });
  const doubles = ran.filter((i) => {
    const flow = spec.flows[i] as FlowSpec;
    return flow.double && DOUBLES.has(flow.outcome);
  });
  const rollbackDoubles = rolledBack.filter((i) => spec.flows[i]?.rollback === 'okDouble');
  const lateCalls = failing >= 0 && spec.flows[failing]?.outcome === 'timeout' && spec.flows[failing]?.double ? 1 : 0;
  return { failing, setErrorAt, ran, rolledBack, rollbackFailures, outcomes, doubles, rollbackDoubles, lateCalls };
}

/** Builds the chain the spec describes; everything observable goes into `observed`. */
function build(spec: ChainSpec) {
  const child = spec.nested === undefined ? undefined : new FlowChain({ name: 'child' });
  const observed = {
    events: [] as string[],
    doubleCodes: [] as [number, string][],
    rollbackDoubleCodes: [] as [number, string][],
    lateThrows: 0,
    lateCalls: 0,
    settlements: 0,
    errorArgs: [] as unknown[],
    doneArgs: [] as unknown[],
  };
  const errors = spec.flows.map((_, i) => new Error(`e${i}`));
  const setErrors = spec.flows.map((_, i) => new Error(`set${i}`));
  const rollbackErrors = spec.flows.map((_, i) => new Error(`rb${i}`));
  const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  const second = (i: number, trigger: FlowTrigger): void => {
    try {
      trigger.next();
      observed.doubleCodes.push([i, 'no throw']);
    } catch (error) {
      observed.doubleCodes.push([i, (error as FlowChainError).code]);
    }
  };

  const chain = new FlowChain({ timeoutMs: TIMEOUT_MS, rollbackTimeoutMs: TIMEOUT_MS, noRollback: spec.noRollback });
  spec.flows.forEach((f, i) => {
    const flow: Flow = {
      name: `f${i}`,
      run(trigger) {
        observed.events.push(`run:${i}`);
        if (f.setError) trigger.setError(setErrors[i]);
        const later = (action: () => void): void => {
          if (f.async) setTimeout(action, f.delay);
          else action();
        };
        switch (f.outcome) {
          case 'next':
          case 'fail':
            later(() => {
              if (f.outcome === 'next') trigger.next();
              else trigger.fail(errors[i]);
              if (f.double) second(i, trigger);
            });
            return undefined;
          case 'throw':
            throw errors[i];
          case 'resolve':
          case 'reject': {
            const settled = f.async ? wait(f.delay) : Promise.resolve();
            if (f.double) setTimeout(() => second(i, trigger), f.delay + 1);
            return f.outcome === 'resolve' ? settled : settled.then(() => Promise.reject(errors[i]));
          }
          case 'timeout':
            if (f.double) {
              setTimeout(() => {
                observed.lateCalls++;
                try {
                  trigger.next();
                } catch {
                  observed.lateThrows++;
                }
              }, LATE_MS);
            }
            return undefined;
          case 'nextThenThrow':
            trigger.next();
            throw errors[i];
          case 'nextThenReject':
            return (async () => {
              if (f.async) await wait(f.delay);
              trigger.next();
              throw errors[i];
            })();
          case 'failOnAbort':
            trigger.signal.addEventListener('abort', () => trigger.fail(trigger.signal.reason));
            return undefined;
        }
      },
    };
    if (f.skip === 'sync') flow.skip = () => true;
    if (f.skip === 'async') flow.skip = async () => true;
    if (f.rollback !== 'none') {
      flow.rollback = (trigger) => {
        observed.events.push(`rollback:${i}`);
        const later = (action: () => void): void => {
          if (f.rollbackAsync) setTimeout(action, f.delay);
          else action();
        };
        switch (f.rollback) {
          case 'ok':
          case 'okDouble':
            later(() => {
              trigger.rollback();
              if (f.rollback === 'okDouble') {
                try {
                  trigger.rollback();
                  observed.rollbackDoubleCodes.push([i, 'no throw']);
                } catch (error) {
                  observed.rollbackDoubleCodes.push([i, (error as FlowChainError).code]);
                }
              }
            });
            return undefined;
          case 'okPromise':
            return f.rollbackAsync ? wait(f.delay) : Promise.resolve();
          case 'throw':
            throw rollbackErrors[i];
          case 'reject':
            return (f.rollbackAsync ? wait(f.delay) : Promise.resolve()).then(() => Promise.reject(rollbackErrors[i]));
          default:
            return undefined; // hang: the rollback timeout fails it
        }
      };
    }
    const nested = spec.nested;
    if (child !== undefined && nested !== undefined && i >= nested[0] && i < nested[1]) {
      if (i === nested[0]) chain.flow(child);
      child.flow(flow);
    } else {
      chain.flow(flow);
    }
  });
  chain
    .done((data) => {
      observed.events.push('done');
      observed.doneArgs.push(data);
    })
    .error((error, data) => {
      observed.events.push('error');
      observed.errorArgs.push(error, data);
    })
    .finally(() => {
      observed.events.push('finally');
    });
  return { chain, observed, errors, setErrors, rollbackErrors };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

/** Runs a chain built from the spec to its end, optionally calling cancel('stop') at `cancelAt` ms. */
async function execute(spec: ChainSpec, cancelAt?: number) {
  const built = build(spec);
  const { chain, observed } = built;
  let result: { ok: true; value: unknown } | { ok: false; error: unknown } | undefined;
  let canceled = false;
  if (cancelAt !== undefined) {
    setTimeout(() => {
      // Marked first: a flow that fails from its abort listener unwinds inside cancel().
      const mark = observed.events.length;
      observed.events.push('cancel');
      canceled = chain.cancel('stop');
      if (!canceled) observed.events.splice(mark, 1);
    }, cancelAt);
  }
  chain.start().then(
    (value) => {
      observed.settlements++;
      observed.events.push('settled');
      result = { ok: true, value };
    },
    (error: unknown) => {
      observed.settlements++;
      observed.events.push('settled');
      result = { ok: false, error };
    },
  );
  await vi.runAllTimersAsync();
  await turn();
  return { ...built, result, canceled };
}

type Execution = Awaited<ReturnType<typeof execute>>;

/** Every second explicit call threw FLOW_ALREADY_COMPLETED; a call after a timeout never throws. */
function checkDoubleCalls(execution: Execution, doubles: number[], rollbackDoubles: number[]): void {
  const { observed } = execution;
  // Promise-style flows make their second call from a timer, so compare by flow.
  const doubleCodes = observed.doubleCodes.slice().sort((x, y) => x[0] - y[0]);
  expect(doubleCodes).toEqual(doubles.map((i) => [i, 'FLOW_ALREADY_COMPLETED']));
  // A first rollback() call may unwind earlier flows before the second call is made.
  const rollbackDoubleCodes = observed.rollbackDoubleCodes.slice().sort((x, y) => y[0] - x[0]);
  expect(rollbackDoubleCodes).toEqual(rollbackDoubles.map((i) => [i, 'FLOW_ALREADY_COMPLETED']));
  expect(observed.lateThrows).toBe(0);
}

/** The failure path's common checks: one rejection, the same error everywhere, rollbackErrors in order. */
function checkFailure(spec: ChainSpec, execution: Execution, rollbackFailures: number[]): FlowChainError {
  const { chain, observed, result, rollbackErrors } = execution;
  expect(result?.ok).toBe(false);
  const error = (result as { error: FlowChainError }).error;
  expect(error).toBeInstanceOf(FlowChainError);
  expect(observed.errorArgs).toHaveLength(2);
  expect(observed.errorArgs[0]).toBe(error);
  expect(observed.errorArgs[1]).toBe(chain.data);
  expect(observed.doneArgs).toEqual([]);
  expect(chain.state).toBe('failed');
  expect(chain.failure).toBe(error);
  expect(error.rollbackErrors.map((e) => [e.code, e.flowIndex])).toEqual(
    rollbackFailures.map((i) => ['ROLLBACK_FAILED', i]),
  );
  error.rollbackErrors.forEach((rollbackError, k) => {
    const i = rollbackFailures[k] as number;
    if (spec.flows[i]?.rollback === 'hang') expect(rollbackError.cause).toMatchObject({ code: 'FLOW_TIMEOUT' });
    else expect(rollbackError.cause).toBe(rollbackErrors[i]);
  });
  return error;
}

/** Without cancellation the run must match the model exactly. */
function checkAgainstModel(spec: ChainSpec, execution: Execution): void {
  const { chain, observed, result, errors, setErrors } = execution;
  const expected = model(spec);
  // Runs in order up to the failure; rollbacks exactly the reverse of the started, not skipped
  // flows up to the failing one (failing included); then error xor done; then finally, last.
  const fails = expected.failing >= 0 || expected.setErrorAt >= 0;
  expect(observed.events).toEqual([
    ...expected.ran.map((i) => `run:${i}`),
    ...expected.rolledBack.map((i) => `rollback:${i}`),
    fails ? 'error' : 'done',
    'finally',
    'settled',
  ]);
  expect(observed.settlements).toBe(1);
  expect(chain.trace.map((entry) => entry.outcome)).toEqual(expected.outcomes);
  checkDoubleCalls(execution, expected.doubles, expected.rollbackDoubles);
  expect(observed.lateCalls).toBe(expected.lateCalls);

  if (!fails) {
    expect(result).toEqual({ ok: true, value: chain.data });
    expect(observed.doneArgs).toEqual([chain.data]);
    expect(observed.errorArgs).toEqual([]);
    expect(chain.state).toBe('succeeded');
    return;
  }
  const error = checkFailure(spec, execution, expected.rollbackFailures);
  if (expected.failing >= 0) {
    const failing = spec.flows[expected.failing] as FlowSpec;
    expect(error.flowIndex).toBe(expected.failing);
    if (TIMES_OUT.has(failing.outcome)) {
      expect(error.code).toBe('FLOW_TIMEOUT');
    } else {
      expect(error.code).toBe('FLOW_FAILED');
      expect(error.cause).toBe(errors[expected.failing]);
    }
  } else {
    // F6: setError takes the error path without rollback.
    expect(error.code).toBe('FLOW_FAILED');
    expect(error.flowIndex).toBe(expected.setErrorAt);
    expect(error.cause).toBe(setErrors[expected.setErrorAt]);
  }
}

const RUNS = Number(process.env.FLOWCHAIN_PROPERTY_RUNS ?? 300);

/** A random chain with a random run of its flows moved into a nested chain. */
const nestedChainSpec: fc.Arbitrary<ChainSpec> = fc.tuple(chainSpec, fc.nat(), fc.nat()).map(([spec, a, b]) => {
  const n = spec.flows.length;
  const from = a % n;
  const to = from + 1 + (b % (n - from));
  // setError inside a nested chain fails that chain (and so rolls the parent back); noRollback
  // would apply to the parent only. Both are covered by the flat property.
  const flows = spec.flows.map((flow, i) => (i >= from && i < to ? { ...flow, setError: false } : flow));
  return { flows, noRollback: false, nested: [from, to] as [number, number] };
});

describe('R4 property-based: random chains keep the invariants of F3–F6', () => {
  it('R4 F3 F4 F5 F6 rollbacks, handlers, completions and the start() promise match the model', async () => {
    await fc.assert(
      fc.asyncProperty(chainSpec, async (spec) => {
        checkAgainstModel(spec, await execute(spec));
      }),
      { numRuns: RUNS },
    );
  });

  it('R4 F12 a nested chain unwinds exactly as if its flows were inline in the parent', async () => {
    await fc.assert(
      fc.asyncProperty(nestedChainSpec, async (spec) => {
        const execution = await execute(spec);
        const { observed, result, errors, setErrors } = execution;
        const expected = model(spec);
        const [from, to] = spec.nested as [number, number];
        const fails = expected.failing >= 0 || expected.setErrorAt >= 0;
        expect(observed.events).toEqual([
          ...expected.ran.map((i) => `run:${i}`),
          ...expected.rolledBack.map((i) => `rollback:${i}`),
          fails ? 'error' : 'done',
          'finally',
          'settled',
        ]);
        expect(observed.settlements).toBe(1);
        checkDoubleCalls(execution, expected.doubles, expected.rollbackDoubles);
        if (!fails) {
          expect(result).toEqual({ ok: true, value: execution.chain.data });
          return;
        }
        const error = (result as { error: FlowChainError }).error;
        expect(error).toBeInstanceOf(FlowChainError);
        expect(error.rollbackErrors.map((e) => [e.code, e.flowName])).toEqual(
          expected.rollbackFailures.map((i) => ['ROLLBACK_FAILED', `f${i}`]),
        );
        if (expected.failing < 0) {
          expect(error.flowName).toBe(`f${expected.setErrorAt}`);
          expect(error.cause).toBe(setErrors[expected.setErrorAt]);
          return;
        }
        const failing = spec.flows[expected.failing] as FlowSpec;
        let own = error;
        if (expected.failing >= from && expected.failing < to) {
          // The parent failed at the nested chain, with the child's error as cause.
          expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'child', flowIndex: from });
          own = error.cause as FlowChainError;
          expect(own).toBeInstanceOf(FlowChainError);
        }
        expect(own.flowName).toBe(`f${expected.failing}`);
        if (TIMES_OUT.has(failing.outcome)) expect(own.code).toBe('FLOW_TIMEOUT');
        else expect(own.cause).toBe(errors[expected.failing]);
      }),
      { numRuns: RUNS },
    );
  });

  it('R4 F11 a cancel at a random moment: no flow runs after it, every started flow is rolled back once', async () => {
    await fc.assert(
      fc.asyncProperty(chainSpec, fc.integer({ min: 0, max: 120 }), async (spec, cancelAt) => {
        const execution = await execute(spec, cancelAt);
        if (!execution.canceled) {
          // Too late to cancel (rolling back or ended): exactly as without cancel.
          checkAgainstModel(spec, execution);
          return;
        }
        const { observed } = execution;
        const expected = model(spec);
        const cancelIndex = observed.events.indexOf('cancel');
        const ran = observed.events.slice(0, cancelIndex).map((event) => Number(event.slice('run:'.length)));
        // The flows that ran are the model's run order, cut short.
        expect(ran).toEqual(expected.ran.slice(0, ran.length));
        const rolledBack = spec.noRollback ? [] : ran.filter((i) => spec.flows[i]?.rollback !== 'none').reverse();
        expect(observed.events).toEqual([
          ...ran.map((i) => `run:${i}`),
          'cancel',
          ...rolledBack.map((i) => `rollback:${i}`),
          'error',
          'finally',
          'settled',
        ]);
        expect(observed.settlements).toBe(1);
        const error = checkFailure(
          spec,
          execution,
          rolledBack.filter((i) => ROLLBACK_FAILS.has(spec.flows[i]?.rollback as RollbackKind)),
        );
        expect(error.code).toBe('CHAIN_CANCELED');
        expect(error.cause).toBe('stop');
        checkDoubleCalls(
          execution,
          ran.filter((i) => spec.flows[i]?.double === true && DOUBLES.has(spec.flows[i]?.outcome as Outcome)),
          rolledBack.filter((i) => spec.flows[i]?.rollback === 'okDouble'),
        );
      }),
      { numRuns: RUNS },
    );
  });
});
