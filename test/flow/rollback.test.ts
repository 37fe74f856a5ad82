import { describe, expect, it } from 'vitest';
import { FlowChain, FlowChainError, type Flow } from '../../src/index.js';
import { recorder, rejection, turn } from './helpers.js';

describe('F4 rollback order', () => {
  it('F4 rolls back the failing flow first, then completed flows in reverse (ZStack TestSimpleFlow2)', async () => {
    const { log, ok, failing } = recorder();
    const chain = new FlowChain().flow(ok('a')).flow(ok('b')).flow(failing('c', new Error('c failed'))).flow(ok('d'));

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:b', 'run:c', 'rollback:c', 'rollback:b', 'rollback:a']);
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'c', flowIndex: 2, flowCount: 4 });
  });

  it('F4 passes over skipped flows, flows that never started and flows without rollback', async () => {
    const { log, ok, failing, plain } = recorder();
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow(plain('no-rollback'))
      .flow(ok('skipped', { skip: () => true }))
      .flow(ok('d'))
      .flow(failing('e', new Error('e failed')))
      .flow(ok('never-started'));

    await rejection(chain.start());

    expect(log).toEqual([
      'run:a',
      'run:no-rollback',
      'run:d',
      'run:e',
      'rollback:e',
      'rollback:d',
      'rollback:a',
    ]);
  });

  it('F4 a failing flow without rollback is passed over and the earlier ones still roll back', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow(ok('b'))
      .flow({ name: 'c', run: (t) => (log.push('run:c'), t.fail(new Error('x'))) });

    await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:b', 'run:c', 'rollback:b', 'rollback:a']);
  });

  it('F4 rolls back skipped-around flows after a failure of an exception-throwing flow (ZStack TestSimpleFlow13)', async () => {
    let counter = 0;
    const counting = (name: string, extra: Partial<Flow> = {}): Flow => ({
      name,
      run: (t) => (counter++, t.next()),
      rollback: (t) => (counter--, t.rollback()),
      ...extra,
    });
    const chain = new FlowChain()
      .flow(counting('1'))
      .flow(counting('2', { skip: () => true }))
      .flow(counting('3'))
      .flow({
        name: '4',
        run() {
          counter++;
          throw new Error('operation failure');
        },
        rollback: (t) => (counter--, t.rollback()),
      });

    await rejection(chain.start());

    expect(counter).toBe(0);
  });

  it('F4 waits for each asynchronous rollback before starting the previous one', async () => {
    const log: string[] = [];
    const slow = (name: string): Flow => ({
      name,
      run: (t) => t.next(),
      async rollback() {
        log.push(`begin:${name}`);
        await turn();
        await turn();
        log.push(`end:${name}`);
      },
    });
    const chain = new FlowChain().flow(slow('a')).flow(slow('b')).flow({ name: 'c', run: (t) => t.fail(new Error('x')) });

    await rejection(chain.start());

    expect(log).toEqual(['begin:b', 'end:b', 'begin:a', 'end:a']);
  });

  it('F4 gives every rollback the chain error on trigger.error', async () => {
    const seen: unknown[] = [];
    const chain = new FlowChain()
      .flow({ name: 'a', run: (t) => t.next(), rollback: (t) => (seen.push(t.error), t.rollback()) })
      .flow({ name: 'b', run: (t) => t.fail(new Error('b')), rollback: (t) => (seen.push(t.error), t.rollback()) });

    const error = await rejection(chain.start());

    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe(error);
    expect(seen[1]).toBe(error);
  });
});

