import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FlowChain, FlowChainError, type Flow, type FlowTrigger } from '../../src/index.js';
import { recorder, track } from './helpers.js';

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('F12 parallel groups', () => {
  it('F12 runs members concurrently, never more at once than the concurrency limit', async () => {
    let active = 0;
    let maxActive = 0;
    const startedAt: number[] = [];
    const log: string[] = [];
    const member = (k: number): Flow => ({
      name: `m${k}`,
      run(trigger) {
        active++;
        maxActive = Math.max(maxActive, active);
        startedAt[k] = Date.now() - t0;
        setTimeout(() => {
          active--;
          trigger.next();
        }, 10);
      },
    });
    const t0 = Date.now();
    const chain = new FlowChain()
      .parallel([0, 1, 2, 3, 4, 5].map(member), { name: 'group', concurrency: 2 })
      .flow({ name: 'after', run: (t) => (log.push(`after at ${Date.now() - t0}`), t.next()) });

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(100);

    expect(maxActive).toBe(2);
    expect(startedAt).toEqual([0, 0, 10, 10, 20, 20]);
    expect(log).toEqual(['after at 30']);
    expect(started.current.status).toBe('fulfilled');
  });

  it('F12 without a limit every member starts at once', async () => {
    let active = 0;
    let maxActive = 0;
    const member = (k: number): Flow => ({
      name: `m${k}`,
      async run() {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((resolve) => setTimeout(resolve, 10));
        active--;
      },
    });

    const started = track(new FlowChain().parallel([0, 1, 2, 3, 4].map(member)).start());
    await vi.advanceTimersByTimeAsync(10);

    expect(maxActive).toBe(5);
    expect(started.current.status).toBe('fulfilled');
  });

  it('F12 members share the chain data', async () => {
    type Data = { hosts: string[] };
    const member = (host: string): Flow<Data> => ({
      name: host,
      run: (t, data) => (data.hosts.push(host), t.next()),
    });
    const chain = new FlowChain<Data>({ data: { hosts: [] } }).parallel([member('h1'), member('h2'), member('h3')]);

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(0);

    expect(started.current).toEqual({ status: 'fulfilled', value: chain.data });
    expect(chain.data.hosts).toEqual(['h1', 'h2', 'h3']);
  });

  it('F12 a failure aborts running siblings, starts no new member, and rolls back every started member exactly once', async () => {
    const { log, ok } = recorder();
    const original = new Error('m1 failed');
    const triggers: FlowTrigger[] = [];
    const rollbacks: Record<string, number> = {};
    const member = (name: string, behaviour: (trigger: FlowTrigger) => void): Flow => ({
      name,
      run(trigger) {
        log.push(`run:${name}`);
        triggers.push(trigger);
        behaviour(trigger);
      },
      rollback(trigger) {
        log.push(`rollback:${name}`);
        rollbacks[name] = (rollbacks[name] ?? 0) + 1;
        trigger.rollback();
      },
    });
    const chain = new FlowChain()
      .flow(ok('p1'))
      .parallel(
        [
          member('m0', (t) => void setTimeout(() => t.next(), 10)),
          member('m1', (t) => void setTimeout(() => t.fail(original), 15)),
          member('m2', (t) => t.signal.addEventListener('abort', () => t.fail(t.signal.reason))),
          member('m3', (t) => t.signal.addEventListener('abort', () => t.next())),
          member('m4', (t) => t.next()),
        ],
        { name: 'hosts', concurrency: 3 },
      )
      .flow(ok('p2'));

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(100);

    expect(log).toEqual([
      'run:p1',
      'run:m0',
      'run:m1',
      'run:m2',
      'run:m3', // started at 10 ms, when m0 completed
      'rollback:m1', // the failed member rolls itself back at once
      'rollback:m2', // aborted, failed
      'rollback:m3', // aborted, completed anyway
      'rollback:m0', // completed before the failure: undone by the group's rollback
      'rollback:p1',
    ]);
    expect(rollbacks).toEqual({ m0: 1, m1: 1, m2: 1, m3: 1 });
    expect(triggers.map((t) => t.signal.aborted)).toEqual([false, false, true, true]);

    expect(started.current.status).toBe('rejected');
    const error = (started.current as { error: FlowChainError }).error;
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'hosts', flowIndex: 1, flowCount: 3 });
    const groupError = error.cause as FlowChainError;
    expect(groupError).toBeInstanceOf(FlowChainError);
    expect(groupError).toMatchObject({
      code: 'FLOW_FAILED',
      flowName: 'm1',
      flowIndex: 1,
      flowCount: 5,
      details: { group: 'hosts' },
    });
    expect(groupError.cause).toBe(original);
    expect(chain.trace[1]?.children?.map((run) => run.map((entry) => [entry.name, entry.outcome]))).toEqual([
      [['m0', 'rolledBack']],
      [['m1', 'rolledBack']],
      [['m2', 'rolledBack']],
      [['m3', 'rolledBack']],
    ]);
  });

  it('F12 when a later flow fails, the group undoes its members in reverse start order', async () => {
    const { log, ok, failing } = recorder();
    const chain = new FlowChain()
      .flow(ok('p1'))
      .parallel([ok('m0'), ok('m1'), ok('m2')])
      .flow(failing('p2', new Error('p2')));

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(0);

    expect(log).toEqual([
      'run:p1',
      'run:m0',
      'run:m1',
      'run:m2',
      'run:p2',
      'rollback:p2',
      'rollback:m2',
      'rollback:m1',
      'rollback:m0',
      'rollback:p1',
    ]);
    expect(started.current).toMatchObject({ status: 'rejected', error: { code: 'FLOW_FAILED', flowName: 'p2' } });
  });

  it('F12 members inherit the chain timeoutMs; a timed-out member fails the group with FLOW_TIMEOUT', async () => {
    const { log, ok } = recorder();
    const chain = new FlowChain({ timeoutMs: 50 }).parallel([
      ok('fast'),
      {
        name: 'hangs',
        run: () => {
          log.push('run:hangs');
        },
        rollback: (t) => (log.push('rollback:hangs'), t.rollback()),
      },
    ]);

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(50);

    expect(log).toEqual(['run:fast', 'run:hangs', 'rollback:hangs', 'rollback:fast']);
    const error = (started.current as { error: FlowChainError }).error;
    expect(error).toMatchObject({ code: 'FLOW_FAILED', flowName: 'parallel', flowIndex: 0 });
    expect(error.cause).toMatchObject({ code: 'FLOW_TIMEOUT', flowName: 'hangs', flowIndex: 1 });
  });

  it('F12 canceling the chain aborts every running member and fails with CHAIN_CANCELED', async () => {
    const { log } = recorder();
    const member = (name: string): Flow => ({
      name,
      run(trigger) {
        log.push(`run:${name}`);
        trigger.signal.addEventListener('abort', () => trigger.fail(trigger.signal.reason));
      },
      rollback: (t) => (log.push(`rollback:${name}`), t.rollback()),
    });
    const chain = new FlowChain().parallel([member('m0'), member('m1'), member('m2')], { concurrency: 2 });

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(10);
    chain.cancel('stop');
    await vi.advanceTimersByTimeAsync(0);

    expect(log).toEqual(['run:m0', 'run:m1', 'rollback:m0', 'rollback:m1']);
    expect(started.current).toMatchObject({ status: 'rejected', error: { code: 'CHAIN_CANCELED', cause: 'stop' } });
  });
});
