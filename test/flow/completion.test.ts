import { afterEach, describe, expect, it, vi } from 'vitest';
import { FlowChain, FlowChainError, type Flow, type FlowTrigger, type RollbackTrigger } from '../../src/index.js';
import { recorder, rejection, thrownBy, track, turn } from './helpers.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('F2 two ways to finish a flow', () => {
  it('F2 callback style: next() moves on, fail(error) fails with that error as cause', async () => {
    const { log, ok, failing } = recorder();
    const boom = new Error('boom');
    const chain = new FlowChain().flow(ok('a')).flow(failing('b', boom)).flow(ok('c'));

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(error.code).toBe('FLOW_FAILED');
    expect(error.cause).toBe(boom);
    expect(error.flowName).toBe('b');
    expect(error.flowIndex).toBe(1);
    expect(error.rollbackErrors).toEqual([]);
  });

  it('F2 promise style: fulfilment means next, rejection means fail', async () => {
    const { log, ok } = recorder();
    const rejected = new Error('rejected');
    const chain = new FlowChain()
      .flow({
        name: 'fulfils',
        async run() {
          await turn();
          log.push('run:fulfils');
        },
        rollback: async () => {
          log.push('rollback:fulfils');
        },
      })
      .flow({
        name: 'rejects',
        async run() {
          log.push('run:rejects');
          await turn();
          throw rejected;
        },
      })
      .flow(ok('never'));

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:fulfils', 'run:rejects', 'rollback:fulfils']);
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'rejects', flowIndex: 1 });
    expect(error.cause).toBe(rejected);
  });

  it('F2 a synchronous throw from run() fails the flow and never escapes start() (ZStack TestSimpleFlow3)', async () => {
    const { log, ok } = recorder();
    const thrown = new RangeError('thrown');
    const chain = new FlowChain().flow(ok('a')).flow({
      name: 'throws',
      run() {
        log.push('run:throws');
        throw thrown;
      },
      rollback(trigger) {
        log.push('rollback:throws');
        trigger.rollback();
      },
    });

    let promise: Promise<unknown> | undefined;
    expect(() => {
      promise = chain.start();
    }).not.toThrow();
    const error = await rejection(promise as Promise<unknown>);

    expect(log).toEqual(['run:a', 'run:throws', 'rollback:throws', 'rollback:a']);
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'throws', flowIndex: 1 });
    expect(error.cause).toBe(thrown);
  });

  it('F2 accepts fail() without an error and stops the chain there (ZStack TestSimpleFlow1)', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow({ name: 'b', run: (trigger) => (log.push('run:b'), trigger.fail()) })
      .flow(ok('c'));

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:b', 'rollback:a']);
    expect(error.code).toBe('FLOW_FAILED');
    expect(error.cause).toBeUndefined();
    expect(error.flowName).toBe('b');
  });

  it('F2 rollbacks finish alike: trigger.rollback() or a settled promise', async () => {
    const log: string[] = [];
    const chain = new FlowChain()
      .flow({ name: 'callback', run: (t) => t.next(), rollback: (t) => (log.push('callback'), t.rollback()) })
      .flow({
        name: 'promise',
        run: (t) => t.next(),
        async rollback() {
          await turn();
          log.push('promise');
        },
      })
      .flow({ name: 'fails', run: (t) => t.fail(new Error('x')) });

    await rejection(chain.start());

    expect(log).toEqual(['promise', 'callback']);
  });
});

