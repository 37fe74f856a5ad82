import { describe, expect, it } from 'vitest';
import { FlowChain, FlowChainError, type Flow } from '../../src/index.js';
import { recorder, thrownBy } from './helpers.js';

/** Lets a test pass values the types forbid, as a JavaScript caller could. */
const loose = <Value>(value: unknown): Value => value as Value;

const run = (trigger: { next(): void }): void => trigger.next();

/** Two flows, so that a change to the list would show. */
function twoFlowChain(): FlowChain {
  return new FlowChain({ name: 'target' }).flow({ name: 'a', run }).flow({ name: 'b', run });
}

/**
 * `call` must throw INVALID_ARGUMENT naming the option (in backticks) and the value received,
 * and leave the chain's flow list exactly as it was.
 */
function expectInvalid(chain: FlowChain, call: () => unknown, option: string, received: string): FlowChainError {
  const before = chain.flows;
  const error = thrownBy(call);
  expect(error).toBeInstanceOf(FlowChainError);
  expect(error.code).toBe('INVALID_ARGUMENT');
  expect(error.message).toContain(`\`${option}\``);
  expect(error.message).toContain(`got ${received}`);
  expect(error.details).toEqual({ option });
  const after = chain.flows;
  expect(after).toHaveLength(before.length);
  after.forEach((flow, i) => expect(flow).toBe(before[i]));
  expect(chain.state).toBe('idle');
  return error;
}

describe('bad input to flow() and insert() (F1, R2)', () => {
  it('F1 rejects arguments that are not flows', () => {
    const chain = twoFlowChain();
    expectInvalid(chain, () => chain.flow(loose(42)), 'flow', '42');
    expectInvalid(chain, () => chain.flow(loose(null)), 'flow', 'null');
    expectInvalid(chain, () => chain.flow(loose(undefined)), 'flow', 'undefined');
    expectInvalid(chain, () => chain.flow(loose('copy')), 'flow', '"copy"');
    expectInvalid(chain, () => chain.flow(loose(() => undefined)), 'flow', 'a function');
    expectInvalid(chain, () => chain.insert(loose('x')), 'flow', '"x"');
    expectInvalid(chain, () => chain.insert(loose({})), 'flow.run', 'undefined');
    expectInvalid(chain, () => chain.insert(loose(0)), 'flow', 'undefined');
  });

  it('F1 rejects a flow without a run function', () => {
    const chain = twoFlowChain();
    expectInvalid(chain, () => chain.flow(loose({ name: 'x' })), 'flow.run', 'undefined');
    expectInvalid(chain, () => chain.flow(loose({ run: 'go' })), 'flow.run', '"go"');
  });

  it('F1 rejects a non-function rollback or skip and a non-string name', () => {
    const chain = twoFlowChain();
    expectInvalid(chain, () => chain.flow(loose({ run, rollback: 1 })), 'flow.rollback', '1');
    expectInvalid(chain, () => chain.flow(loose({ run, rollback: {} })), 'flow.rollback', 'an object');
    expectInvalid(chain, () => chain.flow(loose({ run, skip: true })), 'flow.skip', 'true');
    expectInvalid(chain, () => chain.flow(loose({ run, name: 5 })), 'flow.name', '5');
  });

  it('F10 rejects negative, non-finite, too large and non-number flow timeouts', () => {
    const chain = twoFlowChain();
    expectInvalid(chain, () => chain.flow({ run, timeoutMs: -1 }), 'flow.timeoutMs', '-1');
    expectInvalid(chain, () => chain.flow({ run, timeoutMs: Number.NaN }), 'flow.timeoutMs', 'NaN');
    expectInvalid(chain, () => chain.flow({ run, timeoutMs: Number.POSITIVE_INFINITY }), 'flow.timeoutMs', 'Infinity');
    const tooLarge = expectInvalid(chain, () => chain.flow({ run, timeoutMs: 2 ** 31 }), 'flow.timeoutMs', '2147483648');
    expect(tooLarge.message).toContain('2147483647');
    expectInvalid(chain, () => chain.flow(loose({ run, timeoutMs: '100' })), 'flow.timeoutMs', '"100"');
    // The limits themselves are fine.
    chain.flow({ run, timeoutMs: 0 }).flow({ run, timeoutMs: 2 ** 31 - 1 });
    expect(chain.flows).toHaveLength(4);
  });

  it('F1 rejects an insert index out of range or not an integer', () => {
    const chain = twoFlowChain();
    const flow: Flow = { name: 'x', run };
    const outOfRange = expectInvalid(chain, () => chain.insert(3, flow), 'index', '3');
    expect(outOfRange.message).toContain('from 0 to 2');
    expectInvalid(chain, () => chain.insert(-1, flow), 'index', '-1');
    expectInvalid(chain, () => chain.insert(1.5, flow), 'index', '1.5');
    expectInvalid(chain, () => chain.insert(Number.NaN, flow), 'index', 'NaN');
    expectInvalid(chain, () => chain.insert(1, loose(null)), 'flow', 'null');
  });

  it('F12 rejects nesting the chain itself, a started chain, or a chain with its own data', async () => {
    const chain = twoFlowChain();
    expectInvalid(chain, () => chain.flow(chain), 'flow', 'an instance of FlowChain');

    const started = new FlowChain().flow({ run });
    await started.start();
    const notStarted = expectInvalid(chain, () => chain.flow(started), 'flow', 'an instance of FlowChain');
    expect(notStarted.message).toContain('has not been started');

    const ownData = new FlowChain({ data: { x: 1 } }).flow({ run });
    const withData = expectInvalid(chain, () => chain.flow(loose(ownData)), 'flow', 'an instance of FlowChain');
    expect(withData.message).toContain('without `data`');
  });
});

