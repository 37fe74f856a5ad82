import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  FlowChain,
  FlowChainError,
  isFlowChainError,
  type Flow,
  type FlowChainErrorCode,
  type FlowChainState,
  type FlowData,
  type FlowOutcome,
  type FlowTraceEntry,
  type FlowTrigger,
  type RollbackTrigger,
} from '../../src/index.js';

/*
 * Type tests for the public generics. The expectTypeOf checks are enforced by `npm run
 * typecheck` (tsc includes test/); at run time they are no-ops, so each test also runs the
 * chain it types and checks the values.
 */

type Data = { volumeUuid: string; copied?: boolean };

describe('F1 F8 F9 FlowChain generics', () => {
  it('F1 the chain data type flows into run, rollback, skip, handlers, data and start()', async () => {
    const chain = new FlowChain<Data>({ name: 'migrate-volume', data: { volumeUuid: 'v1' } })
      .flow({
        name: 'copy',
        run(trigger, data) {
          expectTypeOf(trigger).toEqualTypeOf<FlowTrigger>();
          expectTypeOf(data).toEqualTypeOf<Data>();
          data.copied = true;
          trigger.next();
        },
        rollback(trigger, data) {
          expectTypeOf(trigger).toEqualTypeOf<RollbackTrigger>();
          expectTypeOf(data).toEqualTypeOf<Data>();
          expectTypeOf(trigger.error).toEqualTypeOf<FlowChainError>();
          trigger.rollback();
        },
        skip(data) {
          expectTypeOf(data).toEqualTypeOf<Data>();
          return false;
        },
      })
      .flow({ name: 'promise-style', run: async (_trigger, data) => void data.volumeUuid })
      .done((data) => {
        expectTypeOf(data).toEqualTypeOf<Data>();
      })
      .error((error, data) => {
        expectTypeOf(error).toEqualTypeOf<FlowChainError>();
        expectTypeOf(data).toEqualTypeOf<Data>();
      })
      .finally(() => undefined)
      .preCheck((data) => {
        expectTypeOf(data).toEqualTypeOf<Data>();
        return undefined;
      })
      .marshaller((flow, context) => {
        expectTypeOf(flow).toEqualTypeOf<Flow<Data>>();
        expectTypeOf(context.data).toEqualTypeOf<Data>();
        expectTypeOf(context.previous).toEqualTypeOf<Flow<Data> | undefined>();
        return undefined;
      })
      .processor((self) => {
        expectTypeOf(self).toEqualTypeOf<FlowChain<Data>>();
      });

    expectTypeOf(chain).toEqualTypeOf<FlowChain<Data>>();
    expectTypeOf(chain.data).toEqualTypeOf<Data>();
    expectTypeOf(chain.flows).toEqualTypeOf<readonly Flow<Data>[]>();
    expectTypeOf(chain.state).toEqualTypeOf<FlowChainState>();
    expectTypeOf(chain.trace).toEqualTypeOf<FlowTraceEntry[]>();
    expectTypeOf(chain.failure).toEqualTypeOf<FlowChainError | undefined>();
    expectTypeOf(chain.start).returns.toEqualTypeOf<Promise<Data>>();
    expectTypeOf(chain.cancel).returns.toEqualTypeOf<boolean>();

    const data = await chain.start();
    expectTypeOf(data).toEqualTypeOf<Data>();
    expect(data).toEqual({ volumeUuid: 'v1', copied: true });
  });

  it('F1 the default data type is FlowData, a record of unknown values', async () => {
    const chain = new FlowChain().flow({ run: (t, data) => ((data['x'] = 1), t.next()) });
    expectTypeOf(chain).toEqualTypeOf<FlowChain<FlowData>>();
    expectTypeOf(chain.data).toEqualTypeOf<Record<string, unknown>>();
    expect(await chain.start()).toEqual({ x: 1 });
  });

  it('F1 rejects flows and handlers of another data type, and a chain has no then()', () => {
    const chain = new FlowChain<Data>();
    // Type-level only: never called, so nothing is added to the chain.
    const wrongUses = (): void => {
      // @ts-expect-error data has no `missing` field
      chain.flow({ run: (t, data) => void data.missing });
      // @ts-expect-error a flow needs run
      chain.flow({ name: 'no-run' });
      // @ts-expect-error handlers get Data, not a number
      chain.done((data: number) => data);
      // @ts-expect-error a nested chain must have the same data type
      chain.flow(new FlowChain<{ other: number }>());
      // @ts-expect-error a chain is not a thenable: the builder method is flow(), not ZStack's then()
      void chain.then;
    };
    expectTypeOf(wrongUses).toBeFunction();
    expect(typeof (chain as unknown as { then?: unknown }).then).toBe('undefined');
    expect(chain.flows).toEqual([]);
  });
});

describe('F14 typed events and errors', () => {
  it('F14 event listeners receive typed arguments', async () => {
    const chain = new FlowChain<Data>({ data: { volumeUuid: 'v1' } }).flow({ name: 'a', run: (t) => t.next() });
    const seen: string[] = [];
    chain.on('flow:start', (name, index) => {
      expectTypeOf(name).toEqualTypeOf<string>();
      expectTypeOf(index).toEqualTypeOf<number>();
      seen.push(`${name}#${index}`);
    });
    chain.on('flow:fail', (_name, _index, error) => {
      expectTypeOf(error).toEqualTypeOf<unknown>();
    });
    chain.on('rollback:fail', (_name, _index, error) => {
      expectTypeOf(error).toEqualTypeOf<FlowChainError>();
    });
    chain.on('chain:done', (data) => {
      expectTypeOf(data).toEqualTypeOf<Data>();
      seen.push(data.volumeUuid);
    });
    chain.on('chain:fail', (error) => {
      expectTypeOf(error).toEqualTypeOf<FlowChainError>();
    });
    chain.on('handler:fail', (handler) => {
      expectTypeOf(handler).toEqualTypeOf<'done' | 'error' | 'finally'>();
    });
    // @ts-expect-error unknown event name
    chain.on('flow:started', () => undefined);

    await chain.start();
    expect(seen).toEqual(['a#0', 'v1']);
  });

  it('F14 errors carry a code union and structured fields; isFlowChainError narrows', async () => {
    const error: unknown = await new FlowChain()
      .flow({ name: 'x', run: (t) => t.fail(new Error('x')) })
      .start()
      .catch((e: unknown) => e);
    expect(isFlowChainError(error, 'FLOW_FAILED')).toBe(true);
    if (!isFlowChainError(error)) throw new Error('unreachable');
    expectTypeOf(error).toEqualTypeOf<FlowChainError>();
    expectTypeOf(error.code).toEqualTypeOf<FlowChainErrorCode>();
    expectTypeOf(error.name).toEqualTypeOf<'FlowChainError'>();
    expectTypeOf(error.rollbackErrors).toEqualTypeOf<FlowChainError[]>();
    expectTypeOf(error.location).toEqualTypeOf<string | undefined>();
    expectTypeOf<FlowOutcome>().toExtend<string>();
    expect(error.location).toBe('x (1/1)');
  });
});
