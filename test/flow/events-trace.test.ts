import { afterEach, describe, expect, it, vi } from 'vitest';
import { FlowChain, FlowChainError, type FlowChainEvents, type FlowTrigger } from '../../src/index.js';
import { rejection, track, turn } from './helpers.js';

afterEach(() => {
  vi.useRealTimers();
});

const EVENTS: (keyof FlowChainEvents<unknown>)[] = [
  'chain:start',
  'flow:start',
  'flow:done',
  'flow:skip',
  'flow:fail',
  'flow:late',
  'rollback:start',
  'rollback:done',
  'rollback:fail',
  'chain:cancel',
  'chain:done',
  'chain:fail',
  'handler:fail',
];

/** Records every event of a chain with its arguments, in order, into `log`. */
function listenToAll(chain: FlowChain, log: unknown[][]): void {
  for (const event of EVENTS) {
    (chain.on as (event: string, listener: (...args: unknown[]) => void) => unknown)(event, (...args: unknown[]) => {
      log.push([event, ...args]);
    });
  }
}

describe('F14 events', () => {
  it('F14 emits typed events in order with the right arguments on success', async () => {
    const log: unknown[][] = [];
    const chain = new FlowChain({ name: 'provision' })
      .flow({ name: 'a', run: (t) => t.next() })
      .flow({ name: 'b', skip: () => true, run: (t) => t.next() })
      .flow({ name: 'c', run: async () => undefined })
      .done(() => {
        log.push(['handler:done']);
      })
      .finally(() => {
        log.push(['handler:finally']);
      });
    listenToAll(chain, log);

    await chain.start();

    expect(log).toEqual([
      ['chain:start', 'provision'],
      ['flow:start', 'a', 0],
      ['flow:done', 'a', 0],
      ['flow:skip', 'b', 1],
      ['flow:start', 'c', 2],
      ['flow:done', 'c', 2],
      ['chain:done', chain.data],
      ['handler:done'],
      ['handler:finally'],
    ]);
  });

  it('F14 emits flow:fail, rollback and chain:fail events in order on failure', async () => {
    const log: unknown[][] = [];
    const original = new Error('c failed');
    const chain = new FlowChain({ name: 'provision' })
      .flow({ name: 'a', run: (t) => t.next(), rollback: (t) => t.rollback() })
      .flow({
        name: 'b',
        run: (t) => t.next(),
        rollback() {
          throw new Error('b rollback');
        },
      })
      .flow({ name: 'c', run: (t) => t.fail(original), rollback: async () => undefined })
      .error(() => {
        log.push(['handler:error']);
      });
    listenToAll(chain, log);

    const error = await rejection(chain.start());

    expect(log).toEqual([
      ['chain:start', 'provision'],
      ['flow:start', 'a', 0],
      ['flow:done', 'a', 0],
      ['flow:start', 'b', 1],
      ['flow:done', 'b', 1],
      ['flow:start', 'c', 2],
      ['flow:fail', 'c', 2, original],
      ['rollback:start', 'c', 2],
      ['rollback:done', 'c', 2],
      ['rollback:start', 'b', 1],
      ['rollback:fail', 'b', 1, error.rollbackErrors[0]],
      ['rollback:start', 'a', 0],
      ['rollback:done', 'a', 0],
      ['chain:fail', error],
      ['handler:error'],
    ]);
    expect(error.rollbackErrors).toHaveLength(1);
    expect(log[10]?.[3]).toBe(error.rollbackErrors[0]);
    expect(log[13]?.[1]).toBe(error);
  });

  it('F14 a throwing listener cannot break the chain: it becomes a FLOWCHAIN_LISTENER_ERROR process warning', async () => {
    const warnings: (Error & { code?: string })[] = [];
    const onWarning = (warning: Error & { code?: string }): void => {
      warnings.push(warning);
    };
    process.on('warning', onWarning);
    try {
      const delivered: string[] = [];
      const handlers: string[] = [];
      const chain = new FlowChain({ name: 'noisy' })
        .flow({ name: 'a', run: (t) => t.next() })
        .flow({ name: 'b', run: (t) => t.next() })
        .done(() => {
          handlers.push('done');
        });
      chain.on('flow:start', (name) => {
        throw new Error(`listener broke on ${name}`);
      });
      chain.on('flow:done', (name) => delivered.push(name));
      chain.on('chain:done', () => {
        throw new Error('chain:done listener broke');
      });

      const data = await chain.start();
      await turn();
      await turn();

      expect(data).toBe(chain.data);
      expect(chain.state).toBe('succeeded');
      expect(delivered).toEqual(['a', 'b']);
      expect(handlers).toEqual(['done']);
      const ours = warnings.filter((warning) => warning.code === 'FLOWCHAIN_LISTENER_ERROR');
      expect(ours).toHaveLength(3);
      expect(ours.map((warning) => warning.message)).toEqual([
        expect.stringContaining('"flow:start"'),
        expect.stringContaining('"flow:start"'),
        expect.stringContaining('"chain:done"'),
      ]);
      expect(ours[0]?.message).toContain('"noisy"');
      expect(ours[0]?.message).toContain('listener broke on a');
      expect(ours[1]?.message).toContain('listener broke on b');
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe('F14 errors name the flow and its position', () => {
  it('F14 error.location is `name (i/N)` and the message contains it', async () => {
    const chain = new FlowChain()
      .flow({ name: 'allocate', run: (t) => t.next() })
      .flow({ name: 'copy', run: (t) => t.fail(new Error('disk full')) })
      .flow({ name: 'verify', run: (t) => t.next() })
      .flow({ name: 'finish', run: (t) => t.next() });

    const error = await rejection(chain.start());

    expect(error.location).toBe('copy (2/4)');
    expect(error.message).toContain('copy (2/4)');
    expect(error.message).toContain('disk full');
  });

  it('F14 an unnamed flow is named by its position', async () => {
    const chain = new FlowChain()
      .flow({ run: (t) => t.next() })
      .flow({ run: (t) => t.next() })
      .flow({ run: (t) => t.fail(new Error('x')) });

    const error = await rejection(chain.start());

    expect(error.flowName).toBe('#3');
    expect(error.location).toBe('#3 (3/3)');
    expect(chain.trace.map((entry) => entry.name)).toEqual(['#1', '#2', '#3']);
  });
});

describe('F14 trace', () => {
  it('F14 lists every flow with its outcome, start time and duration once the chain ended', async () => {
    vi.useFakeTimers();
    const original = new Error('failing failed');
    const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const chain = new FlowChain({ preciseTiming: true })
      .flow({ name: 'kept', run: () => wait(10) }) // no rollback: stays done
      .flow({ name: 'skipped', skip: () => true, run: (t) => t.next() })
      .flow({ name: 'undone', run: () => wait(20), rollback: () => wait(5) })
      .flow({
        name: 'broken-undo',
        run: (t) => t.next(),
        rollback() {
          throw new Error('cannot undo');
        },
      })
      .flow({ name: 'failing', run: () => wait(30).then(() => Promise.reject(original)) }) // no rollback: stays failed
      .flow({ name: 'never', run: (t) => t.next() });

    const started = track(chain.start());
    await vi.advanceTimersByTimeAsync(100);
    const error = (started.current as { error: FlowChainError }).error;
    expect(error.cause).toBe(original);

    const trace = chain.trace;
    const base = trace[0]?.startedAt as number;
    expect(Math.abs(base - Date.now())).toBeLessThan(60_000); // milliseconds since the epoch
    const relative = trace.map((entry) => ({
      ...entry,
      startedAt: entry.startedAt === undefined ? undefined : entry.startedAt - base,
      ...(entry.rollbackStartedAt === undefined ? {} : { rollbackStartedAt: entry.rollbackStartedAt - base }),
    }));
    const ms = (value: number) => expect.closeTo(value, 3);
    expect(relative).toEqual([
      { name: 'kept', index: 0, outcome: 'done', startedAt: ms(0), durationMs: ms(10), failed: false },
      { name: 'skipped', index: 1, outcome: 'skipped', startedAt: ms(10), durationMs: ms(0), failed: false },
      {
        name: 'undone',
        index: 2,
        outcome: 'rolledBack',
        startedAt: ms(10),
        durationMs: ms(20),
        failed: false,
        rollbackStartedAt: ms(60),
        rollbackDurationMs: ms(5),
      },
      {
        name: 'broken-undo',
        index: 3,
        outcome: 'rollbackFailed',
        startedAt: ms(30),
        durationMs: ms(0),
        failed: false,
        rollbackError: error.rollbackErrors[0],
        rollbackStartedAt: ms(60),
        rollbackDurationMs: ms(0),
      },
      {
        name: 'failing',
        index: 4,
        outcome: 'failed',
        startedAt: ms(30),
        durationMs: ms(30),
        failed: true,
        error: original,
      },
      { name: 'never', index: 5, outcome: 'notRun', startedAt: undefined, durationMs: undefined, failed: false },
    ]);
    expect(error.rollbackErrors.map((e) => e.flowName)).toEqual(['broken-undo']);
  });

  it('F14 marks a rolled-back failing flow as failed and keeps what it failed with', async () => {
    const original = new Error('x');
    const chain = new FlowChain().flow({ name: 'a', run: (t) => t.fail(original), rollback: (t) => t.rollback() });

    await rejection(chain.start());

    expect(chain.trace).toEqual([
      expect.objectContaining({ name: 'a', outcome: 'rolledBack', failed: true, error: original }),
    ]);
  });

  it('F14 marks a flow that called fail() without an error as failed', async () => {
    const chain = new FlowChain().flow({ name: 'a', run: (t) => t.fail() });

    await rejection(chain.start());

    const [entry] = chain.trace;
    expect(entry?.outcome).toBe('failed');
    expect(entry?.failed).toBe(true);
    expect(entry && 'error' in entry).toBe(true);
    expect(entry?.error).toBeUndefined();
  });

  it('F14 shows progress before the end and notRun for every flow before start', async () => {
    let pending: FlowTrigger | undefined;
    const chain = new FlowChain()
      .flow({ name: 'a', run: (t) => t.next() })
      .flow({ name: 'b', run: (t) => void (pending = t) })
      .flow({ name: 'c', run: (t) => t.next() });

    expect(chain.trace.map((entry) => entry.outcome)).toEqual(['notRun', 'notRun', 'notRun']);
    const started = chain.start();
    expect(chain.trace.map((entry) => entry.outcome)).toEqual(['done', 'running', 'notRun']);
    pending?.next();
    await started;
    expect(chain.trace.map((entry) => entry.outcome)).toEqual(['done', 'done', 'done']);
  });

  it('F14 with the default clock every started flow still has a start time and a duration', async () => {
    const chain = new FlowChain()
      .flow({ name: 'a', run: (t) => t.next() })
      .flow({ name: 'b', run: () => turn() })
      .flow({ name: 'c', run: (t) => t.fail(new Error('c')) })
      .flow({ name: 'd', run: (t) => t.next() });

    await rejection(chain.start());

    const trace = chain.trace;
    for (const entry of trace.slice(0, 3)) {
      expect(typeof entry.startedAt).toBe('number');
      expect(entry.durationMs).toBeGreaterThanOrEqual(0);
    }
    expect(trace[3]).toMatchObject({ outcome: 'notRun', startedAt: undefined, durationMs: undefined });
  });
});