describe('bad input to parallel() (F12, R2)', () => {
  it('F12 rejects a concurrency below 1 or not an integer', () => {
    const chain = twoFlowChain();
    const members: Flow[] = [{ name: 'm', run }];
    expectInvalid(chain, () => chain.parallel(members, { concurrency: 0 }), 'concurrency', '0');
    expectInvalid(chain, () => chain.parallel(members, { concurrency: -2 }), 'concurrency', '-2');
    expectInvalid(chain, () => chain.parallel(members, { concurrency: 1.5 }), 'concurrency', '1.5');
    expectInvalid(chain, () => chain.parallel(members, { concurrency: Number.NaN }), 'concurrency', 'NaN');
    expectInvalid(chain, () => chain.parallel(members, loose({ concurrency: '2' })), 'concurrency', '"2"');
    chain.parallel(members, { concurrency: Number.POSITIVE_INFINITY });
    expect(chain.flows).toHaveLength(3);
  });

  it('F12 rejects an empty group, a group that is not an array, bad members and a bad name', () => {
    const chain = twoFlowChain();
    expectInvalid(chain, () => chain.parallel([]), 'flows', 'an array of length 0');
    expectInvalid(chain, () => chain.parallel(loose(42)), 'flows', '42');
    expectInvalid(chain, () => chain.parallel(loose([{ name: 'ok', run }, { name: 'bad' }])), 'flows[1].run', 'undefined');
    expectInvalid(chain, () => chain.parallel([{ run }], loose({ name: 9 })), 'name', '9');
    expectInvalid(chain, () => chain.parallel([{ run }], loose(null)), 'options', 'null');
  });
});

describe('bad chain options (F1, F5, F10, R2)', () => {
  it('F1 rejects a chain name that is not a string and data that is not an object', () => {
    const invalid = (options: unknown, option: string, received: string): void => {
      const error = thrownBy(() => new FlowChain(loose<never>(options)));
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toContain(`\`${option}\``);
      expect(error.message).toContain(`got ${received}`);
    };
    invalid({ name: 42 }, 'name', '42');
    invalid({ name: null }, 'name', 'null');
    invalid({ data: 'text' }, 'data', '"text"');
    invalid({ data: null }, 'data', 'null');
    invalid({ data: 5 }, 'data', '5');
    invalid(null, 'options', 'null');
    invalid('options', 'options', '"options"');
    invalid({ timeoutMs: -5 }, 'timeoutMs', '-5');
    invalid({ timeoutMs: Number.POSITIVE_INFINITY }, 'timeoutMs', 'Infinity');
    invalid({ rollbackTimeoutMs: 2 ** 32 }, 'rollbackTimeoutMs', '4294967296');
    invalid({ rollbackTimeoutMs: Number.NaN }, 'rollbackTimeoutMs', 'NaN');
    invalid({ noRollback: 'yes' }, 'noRollback', '"yes"');
    invalid({ allowEmptyFlow: 1 }, 'allowEmptyFlow', '1');
    invalid({ preciseTiming: 'no' }, 'preciseTiming', '"no"');
  });

  it('F5 rejects a non-boolean noRollback() argument', () => {
    const chain = twoFlowChain();
    expectInvalid(chain, () => chain.noRollback(loose('yes')), 'noRollback', '"yes"');
  });
});

