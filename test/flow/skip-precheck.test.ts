import { describe, expect, it } from 'vitest';
import { FlowChain } from '../../src/index.js';
import { recorder, rejection, turn } from './helpers.js';

describe('F7 skip', () => {
  it('F7 skip() returning true passes the flow over and records it as skipped', async () => {
    const { log, ok } = recorder();
    const skips: [string, number][] = [];
    const chain = new FlowChain().flow(ok('a')).flow(ok('b', { skip: () => true })).flow(ok('c'));
    chain.on('flow:skip', (name, index) => skips.push([name, index]));

    await chain.start();

    expect(log).toEqual(['run:a', 'run:c']);
    expect(skips).toEqual([['b', 1]]);
    expect(chain.trace.map((entry) => [entry.name, entry.outcome])).toEqual([
      ['a', 'done'],
      ['b', 'skipped'],
      ['c', 'done'],
    ]);
  });

  it('F7 skip() may return a promise: true skips, false runs', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain()
      .flow(
        ok('skipped', {
          async skip() {
            await turn();
            return true;
          },
        }),
      )
      .flow(ok('kept', { skip: async () => false }));

    await chain.start();

    expect(log).toEqual(['run:kept']);
    expect(chain.trace.map((entry) => entry.outcome)).toEqual(['skipped', 'done']);
  });

  it('F7 skip() sees the live data written by earlier flows', async () => {
    type Data = { alreadyThere?: boolean };
    const { log, ok } = recorder<Data>();
    const seen: unknown[] = [];
    const chain = new FlowChain<Data>()
      .flow(ok('check', { run: (t, data) => (log.push('run:check'), (data.alreadyThere = true), t.next()) }))
      .flow(
        ok('create', {
          skip(data) {
            seen.push(data);
            return data.alreadyThere === true;
          },
        }),
      );

    await chain.start();

    expect(log).toEqual(['run:check']);
    expect(seen).toEqual([chain.data]);
    expect(seen[0]).toBe(chain.data);
  });

  it('F7 a skipped flow is never rolled back', async () => {
    const { log, ok, failing } = recorder();
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow(ok('skipped', { skip: () => true }))
      .flow(failing('c', new Error('c')));

    await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:c', 'rollback:c', 'rollback:a']);
    expect(chain.trace.map((entry) => entry.outcome)).toEqual(['rolledBack', 'skipped', 'rolledBack']);
  });

  it('F7 a throwing skip() fails the chain before the flow runs; that flow is not rolled back', async () => {
    const { log, ok } = recorder();
    const thrown = new Error('skip threw');
    const chain = new FlowChain().flow(ok('a')).flow(
      ok('b', {
        skip() {
          throw thrown;
        },
      }),
    );

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'rollback:a']);
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'b', flowIndex: 1 });
    expect(error.cause).toBe(thrown);
  });
});

describe('F7 preCheck', () => {
  it('F7 preCheck runs before every flow, skipped ones included, with the live data', async () => {
    const checks: string[] = [];
    const chain = new FlowChain<{ step?: string }>();
    chain
      .flow({ name: 'a', run: (t, d) => ((d.step = 'a'), t.next()) })
      .flow({ name: 'b', skip: () => true, run: (t) => t.next() })
      .flow({ name: 'c', run: (t, d) => ((d.step = 'c'), t.next()) })
      .preCheck((data) => {
        expect(data).toBe(chain.data);
        checks.push(data.step ?? 'none');
        return undefined;
      });

    await chain.start();

    expect(checks).toEqual(['none', 'a', 'a']);
  });

  it('F7 a preCheck error fails with PRECHECK_FAILED before that flow; that flow is not rolled back', async () => {
    const { log, ok } = recorder();
    const handlers: string[] = [];
    const stop = new Error('job canceled');
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow(ok('b'))
      .flow(ok('c'))
      .flow(ok('d'))
      .preCheck(() => (log.filter((entry) => entry.startsWith('run:')).length === 2 ? stop : null))
      .error((error) => {
        handlers.push(error.code);
      });

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(error).toMatchObject({ code: 'PRECHECK_FAILED', flowName: 'c', flowIndex: 2, flowCount: 4 });
    expect(error.cause).toBe(stop);
    expect(error.message).toContain('c (3/4)');
    expect(handlers).toEqual(['PRECHECK_FAILED']);
    expect(chain.trace.map((entry) => entry.outcome)).toEqual(['rolledBack', 'rolledBack', 'notRun', 'notRun']);
  });

  it('F7 preCheck may answer with a promise, and a throwing preCheck counts as its error', async () => {
    const asyncStop = new Error('async stop');
    const asyncLog = recorder();
    const asyncError = await rejection(
      new FlowChain()
        .flow(asyncLog.ok('a'))
        .flow(asyncLog.ok('b'))
        .preCheck(async () => {
          await turn();
          return asyncLog.log.length === 1 ? asyncStop : undefined;
        })
        .start(),
    );
    expect(asyncLog.log).toEqual(['run:a', 'rollback:a']);
    expect(asyncError).toMatchObject({ code: 'PRECHECK_FAILED', flowName: 'b', flowIndex: 1 });
    expect(asyncError.cause).toBe(asyncStop);

    const thrown = new Error('preCheck threw');
    const throwingLog = recorder();
    const throwingError = await rejection(
      new FlowChain()
        .flow(throwingLog.ok('a'))
        .preCheck(() => {
          throw thrown;
        })
        .start(),
    );
    expect(throwingLog.log).toEqual([]);
    expect(throwingError).toMatchObject({ code: 'PRECHECK_FAILED', flowName: 'a', flowIndex: 0 });
    expect(throwingError.cause).toBe(thrown);
  });

  it('F7 preCheck returning null, undefined or a promise of them lets every flow run', async () => {
    const { log, ok } = recorder();
    const answers: unknown[] = [null, undefined, Promise.resolve(null), Promise.resolve(undefined)];
    let call = 0;
    await new FlowChain()
      .flow(ok('a'))
      .flow(ok('b'))
      .flow(ok('c'))
      .flow(ok('d'))
      .preCheck(() => answers[call++])
      .start();

    expect(log).toEqual(['run:a', 'run:b', 'run:c', 'run:d']);
    expect(call).toBe(4);
  });
});