describe('F5 rollback failures', () => {
  it('F5 records a throwing or rejecting rollback and goes on unwinding; the error keeps cause and rollbackErrors in order', async () => {
    const log: string[] = [];
    const original = new Error('original failure');
    const thrownByC = new Error('rollback of c threw');
    const rejectedByA = new Error('rollback of a rejected');
    const errorsSeen: FlowChainError[] = [];
    const chain = new FlowChain()
      .flow({
        name: 'a',
        run: (t) => t.next(),
        async rollback() {
          log.push('rollback:a');
          throw rejectedByA;
        },
      })
      .flow({ name: 'b', run: (t) => t.next(), rollback: (t) => (log.push('rollback:b'), t.rollback()) })
      .flow({
        name: 'c',
        run: (t) => t.next(),
        rollback() {
          log.push('rollback:c');
          throw thrownByC;
        },
      })
      .flow({ name: 'd', run: (t) => t.fail(original), rollback: (t) => (log.push('rollback:d'), t.rollback()) })
      .error((error) => {
        errorsSeen.push(error);
      });

    const error = await rejection(chain.start());

    expect(log).toEqual(['rollback:d', 'rollback:c', 'rollback:b', 'rollback:a']);
    expect(error.code).toBe('FLOW_FAILED');
    expect(error.cause).toBe(original);
    expect(error.rollbackErrors).toHaveLength(2);
    const [first, second] = error.rollbackErrors;
    expect(first).toBeInstanceOf(FlowChainError);
    expect(first).toMatchObject({ code: 'ROLLBACK_FAILED', flowName: 'c', flowIndex: 2, flowCount: 4 });
    expect(first?.cause).toBe(thrownByC);
    expect(first?.message).toContain('c (3/4)');
    expect(second).toMatchObject({ code: 'ROLLBACK_FAILED', flowName: 'a', flowIndex: 0, flowCount: 4 });
    expect(second?.cause).toBe(rejectedByA);
    expect(errorsSeen).toEqual([error]);
    expect(errorsSeen[0]).toBe(error);
  });

  it('F5 continues after a throwing rollback of the failing flow itself (ZStack TestSimpleFlow4)', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain().flow(ok('a')).flow({
      name: 'b',
      run: (t) => t.fail(new Error('b')),
      rollback() {
        log.push('rollback:b');
        throw new Error('rollback of b threw');
      },
    });

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'rollback:b', 'rollback:a']);
    expect(error.rollbackErrors.map((e) => [e.code, e.flowName])).toEqual([['ROLLBACK_FAILED', 'b']]);
  });

  it('F5 skipRestRollbacks() inside a rollback stops the unwinding after that rollback', async () => {
    const { log, ok, failing } = recorder();
    const handlers: string[] = [];
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow(ok('b'))
      .flow(
        ok('c', {
          rollback(trigger) {
            log.push('rollback:c');
            trigger.skipRestRollbacks();
            trigger.rollback();
          },
        }),
      )
      .flow(ok('d'))
      .flow(failing('e', new Error('e')))
      .error(() => {
        handlers.push('error');
      })
      .finally(() => {
        handlers.push('finally');
      });

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:b', 'run:c', 'run:d', 'run:e', 'rollback:e', 'rollback:d', 'rollback:c']);
    expect(handlers).toEqual(['error', 'finally']);
    expect(error.code).toBe('FLOW_FAILED');
    expect(chain.trace.map((entry) => entry.outcome)).toEqual(['done', 'done', 'rolledBack', 'rolledBack', 'rolledBack']);
  });

  it('F5 the option noRollback skips every rollback and goes straight to the error handler', async () => {
    const { log, ok, failing } = recorder();
    const handlers: string[] = [];
    const original = new Error('b');
    const chain = new FlowChain({ noRollback: true })
      .flow(ok('a'))
      .flow(failing('b', original))
      .flow(ok('c'))
      .error((error) => {
        handlers.push(`error:${error.code}`);
      })
      .finally(() => {
        handlers.push('finally');
      });

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:b']);
    expect(handlers).toEqual(['error:FLOW_FAILED', 'finally']);
    expect(error.cause).toBe(original);
    expect(error.rollbackErrors).toEqual([]);
  });

  it('F5 the builder noRollback() does the same, and noRollback(false) turns rollback back on', async () => {
    const off = recorder();
    await rejection(new FlowChain().noRollback().flow(off.ok('a')).flow(off.failing('b', new Error('b'))).start());
    expect(off.log).toEqual(['run:a', 'run:b']);

    const on = recorder();
    await rejection(
      new FlowChain({ noRollback: true }).noRollback(false).flow(on.ok('a')).flow(on.failing('b', new Error('b'))).start(),
    );
    expect(on.log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
  });
});

describe('F6 setError', () => {
  it('F6 records the error, runs every flow, then takes the error path without any rollback', async () => {
    const { log, ok } = recorder();
    const handlers: string[] = [];
    const recorded = new Error('recorded');
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow(
        ok('b', {
          run(trigger) {
            log.push('run:b');
            trigger.setError(recorded);
            trigger.next();
          },
        }),
      )
      .flow(ok('c'))
      .done(() => {
        handlers.push('done');
      })
      .error((error) => {
        handlers.push(`error:${error.code}`);
      })
      .finally(() => {
        handlers.push('finally');
      });

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:b', 'run:c']);
    expect(handlers).toEqual(['error:FLOW_FAILED', 'finally']);
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'b', flowIndex: 1, flowCount: 3 });
    expect(error.cause).toBe(recorded);
    expect(error.rollbackErrors).toEqual([]);
    expect(chain.state).toBe('failed');
    expect(chain.trace.map((entry) => entry.outcome)).toEqual(['done', 'done', 'done']);
  });

  it('F6 keeps the first setError when several flows set one', async () => {
    const first = new Error('first');
    const chain = new FlowChain()
      .flow({ name: 'a', run: (t) => (t.setError(first), t.next()) })
      .flow({ name: 'b', run: (t) => (t.setError(new Error('second')), t.next()) });

    const error = await rejection(chain.start());

    expect(error.cause).toBe(first);
    expect(error.flowName).toBe('a');
  });

  it('F6 a later real failure still rolls back, with that failure as the cause', async () => {
    const { log, ok, failing } = recorder();
    const failure = new Error('real failure');
    const chain = new FlowChain()
      .flow(ok('a', { run: (t) => (log.push('run:a'), t.setError(new Error('soft')), t.next()) }))
      .flow(failing('b', failure));

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(error.cause).toBe(failure);
    expect(error.flowName).toBe('b');
  });
});
