import { describe, expect, it } from 'vitest';
import { FlowChain, type Flow } from '../../src/index.js';

function recorder() {
  const log: string[] = [];
  const flow = (name: string, fail = false): Flow => ({
    name,
    run(trigger) {
      log.push(`run:${name}`);
      if (fail) trigger.fail(new Error(`${name} failed`));
      else trigger.next();
    },
    rollback(trigger) {
      log.push(`rollback:${name}`);
      trigger.rollback();
    },
  });
  return { log, flow };
}

describe('FlowChain basics (F1, F4)', () => {
  it('F1 runs flows in insertion order and resolves with the shared data', async () => {
    const { log, flow } = recorder();
    const data = await new FlowChain({ data: { n: 1 } }).flow(flow('a')).flow(flow('b')).insert(flow('first')).start();
    expect(log).toEqual(['run:first', 'run:a', 'run:b']);
    expect(data).toEqual({ n: 1 });
  });

  it('F4 rolls back the failing flow first, then completed flows in reverse', async () => {
    const { log, flow } = recorder();
    const chain = new FlowChain().flow(flow('a')).flow(flow('b')).flow(flow('c', true)).flow(flow('d'));
    await expect(chain.start()).rejects.toMatchObject({ code: 'FLOW_FAILED', flowName: 'c', flowIndex: 2 });
    expect(log).toEqual(['run:a', 'run:b', 'run:c', 'rollback:c', 'rollback:b', 'rollback:a']);
  });
});