describe('F3 exactly once: the first completion wins', () => {
  /** A chain a → flow under test → c, counting runs, rollbacks and handlers. */
  function harness(middle: Flow) {
    const counts = { a: 0, c: 0, rollbackA: 0, done: 0, error: 0, finally: 0 };
    const chain = new FlowChain()
      .flow({ name: 'a', run: (t) => (counts.a++, t.next()), rollback: (t) => (counts.rollbackA++, t.rollback()) })
      .flow(middle)
      .flow({ name: 'c', run: (t) => (counts.c++, t.next()) })
      .done(() => {
        counts.done++;
      })
      .error(() => {
        counts.error++;
      })
      .finally(() => {
        counts.finally++;
      });
    return { chain, counts };
  }

  function expectAlreadyCompleted(error: unknown, method: string, flowName = 'b', flowIndex = 1): void {
    expect(error).toBeInstanceOf(FlowChainError);
    expect(error).toMatchObject({ code: 'FLOW_ALREADY_COMPLETED', flowName, flowIndex, details: { method } });
  }

  it('F3 next() twice: the second call throws FLOW_ALREADY_COMPLETED to its caller and the chain does not move', async () => {
    let second: unknown;
    const { chain, counts } = harness({
      name: 'b',
      run(trigger) {
        trigger.next();
        try {
          trigger.next();
        } catch (error) {
          second = error;
        }
      },
    });

    await chain.start();

    expectAlreadyCompleted(second, 'next');
    expect(counts).toEqual({ a: 1, c: 1, rollbackA: 0, done: 1, error: 0, finally: 1 });
  });

  it('F3 next() twice from a later callback: the second throws, after the chain already ended', async () => {
    vi.useFakeTimers();
    let second: unknown;
    const { chain, counts } = harness({
      name: 'b',
      run(trigger) {
        setTimeout(() => {
          trigger.next();
          try {
            trigger.next();
          } catch (error) {
            second = error;
          }
        }, 10);
      },
    });

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(10);

    expectAlreadyCompleted(second, 'next');
    expect(counts).toEqual({ a: 1, c: 1, rollbackA: 0, done: 1, error: 0, finally: 1 });
    expect(started.current.status).toBe('fulfilled');
    expect(started.settlements).toBe(1);
  });

  it('F3 next() then fail(): fail throws and nothing is rolled back', async () => {
    let second: unknown;
    const { chain, counts } = harness({
      name: 'b',
      run(trigger) {
        trigger.next();
        try {
          trigger.fail(new Error('too late'));
        } catch (error) {
          second = error;
        }
      },
    });

    await chain.start();

    expectAlreadyCompleted(second, 'fail');
    expect(chain.state).toBe('succeeded');
    expect(counts).toEqual({ a: 1, c: 1, rollbackA: 0, done: 1, error: 0, finally: 1 });
  });

  it('F3 fail() then next(): next throws, the chain fails with the first error and the next flow never runs', async () => {
    let second: unknown;
    const first = new Error('first');
    const { chain, counts } = harness({
      name: 'b',
      run(trigger) {
        trigger.fail(first);
        try {
          trigger.next();
        } catch (error) {
          second = error;
        }
      },
    });

    const error = await rejection(chain.start());

    expectAlreadyCompleted(second, 'next');
    expect(error.cause).toBe(first);
    expect(counts).toEqual({ a: 1, c: 0, rollbackA: 1, done: 0, error: 1, finally: 1 });
  });

  it('F3 a promise that resolved, then an explicit next(): the call throws and the next flow runs once', async () => {
    let captured: FlowTrigger | undefined;
    const { chain, counts } = harness({
      name: 'b',
      async run(trigger) {
        captured = trigger;
      },
    });

    await chain.start();
    const error = thrownBy(() => captured?.next());

    expectAlreadyCompleted(error, 'next');
    expect(counts).toEqual({ a: 1, c: 1, rollbackA: 0, done: 1, error: 0, finally: 1 });
    expect(chain.state).toBe('succeeded');
  });

  it('F3 rollback() twice: the second call throws and no rollback or handler runs twice', async () => {
    let second: unknown;
    const counts = { rollbackA: 0, rollbackB: 0, error: 0, finally: 0 };
    const chain = new FlowChain()
      .flow({ name: 'a', run: (t) => t.next(), rollback: (t) => (counts.rollbackA++, t.rollback()) })
      .flow({
        name: 'b',
        run: (t) => t.fail(new Error('b failed')),
        rollback(trigger) {
          counts.rollbackB++;
          trigger.rollback();
          try {
            trigger.rollback();
          } catch (error) {
            second = error;
          }
        },
      })
      .error(() => {
        counts.error++;
      })
      .finally(() => {
        counts.finally++;
      });

    const error = await rejection(chain.start());

    expectAlreadyCompleted(second, 'rollback');
    expect(counts).toEqual({ rollbackA: 1, rollbackB: 1, error: 1, finally: 1 });
    expect(error.rollbackErrors).toEqual([]);
  });

  it('F3 a rollback promise that resolved, then an explicit rollback(): the call throws', async () => {
    let captured: RollbackTrigger | undefined;
    let rollbacksOfA = 0;
    const chain = new FlowChain()
      .flow({ name: 'a', run: (t) => t.next(), rollback: (t) => (rollbacksOfA++, t.rollback()) })
      .flow({
        name: 'b',
        run: (t) => t.fail(new Error('b failed')),
        async rollback(trigger) {
          captured = trigger;
        },
      });

    await rejection(chain.start());
    const error = thrownBy(() => captured?.rollback());

    expectAlreadyCompleted(error, 'rollback');
    expect(rollbacksOfA).toBe(1);
    expect(chain.state).toBe('failed');
  });

  it('F3 an async run that calls next() and then returns, or then rejects, is fine and silent', async () => {
    const late: unknown[] = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const { log, ok } = recorder();
      const chain = new FlowChain()
        .flow({
          name: 'next-then-return',
          async run(trigger) {
            trigger.next();
            await turn();
            log.push('returned');
          },
        })
        .flow({
          name: 'next-then-reject',
          async run(trigger) {
            await turn();
            trigger.next();
            throw new Error('ignored: the flow already completed');
          },
        })
        .flow(ok('last'));
      chain.on('flow:late', (...args) => late.push(args));

      const data = await chain.start();
      await turn();
      await turn();

      expect(data).toBe(chain.data);
      expect(log).toEqual(['returned', 'run:last']);
      expect(late).toEqual([]);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('F3 an async run that calls fail() and then resolves fails once, silently', async () => {
    const late: unknown[] = [];
    const reason = new Error('explicit');
    const { log, ok } = recorder();
    const chain = new FlowChain().flow(ok('a')).flow({
      name: 'b',
      async run(trigger) {
        trigger.fail(reason);
        await turn();
      },
    });
    chain.on('flow:late', (...args) => late.push(args));

    const error = await rejection(chain.start());
    await turn();

    expect(error.cause).toBe(reason);
    expect(log).toEqual(['run:a', 'rollback:a']);
    expect(late).toEqual([]);
  });

  it('F3 a synchronous throw after next() is ignored, reported as flow:late, and never fails the chain', async () => {
    const late: [string, number, FlowChainError][] = [];
    const thrown = new Error('after next');
    const { log, ok } = recorder();
    const chain = new FlowChain()
      .flow({
        name: 'b',
        run(trigger) {
          trigger.next();
          throw thrown;
        },
      })
      .flow(ok('c'));
    chain.on('flow:late', (name, index, error) => late.push([name, index, error]));

    await chain.start();

    expect(log).toEqual(['run:c']);
    expect(late).toHaveLength(1);
    expect(late[0]?.[0]).toBe('b');
    expect(late[0]?.[1]).toBe(0);
    expect(late[0]?.[2]).toMatchObject({ code: 'FLOW_ALREADY_COMPLETED', flowName: 'b', flowIndex: 0 });
    expect(late[0]?.[2].cause).toBe(thrown);
  });
});

describe('F2/F3 thenables that are not promises', () => {
  /** A thenable that calls back from then() itself, with `outcome`, as some non-promise thenables do. */
  function syncThenable(outcome: { ok: true } | { ok: false; error: unknown }): PromiseLike<void> {
    return {
      then(onFulfilled, onRejected) {
        if (outcome.ok) onFulfilled?.(undefined);
        else onRejected?.(outcome.error);
        return this as unknown as PromiseLike<never>;
      },
    };
  }

  it('F2 a thenable that fulfils from then() itself completes its flow and the chain runs on', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain()
      .flow({
        name: 'a',
        run: () => {
          log.push('run:a');
          return syncThenable({ ok: true });
        },
      })
      .flow(ok('b'));

    await chain.start();

    expect(log).toEqual(['run:a', 'run:b']);
    expect(chain.state).toBe('succeeded');
    expect(chain.trace.map((flow) => flow.outcome)).toEqual(['done', 'done']);
  });

  it('F2 a thenable that rejects from then() itself fails its flow; rollbacks answering the same way unwind', async () => {
    const boom = new Error('boom');
    const log: string[] = [];
    const flow = (name: string, outcome: { ok: true } | { ok: false; error: unknown }): Flow => ({
      name,
      run: () => {
        log.push(`run:${name}`);
        return syncThenable(outcome);
      },
      rollback: () => {
        log.push(`rollback:${name}`);
        return syncThenable({ ok: true });
      },
    });
    const chain = new FlowChain().flow(flow('a', { ok: true })).flow(flow('b', { ok: false, error: boom }));

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'b', flowIndex: 1 });
    expect(error.cause).toBe(boom);
    expect(chain.trace.map((entry) => entry.outcome)).toEqual(['rolledBack', 'rolledBack']);
  });

  it('F3 a thenable that calls back twice (fulfil, then fulfil and reject again, later) completes its flow once', async () => {
    const { log, ok } = recorder();
    let callAgain: (() => void) | undefined;
    const chain = new FlowChain()
      .flow({
        name: 'a',
        run: () => {
          log.push('run:a');
          return {
            then(onFulfilled: (value: unknown) => void, onRejected: (error: unknown) => void) {
              onFulfilled(undefined);
              callAgain = () => {
                onFulfilled(undefined);
                onRejected(new Error('late'));
              };
            },
          } as unknown as PromiseLike<void>;
        },
      })
      .flow({
        name: 'b',
        run: async () => {
          log.push('run:b');
          await turn();
          callAgain?.(); // while b's own promise is the one followed
          await turn();
        },
      })
      .flow(ok('c'));

    await chain.start();

    expect(log).toEqual(['run:a', 'run:b', 'run:c']);
    expect(chain.state).toBe('succeeded');
  });

  it('F2 a thenable whose then() throws fails its flow with that error', async () => {
    const { log, ok } = recorder();
    const broken = new Error('then() threw');
    const chain = new FlowChain().flow(ok('a')).flow({
      name: 'b',
      run: () =>
        ({
          then() {
            throw broken;
          },
        }) as unknown as PromiseLike<void>,
    });

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'rollback:a']);
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'b' });
    expect(error.cause).toBe(broken);
  });
});
