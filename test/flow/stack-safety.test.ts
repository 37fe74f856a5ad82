import { describe, expect, it } from 'vitest';
import { FlowChain, type Flow } from '../../src/index.js';
import { rejection } from './helpers.js';

const N = 100_000;

describe('F13 stack safety', () => {
  it('F13 runs 100,000 synchronously completing flows without stack overflow', async () => {
    let runs = 0;
    let outOfOrder = 0;
    const chain = new FlowChain();
    for (let i = 0; i < N; i++) {
      chain.flow({
        run(trigger) {
          if (runs !== i) outOfOrder++;
          runs++;
          trigger.next();
        },
      });
    }
    let doneCalls = 0;
    chain.done(() => {
      doneCalls++;
    });

    await chain.start();

    expect(runs).toBe(N);
    expect(outOfOrder).toBe(0);
    expect(doneCalls).toBe(1);
    expect(chain.state).toBe('succeeded');
  });

  it('F13 rolls back 100,000 synchronously completing flows, in exact reverse order, without stack overflow', async () => {
    let rollbacks = 0;
    let outOfOrder = 0;
    const flows: Flow[] = [];
    for (let i = 0; i < N; i++) {
      flows.push({
        run: (trigger) => trigger.next(),
        rollback(trigger) {
          // The failing flow (index N) has no rollback, so the first one here is N - 1.
          if (i !== N - 1 - rollbacks) outOfOrder++;
          rollbacks++;
          trigger.rollback();
        },
      });
    }
    const chain = new FlowChain();
    for (const flow of flows) chain.flow(flow);
    chain.flow({ name: 'last', run: (trigger) => trigger.fail(new Error('last')) });

    const error = await rejection(chain.start());

    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'last', flowIndex: N, flowCount: N + 1 });
    expect(rollbacks).toBe(N);
    expect(outOfOrder).toBe(0);
  });

  it('F13 passes over 100,000 synchronously skipped flows without stack overflow', async () => {
    let skips = 0;
    const chain = new FlowChain();
    for (let i = 0; i < N; i++) chain.flow({ skip: () => (skips++, true), run: (trigger) => trigger.next() });

    await chain.start();

    expect(skips).toBe(N);
  });

  it('F13 unwinds 20,000 rollbacks that throw synchronously, recording each failure in order', async () => {
    // Fewer flows: every failure builds a FlowChainError (with a stack), which is the cost here.
    const count = 20_000;
    const chain = new FlowChain();
    for (let i = 0; i < count; i++) {
      chain.flow({
        run: (trigger) => trigger.next(),
        rollback() {
          throw i;
        },
      });
    }
    chain.flow({ run: () => Promise.reject(new Error('last')) });

    const error = await rejection(chain.start());

    expect(error.rollbackErrors).toHaveLength(count);
    let outOfOrder = 0;
    error.rollbackErrors.forEach((rollbackError, k) => {
      if (rollbackError.flowIndex !== count - 1 - k || rollbackError.cause !== count - 1 - k) outOfOrder++;
    });
    expect(outOfOrder).toBe(0);
  });
});
