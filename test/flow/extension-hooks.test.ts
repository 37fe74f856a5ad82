import { describe, expect, it } from 'vitest';
import { FlowChain, FlowChainError, type Flow } from '../../src/index.js';
import { recorder, rejection } from './helpers.js';

describe('F15 flow marshaller', () => {
  it('F15 replaces a flow before its skip check: the replacement runs although the original would skip (ZStack TestSimpleFlow12)', async () => {
    const { log, ok } = recorder();
    const original = ok('original', { skip: () => true });
    const replacement = ok('replacement');
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow(original)
      .marshaller((flow) => (flow === original ? replacement : undefined));

    await chain.start();

    expect(log).toEqual(['run:a', 'run:replacement']);
    expect(chain.trace.map((entry) => [entry.name, entry.outcome])).toEqual([
      ['a', 'done'],
      ['replacement', 'done'],
    ]);
  });

  it('F15 the replacement is what is rolled back', async () => {
    const { log, ok, failing } = recorder();
    const original = ok('original');
    const chain = new FlowChain()
      .flow(original)
      .flow(failing('b', new Error('b')))
      .marshaller((flow) => (flow === original ? ok('replacement') : null));

    await rejection(chain.start());

    expect(log).toEqual(['run:replacement', 'run:b', 'rollback:b', 'rollback:replacement']);
  });

  it('F15 gets each flow with its index, the previous flow and the data, before preCheck and skip', async () => {
    const calls: unknown[][] = [];
    const order: string[] = [];
    const a: Flow = { name: 'a', run: (t) => (order.push('run:a'), t.next()) };
    const b: Flow = { name: 'b', skip: () => (order.push('skip:b'), false), run: (t) => (order.push('run:b'), t.next()) };
    const chain = new FlowChain({ data: { k: 1 } });
    chain
      .flow(a)
      .flow(b)
      .preCheck(() => {
        order.push('preCheck');
        return null;
      })
      .marshaller((flow, context) => {
        order.push(`marshal:${flow.name}`);
        calls.push([flow, context.index, context.previous, context.data]);
        return undefined;
      });

    await chain.start();

    expect(order).toEqual(['marshal:a', 'preCheck', 'run:a', 'marshal:b', 'preCheck', 'skip:b', 'run:b']);
    expect(calls).toEqual([
      [a, 0, undefined, chain.data],
      [b, 1, a, chain.data],
    ]);
    expect(calls[0]?.[3]).toBe(chain.data);
  });

  it('F15 a throwing marshaller fails the chain before that flow runs', async () => {
    const { log, ok } = recorder();
    const thrown = new Error('marshaller threw');
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow(ok('b'))
      .marshaller((flow) => {
        if (flow.name === 'b') throw thrown;
        return undefined;
      });

    const error = await rejection(chain.start());

    expect(log).toEqual(['run:a', 'rollback:a']);
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'b', flowIndex: 1 });
    expect(error.cause).toBe(thrown);
  });

  it('F15 an invalid replacement fails the chain cleanly instead of escaping into a flow', async () => {
    const { log, ok } = recorder();
    let nextThrew: unknown;
    const chain = new FlowChain()
      .flow(
        ok('a', {
          run(trigger) {
            log.push('run:a');
            try {
              trigger.next();
            } catch (error) {
              nextThrew = error;
            }
          },
        }),
      )
      .flow(ok('b'))
      .marshaller((flow) => (flow.name === 'b' ? ({ name: 'no-run' } as unknown as Flow) : undefined));

    let promise: Promise<unknown> | undefined;
    expect(() => {
      promise = chain.start();
    }).not.toThrow();
    const error = await rejection(promise as Promise<unknown>);

    expect(nextThrew).toBeUndefined();
    expect(log).toEqual(['run:a', 'rollback:a']);
    expect(chain.state).toBe('failed');
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'b', flowIndex: 1 });
    expect(error.cause).toBeInstanceOf(FlowChainError);
    expect(error.cause).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((error.cause as Error).message).toContain('`marshaller result.run`');
  });
});

describe('F15 chain processors', () => {
  it('F15 processors edit the chain at start(), in order, before the empty-chain check', async () => {
    const { log, ok } = recorder();
    const seen: string[] = [];
    const chain = new FlowChain({ name: 'edited' })
      .processor((c) => {
        seen.push(`first:${c.state}:${c.flows.length}`);
        c.flow(ok('added'));
      })
      .processor((c) => {
        seen.push(`second:${c.flows.length}`);
        c.insert(ok('prepended')).done(() => {
          log.push('done from processor');
        });
      });

    expect(seen).toEqual([]);
    await chain.start();

    expect(seen).toEqual(['first:idle:0', 'second:1']);
    expect(log).toEqual(['run:prepended', 'run:added', 'done from processor']);
    expect(chain.flows.map((flow) => flow.name)).toEqual(['prepended', 'added']);
  });

  it('F15 inserts a tracing flow after every flow, as ZStack DiskCapacityTracer does', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain()
      .flow(ok('a'))
      .flow(ok('b'))
      .processor((c) => {
        const count = c.flows.length;
        for (let i = count; i > 0; i--) c.insert(i, ok(`trace-${i}`));
      });

    await chain.start();

    expect(log).toEqual(['run:a', 'run:trace-1', 'run:b', 'run:trace-2']);
  });

  it('F15 a processor that leaves the chain empty still meets EMPTY_CHAIN', () => {
    let ran = 0;
    const chain = new FlowChain().processor(() => {
      ran++;
    });

    let code: string | undefined;
    try {
      void chain.start();
    } catch (error) {
      code = (error as FlowChainError).code;
    }

    expect(ran).toBe(1);
    expect(code).toBe('EMPTY_CHAIN');
  });
});
