import { describe, expect, it } from 'vitest';
import { FlowChain, FlowChainError } from '../../src/index.js';
import { recorder, rejection, thrownBy, turn } from './helpers.js';

describe('F9 start() promise', () => {
  it('F9 resolves with the live data once the chain succeeded', async () => {
    const chain = new FlowChain<{ n: number }>({ data: { n: 0 } }).flow({
      name: 'inc',
      run: (t, d) => {
        d.n++;
        t.next();
      },
    });

    const data = await chain.start();

    expect(data).toBe(chain.data);
    expect(data).toEqual({ n: 1 });
    expect(chain.state).toBe('succeeded');
    expect(chain.failure).toBeUndefined();
  });

  it('F9 rejects with the chain error, the same object the error handler and chain.failure get', async () => {
    const handled: FlowChainError[] = [];
    const original = new Error('x');
    const chain = new FlowChain()
      .flow({ name: 'a', run: (t) => t.fail(original) })
      .error((error) => {
        handled.push(error);
      });

    const error = await rejection(chain.start());

    expect(error).toBeInstanceOf(FlowChainError);
    expect(error.name).toBe('FlowChainError');
    expect(error.code).toBe('FLOW_FAILED');
    expect(error.cause).toBe(original);
    expect(handled).toEqual([error]);
    expect(handled[0]).toBe(error);
    expect(chain.failure).toBe(error);
    expect(chain.state).toBe('failed');
  });

  it('F9 fire-and-forget chain.error(h).start() with a failing flow raises no unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const handled: string[] = [];
      new FlowChain()
        .flow({ name: 'sync-fail', run: (t) => t.fail(new Error('sync')) })
        .error((error) => {
          handled.push(error.code);
        })
        .start();
      new FlowChain()
        .flow({
          name: 'async-fail',
          async run() {
            await turn();
            throw new Error('async');
          },
        })
        .error((error) => {
          handled.push(`async:${error.code}`);
        })
        .start();

      for (let i = 0; i < 5; i++) await turn();

      expect(handled).toEqual(['FLOW_FAILED', 'async:FLOW_FAILED']);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('F9 starting twice throws CHAIN_ALREADY_STARTED synchronously and runs nothing again', async () => {
    const { log, ok } = recorder();
    let doneCalls = 0;
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow(ok('b'))
      .done(() => {
        doneCalls++;
      });

    const first = chain.start();
    const whileRunning = thrownBy(() => chain.start());
    await first;
    const afterEnd = thrownBy(() => chain.start());

    expect(whileRunning.code).toBe('CHAIN_ALREADY_STARTED');
    expect(afterEnd.code).toBe('CHAIN_ALREADY_STARTED');
    expect(log).toEqual(['run:a', 'run:b']);
    expect(doneCalls).toBe(1);
  });

  it('F9 an empty chain throws EMPTY_CHAIN synchronously and runs no handler', () => {
    const handlers: string[] = [];
    const chain = new FlowChain({ name: 'empty' })
      .done(() => {
        handlers.push('done');
      })
      .finally(() => {
        handlers.push('finally');
      });

    const error = thrownBy(() => chain.start());

    expect(error.code).toBe('EMPTY_CHAIN');
    expect(error.message).toContain('"empty"');
    expect(error.message).toContain('allowEmptyFlow()');
    expect(handlers).toEqual([]);
  });

  it('F9 allowEmptyFlow() takes the done path at once', async () => {
    const handlers: string[] = [];
    const chain = new FlowChain({ data: { x: 1 } })
      .allowEmptyFlow()
      .done((data) => {
        handlers.push(`done:${JSON.stringify(data)}`);
      })
      .error(() => {
        handlers.push('error');
      })
      .finally(() => {
        handlers.push('finally');
      });

    const data = await chain.start();

    expect(handlers).toEqual(['done:{"x":1}', 'finally']);
    expect(data).toBe(chain.data);
    expect(chain.state).toBe('succeeded');
    expect(chain.trace).toEqual([]);
  });

  it('F9 the allowEmptyFlow option does the same', async () => {
    const data = await new FlowChain({ allowEmptyFlow: true }).start();
    expect(data).toEqual({});
  });

  it('F9 state goes idle → running → rollingBack → failed', async () => {
    const states: string[] = [];
    const chain = new FlowChain();
    chain
      .flow({
        name: 'a',
        run: (t) => (states.push(chain.state), t.next()),
        rollback: (t) => (states.push(chain.state), t.rollback()),
      })
      .flow({ name: 'b', run: (t) => t.fail(new Error('b')) })
      .error(() => {
        states.push(`error:${chain.state}`);
      });
    states.push(chain.state);

    const promise = chain.start();
    await rejection(promise);
    states.push(chain.state);

    expect(states).toEqual(['idle', 'running', 'rollingBack', 'error:failed', 'failed']);
  });
});
