import { afterEach, describe, expect, it, vi } from 'vitest';
import { FlowChain, FlowChainError, type Flow } from '../../src/index.js';
import { recorder, rejection, track, turn } from './helpers.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('F8 handler order', () => {
  it('F8 on success: done(data) then finally(), then start() resolves', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain({ data: { v: 1 } })
      .flow(ok('a'))
      .flow(ok('b'))
      .done((data) => {
        log.push(`done:${JSON.stringify(data)}`);
      })
      .error(() => {
        log.push('error');
      })
      .finally(() => {
        log.push('finally');
      });

    await chain.start().then(() => log.push('resolved'));

    expect(log).toEqual(['run:a', 'run:b', 'done:{"v":1}', 'finally', 'resolved']);
  });

  it('F8 on failure: every rollback settles, then error(error, data), then finally(), then start() rejects', async () => {
    const log: string[] = [];
    const asyncRollback = (name: string): Flow => ({
      name,
      run: (t) => t.next(),
      async rollback() {
        log.push(`rollback-start:${name}`);
        await turn();
        log.push(`rollback-end:${name}`);
      },
    });
    const received: unknown[] = [];
    const chain = new FlowChain()
      .flow(asyncRollback('a'))
      .flow(asyncRollback('b'))
      .flow({ name: 'c', run: (t) => t.fail(new Error('c')) })
      .done(() => {
        log.push('done');
      })
      .error((error, data) => {
        received.push(error, data);
        log.push('error');
      })
      .finally(() => {
        log.push('finally');
      });

    const error = await rejection(chain.start().catch((e: unknown) => (log.push('rejected'), Promise.reject(e))));

    expect(log).toEqual([
      'rollback-start:b',
      'rollback-end:b',
      'rollback-start:a',
      'rollback-end:a',
      'error',
      'finally',
      'rejected',
    ]);
    expect(received).toHaveLength(2);
    expect(received[0]).toBe(error);
    expect(received[1]).toBe(chain.data);
  });

  it('F8 the error handler runs on failure even without any rollback (ZStack TestSimpleFlow8)', async () => {
    const handlers: string[] = [];
    const chain = new FlowChain()
      .flow({ name: 'a', run: (t) => t.fail(new Error('a')) })
      .done(() => {
        handlers.push('done');
      })
      .error(() => {
        handlers.push('error');
      });

    await rejection(chain.start());

    expect(handlers).toEqual(['error']);
  });

  it('F8 awaits asynchronous handlers: finally waits for done, start() waits for finally', async () => {
    vi.useFakeTimers();
    const log: string[] = [];
    const chain = new FlowChain()
      .flow({ name: 'a', run: (t) => t.next() })
      .done(async () => {
        log.push('done-start');
        await new Promise((resolve) => setTimeout(resolve, 100));
        log.push('done-end');
      })
      .finally(async () => {
        log.push('finally-start');
        await new Promise((resolve) => setTimeout(resolve, 50));
        log.push('finally-end');
      });

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(99);
    expect(log).toEqual(['done-start']);
    expect(started.current.status).toBe('pending');

    await vi.advanceTimersByTimeAsync(1);
    expect(log).toEqual(['done-start', 'done-end', 'finally-start']);
    expect(started.current.status).toBe('pending');

    await vi.advanceTimersByTimeAsync(50);
    expect(log).toEqual(['done-start', 'done-end', 'finally-start', 'finally-end']);
    expect(started.current).toEqual({ status: 'fulfilled', value: chain.data });
  });

  it('F8 awaits an asynchronous error handler before finally', async () => {
    const log: string[] = [];
    const chain = new FlowChain()
      .flow({ name: 'a', run: (t) => t.fail(new Error('a')) })
      .error(async () => {
        log.push('error-start');
        await turn();
        log.push('error-end');
      })
      .finally(() => {
        log.push('finally');
      });

    await rejection(chain.start());

    expect(log).toEqual(['error-start', 'error-end', 'finally']);
  });
});

describe('F8 throwing handlers', () => {
  it('F8 a throwing done handler never skips finally nor starts a rollback; start() rejects with HANDLER_FAILED', async () => {
    const { log, ok } = recorder();
    const thrown = new Error('done threw');
    const handlerFailures: unknown[] = [];
    const chain = new FlowChain()
      .flow(ok('a'))
      .done(() => {
        log.push('done');
        throw thrown;
      })
      .error(() => {
        log.push('error');
      })
      .finally(() => {
        log.push('finally');
      });
    chain.on('handler:fail', (handler, error) => handlerFailures.push([handler, error]));

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'done', 'finally']);
    expect(error).toBeInstanceOf(FlowChainError);
    expect(error.code).toBe('HANDLER_FAILED');
    expect(error.cause).toBe(thrown);
    expect(error.details).toEqual({ handler: 'done' });
    expect(handlerFailures).toEqual([['done', thrown]]);
  });

  it('F8 a rejecting error handler never re-runs a rollback; finally runs and start() rejects with the chain error', async () => {
    const { log, ok, failing } = recorder();
    const original = new Error('b');
    const handlerError = new Error('error handler rejected');
    const handlerFailures: unknown[] = [];
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow(failing('b', original))
      .error(async () => {
        log.push('error');
        throw handlerError;
      })
      .finally(() => {
        log.push('finally');
      });
    chain.on('handler:fail', (handler, error) => handlerFailures.push([handler, error]));

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a', 'error', 'finally']);
    expect(error.code).toBe('FLOW_FAILED');
    expect(error.cause).toBe(original);
    expect(handlerFailures).toEqual([['error', handlerError]]);
  });

  it('F8 a throwing finally handler on success makes start() reject with HANDLER_FAILED naming finally', async () => {
    const thrown = new Error('finally threw');
    const chain = new FlowChain().flow({ name: 'a', run: (t) => t.next() }).finally(() => {
      throw thrown;
    });

    const error = await rejection(chain.start());

    expect(error.code).toBe('HANDLER_FAILED');
    expect(error.cause).toBe(thrown);
    expect(error.details).toEqual({ handler: 'finally' });
  });

  it('F8 a throwing finally handler on failure leaves the chain error as the rejection', async () => {
    const original = new Error('a');
    const chain = new FlowChain().flow({ name: 'a', run: (t) => t.fail(original) }).finally(() => {
      throw new Error('finally threw');
    });

    const error = await rejection(chain.start());

    expect(error.code).toBe('FLOW_FAILED');
    expect(error.cause).toBe(original);
  });

  it('F8 a throwing handler never escapes into the flow whose next() ended the chain', async () => {
    vi.useFakeTimers();
    let nextThrew: unknown = 'not called';
    const chain = new FlowChain()
      .flow({
        name: 'a',
        run(trigger) {
          setTimeout(() => {
            try {
              trigger.next();
              nextThrew = undefined;
            } catch (error) {
              nextThrew = error;
            }
          }, 10);
        },
      })
      .done(() => {
        throw new Error('done threw');
      })
      .error(() => {
        throw new Error('never called');
      });

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(10);

    expect(nextThrew).toBeUndefined();
    expect(started.current).toMatchObject({ status: 'rejected', error: { code: 'HANDLER_FAILED' } });
  });
});
