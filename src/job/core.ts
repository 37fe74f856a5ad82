import type { FlowChainError, FlowChainErrorCode } from '../errors.js';
import type { JobStore, ProgressEntry, StoredJob } from '../store/contract.js';
import type { Execution } from './execution.js';
import type { ResolvedKind } from './kind.js';
import type { LongJob } from './record.js';
import type { LongJobState } from './states.js';

/**
 * Events of a {@link JobManager}. Listeners that throw are reported as a process warning
 * and never affect a job.
 *
 * @example
 * ```ts
 * import { JobManager } from 'flowchain';
 * const jobs = new JobManager();
 * jobs.on('job:state', (job, previous) => console.log(`${job.uuid}: ${previous} → ${job.state}`));
 * ```
 */
export interface JobManagerEvents {
  /** A job changed state (on any node, as seen by this one); `previous` is null for a new record. */
  'job:state': [job: LongJob, previous: LongJobState | null];
  /** A job reported progress on this node. */
  'job:progress': [entry: ProgressEntry];
  /** This node claimed a job: its own previous incarnation's (`restart`) or an orphan (`orphan`). */
  'job:claim': [job: LongJob, reason: 'restart' | 'orphan'];
  /** Node incarnations whose lease expired were marked dead (their jobs are orphans now). */
  'node:dead': [incarnations: string[]];
  /** This node lost its lease: it stopped its jobs' side effects and will re-register. */
  'node:fenced': [reason: string];
  /** Background work failed (a store write, a corrupt record); the manager goes on. */
  'manager:error': [error: FlowChainError];
}

/** Options of a {@link JobManager}. */
export interface JobManagerOptions {
  /** Where jobs live. @default a new MemoryJobStore */
  store?: JobStore;
  /** This node's id, stored as `managementNodeUuid`. May be reused by a restarted process. @default a new uuid */
  nodeId?: string;
  /** How often the node renews its lease (stores with node support). @default 5000 */
  heartbeatIntervalMs?: number;
  /** How long a lease lasts; a node silent for longer is dead. At least 3 × the heartbeat. @default 30000 */
  leaseTtlMs?: number;
  /** How often the node looks for orphaned jobs and cancel requests, and `waitFor` re-reads. @default 1000 */
  pollIntervalMs?: number;
  /** Extra time past a lease before a node is declared dead. @default 0 */
  reapGraceMs?: number;
  /**
   * How long a dead node's record stays in the registry (for `nodes.list()` and
   * post-mortems) before a reaping node deletes it; its jobs were orphaned when it died.
   * @default 86400000 (one day)
   */
  deadNodeRetentionMs?: number;
  /** Largest accepted `jobData`, in bytes of JSON. @default 1048576 */
  maxJobDataBytes?: number;
  /** A job taken over more times than this fails with `TAKEOVER_LIMIT_EXCEEDED` (poison job). @default 3 */
  maxTakeovers?: number;
  /** How many jobs one claim takes. @default 100 */
  claimBatchSize?: number;
}

/** Options once validated and defaulted. @internal */
export interface ResolvedJobManagerOptions {
  readonly heartbeatIntervalMs: number;
  readonly leaseTtlMs: number;
  readonly pollIntervalMs: number;
  readonly reapGraceMs: number;
  readonly deadNodeRetentionMs: number;
  readonly maxJobDataBytes: number;
  readonly maxTakeovers: number;
  readonly claimBatchSize: number;
}

/** What the manager's parts share. @internal */
export interface ManagerCore {
  readonly store: JobStore;
  readonly nodeId: string;
  readonly options: ResolvedJobManagerOptions;
  readonly kinds: Map<string, ResolvedKind>;
  readonly executions: Map<string, Execution>;
  /** The current incarnation; undefined when not started or fenced. */
  readonly incarnation: string | undefined;
  /** True while the manager runs (also while stopping: running jobs still complete). */
  readonly live: boolean;
  emitEvent<Event extends keyof JobManagerEvents>(event: Event, ...args: JobManagerEvents[Event]): void;
  /** Runs `fn` after every earlier operation on the same job in this process (J7). */
  serial<Result>(uuid: string, fn: () => Promise<Result>): Promise<Result>;
  /** Publishes a state change: the event, and wakes `waitFor` callers. */
  published(job: StoredJob, previous: LongJobState | null): void;
  /** Reports a background failure (wrapped as `code` when it is not a FlowChainError). */
  reportError(error: unknown, context: string, code?: FlowChainErrorCode): void;
  /** Keeps `work` (an operation that may start a job) in view until it settles: stop() waits for it. */
  track<Result>(work: Promise<Result>): Promise<Result>;
  /** Uuids being recovered or having their cancel delivered on this node (one at a time per job). */
  readonly busy: Set<string>;
  /**
   * Successful results of runs this node finished after it lost its lease (so could not
   * write), by uuid, with the epoch the run owned the job at (see recovery.ts). Oldest first.
   */
  readonly unwritten: Map<string, UnwrittenResult>;
}

/** A result a run computed but could not write: its node had fenced itself off. @internal */
export interface UnwrittenResult {
  readonly epoch: number;
  readonly value: unknown;
}
