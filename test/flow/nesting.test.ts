import { afterEach, describe, expect, it, vi } from 'vitest';
import { FlowChain, FlowChainError, type Flow } from '../../src/index.js';
import { recorder, rejection, track } from './helpers.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('F12 nested chains', () => {
  it('F12 runs a nested chain in place on the parent\'s data', async () => {
    type Data = { trail: string[] };
    const seen: Data[] = [];
    const step = (name: string): Flow<Data> => ({
      name,
      run(trigger, data) {
        seen.push(data);
        data.trail.push(name);
        trigger.next();
      },
    });
    const child = new FlowChain<Data>({ name: 'child' }).flow(step('c1')).flow(step('c2'));
    const parent = new FlowChain<Data>({ name: 'parent', data: { trail: [] } }).flow(step('p1')).flow(child).flow(step('p2'));

    const data = await parent.start();

    expect(data.trail).toEqual(['p1', 'c1', 'c2', 'p2']);
    expect(seen).toHaveLength(4);
    for (const object of seen) expect(object).toBe(parent.data);
    expect(child.data).toBe(parent.data);
    expect(child.state).toBe('succeeded');
  });

  it('F12 when a later parent flow fails, the child\'s completed flows roll back in reverse as part of the parent\'s unwinding', async () => {
    const { log, ok, failing } = recorder();
    const child = new FlowChain({ name: 'child' })
      .flow(ok('c1'))
      .flow(ok('c2'))
      .done(() => {
        log.push('child:done');
      })
      .error(() => {
        log.push('child:error');
      })
      .finally(() => {
        log.push('child:finally');
      });
    const parent = new FlowChain({ name: 'parent' })
      .flow(ok('p1'))
      .flow(child)
      .flow(ok('p2'))
      .flow(failing('p3', new Error('p3')))
      .error(() => {
        log.push('parent:error');
      });

    const error = await rejection(parent.start());

    expect(log).toEqual([
      'run:p1',
      'run:c1',
      'run:c2',
      'child:done',
      'child:finally',
      'run:p2',
      'run:p3',
      'rollback:p3',
      'rollback:p2',
      'rollback:c2',
      'rollback:c1',
      'rollback:p1',
      'parent:error',
    ]);
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'p3', flowIndex: 3 });
    const childEntry = parent.trace[1];
    expect(childEntry?.name).toBe('child');
    expect(childEntry?.outcome).toBe('rolledBack');
    expect(childEntry?.children?.map((run) => run.map((entry) => [entry.name, entry.outcome]))).toEqual([
      [
        ['c1', 'rolledBack'],
        ['c2', 'rolledBack'],
      ],
    ]);
  });

  it('F12 a child that fails rolls itself back, runs its handlers, and fails the parent, which then unwinds', async () => {
    const { log, ok, failing } = recorder();
    const original = new Error('c2 failed');
    const child = new FlowChain({ name: 'child' })
      .flow(ok('c1'))
      .flow(failing('c2', original))
      .flow(ok('c3'))
      .error((error) => {
        log.push(`child:error:${error.flowName}`);
      })
      .finally(() => {
        log.push('child:finally');
      });
    const parent = new FlowChain({ name: 'parent' }).flow(ok('p1')).flow(child).flow(ok('p2'));

    const error = await rejection(parent.start());

    expect(log).toEqual([
      'run:p1',
      'run:c1',
      'run:c2',
      'rollback:c2',
      'rollback:c1',
      'child:error:c2',
      'child:finally',
      'rollback:p1',
    ]);
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'child', flowIndex: 1, flowCount: 3 });
    expect(error.location).toBe('child (2/3)');
    const childError = error.cause as FlowChainError;
    expect(childError).toBeInstanceOf(FlowChainError);
    expect(childError).toMatchObject({ code: 'FLOW_FAILED', flowName: 'c2', flowIndex: 1, flowCount: 3 });
    expect(childError.cause).toBe(original);
    expect(child.failure).toBe(childError);
    expect(error.rollbackErrors).toEqual([]);
  });

  it('F12 rollback failures inside a nested chain join the parent error\'s rollbackErrors in order', async () => {
    const log: string[] = [];
    const throwingRollback = (name: string): Flow => ({
      name,
      run: (t) => t.next(),
      rollback() {
        log.push(`rollback:${name}`);
        throw new Error(`rollback of ${name}`);
      },
    });
    const child = new FlowChain({ name: 'child' })
      .flow(throwingRollback('c1'))
      .flow({ name: 'c2', run: (t) => t.next(), rollback: (t) => (log.push('rollback:c2'), t.rollback()) });
    const parent = new FlowChain()
      .flow(throwingRollback('p1'))
      .flow(child)
      .flow({ name: 'p2', run: (t) => t.fail(new Error('p2')) });

    const error = await rejection(parent.start());

    expect(log).toEqual(['rollback:c2', 'rollback:c1', 'rollback:p1']);
    expect(error.rollbackErrors.map((e) => [e.code, e.flowName, e.flowIndex, e.flowCount])).toEqual([
      ['ROLLBACK_FAILED', 'c1', 0, 2],
      ['ROLLBACK_FAILED', 'p1', 0, 3],
    ]);
    expect((error.rollbackErrors[0]?.cause as Error).message).toBe('rollback of c1');
  });

  it('F12 a failing child\'s own rollback failures come first in the parent\'s rollbackErrors', async () => {
    const throwingRollback = (name: string): Flow => ({
      name,
      run: (t) => t.next(),
      rollback() {
        throw new Error(`rollback of ${name}`);
      },
    });
    const child = new FlowChain({ name: 'child' })
      .flow(throwingRollback('c1'))
      .flow({ name: 'c2', run: (t) => t.fail(new Error('c2')) });
    const parent = new FlowChain().flow(throwingRollback('p1')).flow(child);

    const error = await rejection(parent.start());

    expect(error.flowName).toBe('child');
    expect(error.rollbackErrors.map((e) => e.flowName)).toEqual(['c1', 'p1']);
    expect((error.cause as FlowChainError).rollbackErrors.map((e) => e.flowName)).toEqual(['c1']);
  });

  it('F12 skipRestRollbacks() inside a nested chain stops only that chain\'s unwinding', async () => {
    const { log, ok, failing } = recorder();
    const child = new FlowChain({ name: 'child' })
      .flow(ok('c1'))
      .flow(
        ok('c2', {
          rollback(trigger) {
            log.push('rollback:c2');
            trigger.skipRestRollbacks();
            trigger.rollback();
          },
        }),
      );
    const parent = new FlowChain().flow(ok('p1')).flow(child).flow(failing('p2', new Error('p2')));

    await rejection(parent.start());

    expect(log).toEqual(['run:p1', 'run:c1', 'run:c2', 'run:p2', 'rollback:p2', 'rollback:c2', 'rollback:p1']);
  });

  it('F12 canceling the parent aborts the child\'s running flow; the child unwinds, then the parent', async () => {
    vi.useFakeTimers();
    const { log, ok } = recorder();
    const child = new FlowChain({ name: 'child' }).flow(ok('c1')).flow({
      name: 'c2',
      run(trigger) {
        log.push('run:c2');
        trigger.signal.addEventListener('abort', () => trigger.fail(new Error('aborted')));
      },
      rollback(trigger) {
        log.push('rollback:c2');
        trigger.rollback();
      },
    });
    const parent = new FlowChain().flow(ok('p1')).flow(child).flow(ok('p2'));

    const started = track(parent.start());
    await vi.advanceTimersByTimeAsync(10);
    expect(parent.cancel('stop')).toBe(true);
    await vi.advanceTimersByTimeAsync(0);

    expect(log).toEqual(['run:p1', 'run:c1', 'run:c2', 'rollback:c2', 'rollback:c1', 'rollback:p1']);
    expect(started.current).toMatchObject({
      status: 'rejected',
      error: { code: 'CHAIN_CANCELED', cause: 'stop', flowName: 'child' },
    });
    expect(child.failure?.code).toBe('CHAIN_CANCELED');
  });

  it('F12 a chain is a flow of one chain in one place: nesting it twice fails the second use with CHAIN_ALREADY_STARTED', async () => {
    const { log, ok } = recorder();
    const child = new FlowChain({ name: 'child' }).flow(ok('c1'));
    const parent = new FlowChain().flow(child).flow(child);

    const error = await rejection(parent.start());

    // c1 ran once (first use) and was rolled back exactly once.
    expect(log).toEqual(['run:c1', 'rollback:c1']);
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'child', flowIndex: 1 });
    expect(error.cause).toMatchObject({ code: 'CHAIN_ALREADY_STARTED' });
  });

  it('F12 a chain started on its own cannot run again as a nested flow, and its own run is left alone', async () => {
    const { log, ok } = recorder();
    const child = new FlowChain({ name: 'child' }).flow(ok('c1'));
    const parent = new FlowChain().flow(ok('p1')).flow(child);

    await child.start();
    const error = await rejection(parent.start());

    expect(log).toEqual(['run:c1', 'run:p1', 'rollback:p1']);
    expect(error.cause).toMatchObject({ code: 'CHAIN_ALREADY_STARTED' });
    expect(child.state).toBe('succeeded');
  });
});
