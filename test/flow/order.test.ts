import { describe, expect, it } from 'vitest';
import { FlowChain, type Flow } from '../../src/index.js';
import { recorder, turn } from './helpers.js';

describe('F1 order: flows run strictly in insertion order, one at a time', () => {
  it('F1 flow() appends, insert(f) prepends and insert(index, f) inserts at that position', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain()
      .flow(ok('b'))
      .flow(ok('d'))
      .insert(ok('a'))
      .insert(2, ok('c'))
      .insert(4, ok('e'))
      .insert(0, ok('start'));

    expect(chain.flows.map((flow) => flow.name)).toEqual(['start', 'a', 'b', 'c', 'd', 'e']);
    await chain.start();
    expect(log).toEqual(['run:start', 'run:a', 'run:b', 'run:c', 'run:d', 'run:e']);
  });

  it('F1 runs ten sequential flows once each and then the done handler (ZStack TestSimpleFlow9)', async () => {
    const runs: number[] = [];
    const chain = new FlowChain();
    for (let i = 0; i < 10; i++) chain.flow({ name: `f${i}`, run: (trigger) => (runs.push(i), trigger.next()) });
    let doneCalls = 0;
    chain.done(() => {
      doneCalls++;
    });

    await chain.start();

    expect(runs).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(doneCalls).toBe(1);
  });

  it('F1 never starts a flow before the previous one completed, even when flows are asynchronous', async () => {
    let active = 0;
    const concurrent: number[] = [];
    const events: string[] = [];
    const slow = (name: string): Flow => ({
      name,
      async run() {
        active++;
        concurrent.push(active);
        events.push(`start:${name}`);
        await turn();
        await turn();
        events.push(`end:${name}`);
        active--;
      },
    });
    const callback = (name: string): Flow => ({
      name,
      run(trigger) {
        active++;
        concurrent.push(active);
        events.push(`start:${name}`);
        setImmediate(() => {
          events.push(`end:${name}`);
          active--;
          trigger.next();
        });
      },
    });

    await new FlowChain().flow(slow('a')).flow(callback('b')).flow(slow('c')).flow(callback('d')).start();

    expect(concurrent).toEqual([1, 1, 1, 1]);
    expect(events).toEqual(['start:a', 'end:a', 'start:b', 'end:b', 'start:c', 'end:c', 'start:d', 'end:d']);
  });
});

describe('F1 data: one shared object, shallow-copied from the initial data', () => {
  it('F1 copies the initial data shallowly: the caller\'s object is not the live one', async () => {
    const shared = { items: [1] };
    const initial = { count: 1, shared };
    const chain = new FlowChain<{ count: number; shared: { items: number[] }; added?: string }>({ data: initial }).flow({
      name: 'write',
      run(trigger, data) {
        data.count = 2;
        data.added = 'yes';
        data.shared.items.push(2);
        trigger.next();
      },
    });

    expect(chain.data).not.toBe(initial);
    expect(chain.data).toEqual({ count: 1, shared: { items: [1] } });
    expect(chain.data.shared).toBe(shared);

    const result = await chain.start();

    expect(result).toBe(chain.data);
    expect(result).toEqual({ count: 2, added: 'yes', shared: { items: [1, 2] } });
    // The caller's object keeps its own top-level fields; nested objects are shared (shallow copy).
    expect(initial).toEqual({ count: 1, shared: { items: [1, 2] } });
    expect('added' in initial).toBe(false);
  });

  it('F1 chain.data is the live object flows, handlers and start() share (ZStack TestSimpleFlow5)', async () => {
    type Data = { written?: string; seen?: string };
    const seenByHandlers: unknown[] = [];
    const chain = new FlowChain<Data>();
    const live = chain.data;
    let seenByFlow: unknown;
    chain
      .flow({
        name: 'writer',
        run(trigger, data) {
          seenByFlow = data;
          data.written = 'by writer';
          trigger.next();
        },
      })
      .flow({
        name: 'reader',
        run(trigger, data) {
          if (data.written !== undefined) data.seen = data.written;
          trigger.next();
        },
      })
      .done((data) => {
        seenByHandlers.push(data);
      });

    const result = await chain.start();

    expect(chain.data).toBe(live);
    expect(seenByFlow).toBe(live);
    expect(seenByHandlers).toEqual([live]);
    expect(seenByHandlers[0]).toBe(live);
    expect(result).toBe(live);
    expect(live).toEqual({ written: 'by writer', seen: 'by writer' });
  });

  it('F1 starts with an empty data object when none is given', () => {
    expect(new FlowChain().data).toEqual({});
  });
});

describe('F1 a chain is not a thenable', () => {
  it('F1 can be returned from an async function and awaited without running or changing it', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain().flow(ok('a')).flow(ok('b'));
    const build = async (): Promise<FlowChain> => chain;

    expect(typeof (chain as unknown as { then?: unknown }).then).toBe('undefined');
    const returned = await build();
    const awaited: unknown = await (chain as unknown as PromiseLike<unknown>);
    await turn();

    expect(returned).toBe(chain);
    expect(awaited).toBe(chain);
    expect(chain.state).toBe('idle');
    expect(log).toEqual([]);
    expect(chain.flows.map((flow) => flow.name)).toEqual(['a', 'b']);

    // And it still starts normally afterwards.
    await chain.start();
    expect(log).toEqual(['run:a', 'run:b']);
  });
});
