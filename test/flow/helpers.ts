import { FlowChainError, type Flow, type FlowData } from '../../src/index.js';

/**
 * Flows that write what happens to them into one shared log: `run:<name>` when run starts,
 * `rollback:<name>` when its rollback starts. Everything completes synchronously unless the
 * test builds its own flow.
 */
export function recorder<Data = FlowData>() {
  const log: string[] = [];
  return {
    log,
    /** Calls next(); rollback calls rollback(). */
    ok(name: string, extra: Partial<Flow<Data>> = {}): Flow<Data> {
      return {
        name,
        run(trigger) {
          log.push(`run:${name}`);
          trigger.next();
        },
        rollback(trigger) {
          log.push(`rollback:${name}`);
          trigger.rollback();
        },
        ...extra,
      };
    },
    /** Calls fail(error); rollback calls rollback(). */
    failing(name: string, error: unknown, extra: Partial<Flow<Data>> = {}): Flow<Data> {
      return {
        name,
        run(trigger) {
          log.push(`run:${name}`);
          trigger.fail(error);
        },
        rollback(trigger) {
          log.push(`rollback:${name}`);
          trigger.rollback();
        },
        ...extra,
      };
    },
    /** Calls next() and has no rollback. */
    plain(name: string): Flow<Data> {
      return {
        name,
        run(trigger) {
          log.push(`run:${name}`);
          trigger.next();
        },
      };
    },
  };
}

/** What a promise settled with, without ever leaving a rejection unhandled. */
export type Settled<Value> = { status: 'pending' } | { status: 'fulfilled'; value: Value } | { status: 'rejected'; error: unknown };

/** Follows a promise; read `.current` at any time. Counts settlements too. */
export function track<Value>(promise: Promise<Value>): { current: Settled<Value>; settlements: number } {
  const tracked: { current: Settled<Value>; settlements: number } = { current: { status: 'pending' }, settlements: 0 };
  promise.then(
    (value) => {
      tracked.settlements++;
      tracked.current = { status: 'fulfilled', value };
    },
    (error: unknown) => {
      tracked.settlements++;
      tracked.current = { status: 'rejected', error };
    },
  );
  return tracked;
}

/** Awaits a promise that must reject, and returns the rejection as a FlowChainError. */
export async function rejection(promise: Promise<unknown>): Promise<FlowChainError> {
  let error: unknown;
  try {
    await promise;
  } catch (caught) {
    error = caught;
  }
  if (!(error instanceof FlowChainError)) {
    throw new Error(`expected a FlowChainError rejection, got ${String(error)}`);
  }
  return error;
}

/** Calls `fn`, which must throw a FlowChainError, and returns it. */
export function thrownBy(fn: () => unknown): FlowChainError {
  try {
    fn();
  } catch (error) {
    if (error instanceof FlowChainError) return error;
    throw new Error(`expected a FlowChainError, got ${String(error)}`);
  }
  throw new Error('expected the call to throw');
}

// Captured at import, before any test installs fake timers.
const realSetImmediate = setImmediate;

/** One real event-loop turn (even under fake timers): pending promise reactions and nextTicks run. */
export function turn(): Promise<void> {
  return new Promise((resolve) => realSetImmediate(resolve));
}
