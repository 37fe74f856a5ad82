import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FlowChain, FlowChainError, type Flow, type FlowTrigger, type RollbackTrigger } from '../../src/index.js';
import { recorder, track } from './helpers.js';

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

/** A flow whose run never completes on its own; the trigger is kept for the test. */
function hanging(name: string, log: string[], extra: Partial<Flow> = {}): { flow: Flow; trigger: () => FlowTrigger } {
  let captured: FlowTrigger | undefined;
  const flow: Flow = {
    name,
    run(trigger) {
      log.push(`run:${name}`);
      captured = trigger;
    },
    rollback(trigger) {
      log.push(`rollback:${name}`);
      trigger.rollback();
    },
    ...extra,
  };
  return { flow, trigger: () => captured as FlowTrigger };
}

describe('F10 flow timeouts', () => {
  it('F10 fails a flow with FLOW_TIMEOUT, aborts its signal with that error and rolls it back', async () => {
    const { log, ok } = recorder();
    const b = hanging('b', log);
    const failures: unknown[] = [];
    const chain = new FlowChain({ timeoutMs: 100 }).flow(ok('a')).flow(b.flow).flow(ok('c'));
    chain.on('flow:fail', (name, index, error) => failures.push([name, index, error]));

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(99);
    expect(started.current.status).toBe('pending');
    expect(b.trigger().signal.aborted).toBe(false);
    expect(log).toEqual(['run:a', 'run:b']);

    await vi.advanceTimersByTimeAsync(1);
    expect(started.current.status).toBe('rejected');
    const error = (started.current as { error: FlowChainError }).error;
    expect(error).toBeInstanceOf(FlowChainError);
    expect(error).toMatchObject({
      code: 'FLOW_TIMEOUT',
      flowName: 'b',
      flowIndex: 1,
      flowCount: 3,
      details: { timeoutMs: 100 },
    });
    expect(error.location).toBe('b (2/3)');
    expect(error.message).toContain('b (2/3)');
    expect(error.message).toContain('100 ms');
    expect(b.trigger().signal.aborted).toBe(true);
    expect(b.trigger().signal.reason).toBe(error);
    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(failures).toEqual([['b', 1, error]]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('F10 ignores a late next() after the timeout: no throw, a flow:late event, nothing moves', async () => {
    const { log, ok } = recorder();
    const b = hanging('b', log);
    const late: unknown[] = [];
    const chain = new FlowChain({ timeoutMs: 100 }).flow(ok('a')).flow(b.flow).flow(ok('c'));
    chain.on('flow:late', (name, index, error) => late.push([name, index, error]));

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(100);
    expect(() => b.trigger().next()).not.toThrow();
    expect(() => b.trigger().fail(new Error('late'))).not.toThrow();
    await vi.advanceTimersByTimeAsync(1000);

    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(started.settlements).toBe(1);
    expect(started.current).toMatchObject({ status: 'rejected', error: { code: 'FLOW_TIMEOUT' } });
    expect(late).toHaveLength(2);
    expect(late[0]).toEqual(['b', 1, expect.objectContaining({ code: 'FLOW_ALREADY_COMPLETED', details: { method: 'next' } })]);
    expect(late[1]).toEqual(['b', 1, expect.objectContaining({ code: 'FLOW_ALREADY_COMPLETED', details: { method: 'fail' } })]);
    expect((late[0] as [string, number, Error])[2].message).toContain('timed out');
  });

  it('F10 a flow that fails itself from its abort listener on timeout settles once: one rollback, one error handler', async () => {
    const { log, ok } = recorder();
    const handlers: string[] = [];
    const chain = new FlowChain({ timeoutMs: 100 })
      .flow(ok('a'))
      .flow({
        name: 'b',
        run(trigger) {
          log.push('run:b');
          trigger.signal.addEventListener('abort', () => trigger.fail(trigger.signal.reason));
        },
        rollback(trigger) {
          log.push('rollback:b');
          trigger.rollback();
        },
      })
      .error((error) => {
        handlers.push(`error:${error.code}`);
      })
      .finally(() => {
        handlers.push('finally');
      });

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(1000);

    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(handlers).toEqual(['error:FLOW_TIMEOUT', 'finally']);
    expect(started.settlements).toBe(1);
    expect(started.current).toMatchObject({ status: 'rejected', error: { code: 'FLOW_TIMEOUT', flowName: 'b' } });
  });

  it('F10 ignores the promise of a promise-style flow that settles after its timeout', async () => {
    const late: unknown[] = [];
    let finished = false;
    const chain = new FlowChain({ timeoutMs: 50 }).flow({
      name: 'slow',
      async run() {
        await new Promise((resolve) => setTimeout(resolve, 200));
        finished = true;
      },
    });
    chain.on('flow:late', (...args) => late.push(args));

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(50);
    expect(started.current).toMatchObject({ status: 'rejected', error: { code: 'FLOW_TIMEOUT', flowName: 'slow' } });

    await vi.advanceTimersByTimeAsync(150);
    expect(finished).toBe(true);
    expect(started.settlements).toBe(1);
    expect(late).toEqual([]);
  });

  it('F10 a flow timeoutMs overrides the chain default, longer or shorter', async () => {
    const longer = track(
      new FlowChain({ timeoutMs: 100 }).flow({ name: 'long', timeoutMs: 300, run: () => undefined }).start(),
    );
    const shorter = track(
      new FlowChain({ timeoutMs: 1000 }).flow({ name: 'short', timeoutMs: 50, run: () => undefined }).start(),
    );

    await vi.advanceTimersByTimeAsync(50);
    expect(shorter.current).toMatchObject({ status: 'rejected', error: { code: 'FLOW_TIMEOUT', details: { timeoutMs: 50 } } });

    await vi.advanceTimersByTimeAsync(249);
    expect(longer.current.status).toBe('pending');
    await vi.advanceTimersByTimeAsync(1);
    expect(longer.current).toMatchObject({ status: 'rejected', error: { code: 'FLOW_TIMEOUT', details: { timeoutMs: 300 } } });
  });

  it('F10 timeoutMs 0 on a flow disables the chain default for it', async () => {
    const log: string[] = [];
    const b = hanging('b', log, { timeoutMs: 0 });
    const started = track(new FlowChain({ timeoutMs: 100 }).flow(b.flow).start());

    await vi.advanceTimersByTimeAsync(24 * 60 * 60 * 1000);
    expect(started.current.status).toBe('pending');
    expect(vi.getTimerCount()).toBe(0);

    b.trigger().next();
    await vi.advanceTimersByTimeAsync(0);
    expect(started.current.status).toBe('fulfilled');
  });

  it('F10 without timeoutMs a flow may take as long as it likes', async () => {
    const log: string[] = [];
    const b = hanging('b', log);
    const started = track(new FlowChain().flow(b.flow).start());

    await vi.advanceTimersByTimeAsync(7 * 24 * 60 * 60 * 1000);
    expect(started.current.status).toBe('pending');
    expect(b.trigger().signal.aborted).toBe(false);

    b.trigger().next();
    await vi.advanceTimersByTimeAsync(0);
    expect(started.current.status).toBe('fulfilled');
  });

  it('F10 leaves no timer behind when flows finish in time', async () => {
    const chain = new FlowChain({ timeoutMs: 100, rollbackTimeoutMs: 100 })
      .flow({ name: 'a', run: (t) => void setTimeout(() => t.next(), 40), rollback: (t) => void setTimeout(() => t.rollback(), 40) })
      .flow({ name: 'b', run: (t) => void setTimeout(() => t.fail(new Error('b')), 40) });

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(120);

    expect(started.current).toMatchObject({ status: 'rejected', error: { code: 'FLOW_FAILED', rollbackErrors: [] } });
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('F10 rollback timeouts', () => {
  it('F10 rollbackTimeoutMs records a rollback that hangs as a rollback failure and goes on unwinding', async () => {
    const log: string[] = [];
    let hungRollback: RollbackTrigger | undefined;
    const late: unknown[] = [];
    const original = new Error('c failed');
    const chain = new FlowChain({ rollbackTimeoutMs: 200 })
      .flow({ name: 'a', run: (t) => t.next(), rollback: (t) => (log.push('rollback:a'), t.rollback()) })
      .flow({
        name: 'b',
        run: (t) => t.next(),
        rollback(trigger) {
          log.push('rollback:b');
          hungRollback = trigger;
        },
      })
      .flow({ name: 'c', run: (t) => t.fail(original) });
    chain.on('flow:late', (...args) => late.push(args));

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(199);
    expect(log).toEqual(['rollback:b']);
    expect(started.current.status).toBe('pending');

    await vi.advanceTimersByTimeAsync(1);
    expect(log).toEqual(['rollback:b', 'rollback:a']);
    const error = (started.current as { error: FlowChainError }).error;
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'c' });
    expect(error.cause).toBe(original);
    expect(error.rollbackErrors).toHaveLength(1);
    const [rollbackError] = error.rollbackErrors;
    expect(rollbackError).toMatchObject({ code: 'ROLLBACK_FAILED', flowName: 'b', flowIndex: 1 });
    expect(rollbackError?.cause).toMatchObject({ code: 'FLOW_TIMEOUT', flowName: 'b', details: { timeoutMs: 200 } });
    expect(hungRollback?.signal.aborted).toBe(true);
    expect(hungRollback?.signal.reason).toBe(rollbackError?.cause);

    expect(() => hungRollback?.rollback()).not.toThrow();
    expect(late).toEqual([['b', 1, expect.objectContaining({ code: 'FLOW_ALREADY_COMPLETED' })]]);
    expect(started.settlements).toBe(1);
  });

  it('F10 a nested chain inherits timeoutMs and rollbackTimeoutMs per flow; the parent waits for its whole unwinding', async () => {
    const log: string[] = [];
    const slowRollback = (name: string): Flow => ({
      name,
      run: (t) => (log.push(`run:${name}`), t.next()),
      rollback(trigger) {
        log.push(`rollback-start:${name}`);
        setTimeout(() => {
          log.push(`rollback-end:${name}`);
          trigger.rollback();
        }, 60);
      },
    });
    const child = new FlowChain({ name: 'child' }).flow(slowRollback('c1')).flow(slowRollback('c2'));
    const parent = new FlowChain({ name: 'parent', rollbackTimeoutMs: 100 })
      .flow(slowRollback('p1'))
      .flow(child)
      .flow({ name: 'p2', run: (t) => t.fail(new Error('p2')) });

    const started = track(parent.start());
    await vi.advanceTimersByTimeAsync(1000);

    // Each rollback takes 60 ms (< 100 ms); the child's two take 120 ms together.
    expect(log).toEqual([
      'run:p1',
      'run:c1',
      'run:c2',
      'rollback-start:c2',
      'rollback-end:c2',
      'rollback-start:c1',
      'rollback-end:c1',
      'rollback-start:p1',
      'rollback-end:p1',
    ]);
    expect(started.current).toMatchObject({ status: 'rejected', error: { code: 'FLOW_FAILED', rollbackErrors: [] } });
  });

  it('F10 a nested chain\'s hanging flow fails with the parent\'s timeoutMs', async () => {
    const log: string[] = [];
    const child = new FlowChain({ name: 'child' }).flow(hanging('c1', log).flow);
    const started = track(new FlowChain({ timeoutMs: 100 }).flow(child).start());

    await vi.advanceTimersByTimeAsync(100);

    expect(started.current.status).toBe('rejected');
    const error = (started.current as { error: FlowChainError }).error;
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'child', flowIndex: 0 });
    expect(error.cause).toMatchObject({ code: 'FLOW_TIMEOUT', flowName: 'c1', details: { timeoutMs: 100 } });
    expect(log).toEqual(['run:c1', 'rollback:c1']);
  });
});
