import type { Flow } from './flow.js';
import { type ChainRun, Status } from './run.js';

/** What finally happened to a flow. */
export type FlowOutcome =
  | 'done'
  | 'skipped'
  | 'failed'
  | 'rolledBack'
  | 'rollbackFailed'
  | 'running'
  | 'rollingBack'
  | 'notRun';

/**
 * One flow in a chain's trace.
 *
 * @example
 * ```ts
 * import { FlowChain } from 'flowchain';
 * const chain = new FlowChain().flow({ name: 'a', run: (t) => t.next() });
 * await chain.start();
 * const [entry] = chain.trace;
 * console.log(entry?.name, entry?.outcome); // "a" "done"
 * ```
 */
export interface FlowTraceEntry {
  /** The flow's name. */
  name: string;
  /** Zero-based position. */
  index: number;
  /** The final outcome ('failed' is kept only when the flow had no rollback to run). */
  outcome: FlowOutcome;
  /** When `run` started, in milliseconds since the epoch (`undefined` if it never ran). */
  startedAt: number | undefined;
  /** How long `run` took, in milliseconds. */
  durationMs: number | undefined;
  /** Whether this flow's run failed (its rollback may have run since). */
  failed: boolean;
  /** What the run failed with. */
  error?: unknown;
  /** The `ROLLBACK_FAILED` error, when its rollback failed. */
  rollbackError?: unknown;
  /** When its rollback started, in milliseconds since the epoch. */
  rollbackStartedAt?: number;
  /** How long its rollback took, in milliseconds. */
  rollbackDurationMs?: number;
  /** Traces of a nested chain's flows, or of a parallel group's members. */
  children?: FlowTraceEntry[][];
}

const OUTCOMES: readonly FlowOutcome[] = [
  'notRun',
  'running',
  'done',
  'skipped',
  'failed',
  'rollingBack',
  'rolledBack',
  'rollbackFailed',
];

/**
 * Materialises the trace from a run's compact arrays. The run stores one timestamp per
 * step boundary (when each flow's outcome came); a flow starts when the previous one ended.
 * @internal
 */
export function buildTrace<Data>(run: ChainRun<Data> | undefined, flows: readonly Flow<Data>[]): FlowTraceEntry[] {
  const entries: FlowTraceEntry[] = [];
  let previous = run?.startedAt ?? Number.NaN;
  for (let i = 0; i < flows.length; i++) {
    const name = flows[i]?.name ?? `#${i + 1}`;
    const status = run === undefined ? Status.NOT_RUN : run.runningIndex === i ? Status.RUNNING : (run.statusOf(i));
    if (run === undefined || status === Status.NOT_RUN) {
      entries.push({ name, index: i, outcome: 'notRun', startedAt: undefined, durationMs: undefined, failed: false });
      continue;
    }
    // A flow that ended in the turn it started in has no time of its own: it ended at its start.
    const running = status === Status.RUNNING;
    const end = running ? Number.NaN : Number.isNaN(run.timeOf(i)) ? previous : run.timeOf(i);
    const { failed, error } = run.failureOf(i);
    const entry: FlowTraceEntry = {
      name,
      index: i,
      outcome: OUTCOMES[status] ?? 'notRun',
      startedAt: previous,
      durationMs: Number.isNaN(end) ? undefined : end - previous,
      // Failed even when `trigger.fail()` was called without an error.
      failed,
    };
    if (!Number.isNaN(end)) previous = end;
    if (failed) entry.error = error;
    const rollbackError = run.rollbackFailureOf(i);
    if (rollbackError !== undefined) entry.rollbackError = rollbackError;
    const children = run.childrenOf(i);
    if (children !== undefined) {
      entry.children = children.filter((child) => child !== undefined).map((child) => buildTrace(child, child.flows));
    }
    entries.push(entry);
  }
  // Rollbacks run from the highest index down, each starting when the previous one ended.
  if (run !== undefined && run.rollbackBegan !== undefined) {
    let rbPrevious = run.rollbackBegan ?? previous;
    for (let j = entries.length - 1; j >= 0; j--) {
      const entry = entries[j] as FlowTraceEntry;
      const end = run.rollbackTimeOf(j);
      const rolling = run.statusOf(j) === Status.ROLLING_BACK;
      if (Number.isNaN(end) && !rolling) continue;
      entry.rollbackStartedAt = rbPrevious;
      if (!Number.isNaN(end)) {
        entry.rollbackDurationMs = end - rbPrevious;
        rbPrevious = end;
      }
    }
  }
  return entries;
}
