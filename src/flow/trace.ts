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

/** Materialises the trace from a run's compact status and time arrays. @internal */
export function buildTrace<Data>(run: ChainRun<Data> | undefined, flows: readonly Flow<Data>[]): FlowTraceEntry[] {
  const entries: FlowTraceEntry[] = [];
  for (let i = 0; i < flows.length; i++) {
    const name = flows[i]?.name ?? `#${i + 1}`;
    if (run === undefined) {
      entries.push({ name, index: i, outcome: 'notRun', startedAt: undefined, durationMs: undefined, failed: false });
      continue;
    }
    const status = run.status[i] ?? Status.NOT_RUN;
    const started = status !== Status.NOT_RUN;
    const start = run.times[2 * i] ?? 0;
    const end = run.times[2 * i + 1] ?? 0;
    const entry: FlowTraceEntry = {
      name,
      index: i,
      outcome: OUTCOMES[status] ?? 'notRun',
      startedAt: started ? start : undefined,
      durationMs: started && end >= start && end !== 0 ? end - start : undefined,
      // `in`, not `!== undefined`: `trigger.fail()` without an argument fails with undefined.
      failed: i in run.flowErrors,
    };
    if (i in run.flowErrors) entry.error = run.flowErrors[i];
    const rollbackError = run.rollbackFailures[i];
    if (rollbackError !== undefined) entry.rollbackError = rollbackError;
    const rbStart = run.rbTimes?.[2 * i] ?? 0;
    if (rbStart !== 0) {
      entry.rollbackStartedAt = rbStart;
      const rbEnd = run.rbTimes?.[2 * i + 1] ?? 0;
      if (rbEnd !== 0) entry.rollbackDurationMs = rbEnd - rbStart;
    }
    const children = run.children[i];
    if (children !== undefined) {
      entry.children = children.filter((child) => child !== undefined).map((child) => buildTrace(child, child.flows));
    }
    entries.push(entry);
  }
  return entries;
}
