import { getEventListeners } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FlowChain, FlowChainError, type Flow, type FlowTrigger } from '../../src/index.js';
import { recorder, rejection, track } from './helpers.js';

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

/** a → b (waits until the test completes it) → c, logging runs and rollbacks. */
function chainWithRunningFlow(options: { timeoutMs?: number } = {}) {
  const { log, ok } = recorder();
  let trigger: FlowTrigger | undefined;
  const handlers: string[] = [];
  const b: Flow = {
    name: 'b',
    run(t) {
      log.push('run:b');
      trigger = t;
    },
    rollback(t) {
      log.push('rollback:b');
      t.rollback();
    },
  };
  const chain = new FlowChain({ name: 'cancelable', ...options })
    .flow(ok('a'))
    .flow(b)
    .flow(ok('c'))
    .error((error) => {
      handlers.push(`error:${error.code}`);
    })
    .finally(() => {
      handlers.push('finally');
    });
  return { chain, log, handlers, b: () => trigger as FlowTrigger };
}

describe('F11 cancel(reason)', () => {
  it('F11 aborts the running flow, waits for it to settle, then fails with CHAIN_CANCELED and rolls back', async () => {
    const { chain, log, handlers, b } = chainWithRunningFlow();
    const cancels: unknown[] = [];
    chain.on('chain:cancel', (reason) => cancels.push(reason));
    const reason = new Error('user asked');

    const started = track(chain.start());
    expect(chain.cancel(reason)).toBe(true);
    await vi.advanceTimersByTimeAsync(1000);

    // The running flow's signal aborted, but the chain waits for the flow to settle.
    expect(b().signal.aborted).toBe(true);
    expect(chain.state).toBe('running');
    expect(started.current.status).toBe('pending');
    expect(log).toEqual(['run:a', 'run:b']);

    b().next();
    await vi.advanceTimersByTimeAsync(0);

    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(handlers).toEqual(['error:CHAIN_CANCELED', 'finally']);
    expect(started.current.status).toBe('rejected');
    const error = (started.current as { error: FlowChainError }).error;
    expect(error).toBeInstanceOf(FlowChainError);
    expect(error).toMatchObject({ code: 'CHAIN_CANCELED', flowName: 'b', flowIndex: 1, flowCount: 3 });
    expect(error.cause).toBe(reason);
    expect(error.message).toContain('user asked');
    expect(b().signal.reason).toBe(error);
    expect(cancels).toEqual([reason]);
    expect(chain.trace.map((entry) => entry.outcome)).toEqual(['rolledBack', 'rolledBack', 'notRun']);
  });

  it('F11 a running flow that fails on abort is rolled back once', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain().flow(ok('a')).flow({
      name: 'b',
      run(trigger) {
        log.push('run:b');
        trigger.signal.addEventListener('abort', () => trigger.fail(trigger.signal.reason));
      },
      rollback(trigger) {
        log.push('rollback:b');
        trigger.rollback();
      },
    });

    const started = track(chain.start());
    chain.cancel('stop');
    await vi.advanceTimersByTimeAsync(0);

    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(started.current).toMatchObject({ status: 'rejected', error: { code: 'CHAIN_CANCELED', cause: 'stop' } });
    expect(started.settlements).toBe(1);
  });

  it('F11 the wait for the running flow is bounded by its timeout', async () => {
    const { chain, log } = chainWithRunningFlow({ timeoutMs: 500 });

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(100);
    chain.cancel('stop');
    await vi.advanceTimersByTimeAsync(399);
    expect(started.current.status).toBe('pending');

    await vi.advanceTimersByTimeAsync(1);
    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(started.current).toMatchObject({ status: 'rejected', error: { code: 'CHAIN_CANCELED', cause: 'stop' } });
  });

  it('F11 cancel() before start() makes start() fail at once with CHAIN_CANCELED; no flow runs', async () => {
    const { chain, log, handlers } = chainWithRunningFlow();

    expect(chain.cancel('early')).toBe(true);
    expect(chain.cancel('again')).toBe(false);
    const error = await rejection(chain.start());

    expect(error.code).toBe('CHAIN_CANCELED');
    expect(error.cause).toBe('early');
    expect(log).toEqual([]);
    expect(handlers).toEqual(['error:CHAIN_CANCELED', 'finally']);
  });

  it('F11 cancel() returns false after the chain succeeded, after it failed, during rollback and when already canceled', async () => {
    const done = new FlowChain().flow({ name: 'a', run: (t) => t.next() });
    await done.start();
    expect(done.cancel('late')).toBe(false);
    expect(done.state).toBe('succeeded');

    const failed = new FlowChain().flow({ name: 'a', run: (t) => t.fail(new Error('a')) });
    await rejection(failed.start());
    expect(failed.cancel('late')).toBe(false);

    let duringRollback: boolean | undefined;
    const rollingBack = new FlowChain();
    rollingBack
      .flow({ name: 'a', run: (t) => t.next(), rollback: (t) => ((duringRollback = rollingBack.cancel('x')), t.rollback()) })
      .flow({ name: 'b', run: (t) => t.fail(new Error('b')) });
    const error = await rejection(rollingBack.start());
    expect(duringRollback).toBe(false);
    expect(error.code).toBe('FLOW_FAILED');

    const { chain, b } = chainWithRunningFlow();
    const started = track(chain.start());
    expect(chain.cancel('first')).toBe(true);
    expect(chain.cancel('second')).toBe(false);
    b().next();
    await vi.advanceTimersByTimeAsync(0);
    expect(started.current).toMatchObject({ status: 'rejected', error: { code: 'CHAIN_CANCELED', cause: 'first' } });
  });
});

describe('F11 start({ signal })', () => {
  it('F11 aborting the signal cancels the chain with the signal reason as cause', async () => {
    const { chain, log, b } = chainWithRunningFlow();
    const controller = new AbortController();

    const started = track(chain.start({ signal: controller.signal }));
    controller.abort('shutdown');
    expect(b().signal.aborted).toBe(true);
    b().fail(b().signal.reason);
    await vi.advanceTimersByTimeAsync(0);

    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(started.current).toMatchObject({
      status: 'rejected',
      error: { code: 'CHAIN_CANCELED', cause: 'shutdown', flowName: 'b' },
    });
  });

  it('F11 an already-aborted signal fails the chain before any flow runs', async () => {
    const { chain, log, handlers } = chainWithRunningFlow();
    const reason = new Error('already gone');

    const error = await rejection(chain.start({ signal: AbortSignal.abort(reason) }));

    expect(error.code).toBe('CHAIN_CANCELED');
    expect(error.cause).toBe(reason);
    expect(log).toEqual([]);
    expect(handlers).toEqual(['error:CHAIN_CANCELED', 'finally']);
    expect(chain.trace.map((entry) => entry.outcome)).toEqual(['notRun', 'notRun', 'notRun']);
  });

  it('F11 stops listening to the signal once the chain has ended', async () => {
    const controller = new AbortController();
    const cancels: unknown[] = [];
    const listenersWhileRunning: number[] = [];
    const chain = new FlowChain().flow({
      name: 'a',
      run: (t) => (listenersWhileRunning.push(getEventListeners(controller.signal, 'abort').length), t.next()),
    });
    chain.on('chain:cancel', (reason) => cancels.push(reason));

    await chain.start({ signal: controller.signal });
    expect(listenersWhileRunning).toEqual([1]);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    controller.abort('after the end');

    expect(cancels).toEqual([]);
    expect(chain.state).toBe('succeeded');
  });
});