describe('bad handlers and hooks (F7, F8, F15, R2)', () => {
  it('F8 rejects handlers that are not functions', () => {
    const chain = twoFlowChain();
    expectInvalid(chain, () => chain.done(loose(42)), 'done', '42');
    expectInvalid(chain, () => chain.error(loose('x')), 'error', '"x"');
    expectInvalid(chain, () => chain.finally(loose(null)), 'finally', 'null');
    expectInvalid(chain, () => chain.preCheck(loose({})), 'preCheck', 'an object');
    expectInvalid(chain, () => chain.marshaller(loose(1)), 'marshaller', '1');
    expectInvalid(chain, () => chain.processor(loose(undefined)), 'processor', 'undefined');
  });

  it('F8 rejects a second done, error or finally handler and keeps the first', async () => {
    const calls: string[] = [];
    const chain = twoFlowChain()
      .done(function first() {
        calls.push('first done');
      })
      .error(() => undefined)
      .finally(() => {
        calls.push('first finally');
      });

    for (const name of ['done', 'error', 'finally'] as const) {
      const error = thrownBy(() =>
        (chain[name] as (handler: () => void) => unknown)(function second() {
          calls.push(`second ${name}`);
        }),
      );
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toContain(`${name} handler`);
      expect(error.message).toContain('already set');
      expect(error.message).toContain('a function (second)');
      expect(error.details).toEqual({ option: name });
    }

    await chain.start();
    expect(calls).toEqual(['first done', 'first finally']);
  });
});

describe('bad use of start() and the builder after start (F9, R2)', () => {
  it('F9 rejects start() options that are not an object and a signal that is not an AbortSignal; the chain stays idle', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain().flow(ok('a'));
    expectInvalid(chain, () => chain.start(loose({ signal: {} })), 'signal', 'an object');
    expectInvalid(chain, () => chain.start(loose({ signal: 'stop' })), 'signal', '"stop"');
    expectInvalid(chain, () => chain.start(loose(null)), 'options', 'null');
    expect(log).toEqual([]);

    await chain.start();
    expect(log).toEqual(['run:a']);
  });

  it('F9 rejects every builder call once the chain has started, naming the call', async () => {
    const chain = twoFlowChain();
    await chain.start();
    const before = chain.flows;
    const flow: Flow = { name: 'late', run };
    const calls: [string, () => unknown][] = [
      ['flow', () => chain.flow(flow)],
      ['insert', () => chain.insert(flow)],
      ['insert', () => chain.insert(0, flow)],
      ['parallel', () => chain.parallel([flow])],
      ['done', () => chain.done(() => undefined)],
      ['error', () => chain.error(() => undefined)],
      ['finally', () => chain.finally(() => undefined)],
      ['preCheck', () => chain.preCheck(() => undefined)],
      ['marshaller', () => chain.marshaller(() => undefined)],
      ['processor', () => chain.processor(() => undefined)],
      ['allowEmptyFlow', () => chain.allowEmptyFlow()],
      ['noRollback', () => chain.noRollback()],
    ];

    for (const [method, call] of calls) {
      const error = thrownBy(call);
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toContain(`${method}()`);
      expect(error.message).toContain('"target"');
      expect(error.message).toContain('already started');
      expect(error.details).toEqual({ option: method });
    }
    const after = chain.flows;
    expect(after).toHaveLength(2);
    after.forEach((f, i) => expect(f).toBe(before[i]));
    expect(chain.state).toBe('succeeded');
  });
});
