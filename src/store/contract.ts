import type { LongJob } from '../job/record.js';
import type { LongJobState } from '../job/states.js';

/*
 * The storage contract (S1): small, semantic and async. No SQL, connection or driver type
 * appears here. Every store runs the same conformance suite (`flowchain/testing`).
 *
 * Ownership is two-level (reliability.md §2.1): a node *incarnation* (one per
 * `JobManager.start()`) owns a job, and the job's `epoch` is incremented by every claim, so
 * a write fenced with `{ incarnation, epoch }` fails once anyone else has taken the job.
 * Every write is also a compare-and-set on `version` (J7).
 */

/**
 * A job as a store keeps it: the public {@link LongJob} plus the ownership bookkeeping.
 *
 * @example
 * ```ts
 * import type { StoredJob } from 'flowchain';
 * const isOrphan = (job: StoredJob) => job.incarnation === null && job.state === 'Running';
 * ```
 */
export interface StoredJob extends LongJob {
  /** The incarnation (one `JobManager.start()`) that owns the job; `null` when orphaned or final. */
  incarnation: string | null;
  /** Ownership epoch, incremented on every claim or takeover: the fencing token. */
  epoch: number;
  /** How many times the job was taken over while in progress (poison-job guard). */
  takeovers: number;
}

/** Fields a write may change. `checkpoint` is written atomically with the version bump. */
export type JobChanges = Partial<Omit<StoredJob, 'uuid' | 'version'>> & {
  /** JSON text of a durable chain's checkpoint; `null` deletes it. */
  checkpoint?: string | null;
};

/** The condition a write must meet; a mismatch is `STORE_CONFLICT` (version) or `OWNERSHIP_LOST` (owner). */
export interface JobWriteCondition {
  /** The version the writer read; the write bumps it by one. */
  version: number;
  /** When set, the job must still be owned by this incarnation at this epoch. */
  owner?: { incarnation: string; epoch: number };
}

/** A date range filter; ISO-8601 strings, both bounds inclusive. */
export interface DateRange {
  from?: string;
  to?: string;
}

/** Fields a query can sort by. */
export type JobSortField = 'createDate' | 'lastOpDate' | 'name' | 'jobName' | 'state' | 'uuid' | 'executeTime';

/** Fields a count can be grouped by. */
export type JobGroupField =
  | 'state'
  | 'jobName'
  | 'name'
  | 'managementNodeUuid'
  | 'targetResourceUuid'
  | 'apiId';

/**
 * A filter over jobs: every given field must match (a value, or any of an array of values);
 * date fields take a range. Results are sorted by `sortBy` (default `createDate`, then
 * `uuid`), then paged with `offset`/`limit`.
 *
 * @example
 * ```ts
 * import type { JobQuery } from 'flowchain';
 * const stuck: JobQuery = { state: ['Running', 'Canceling'], lastOpDate: { to: '2026-01-01T00:00:00.000Z' }, limit: 50 };
 * ```
 */
export interface JobQuery {
  uuid?: string | readonly string[];
  name?: string | readonly string[];
  description?: string | null | readonly (string | null)[];
  jobName?: string | readonly string[];
  jobData?: string | readonly string[];
  jobResult?: string | null | readonly (string | null)[];
  managementNodeUuid?: string | null | readonly (string | null)[];
  apiId?: string | readonly string[];
  targetResourceUuid?: string | null | readonly (string | null)[];
  state?: LongJobState | readonly LongJobState[];
  createDate?: DateRange;
  lastOpDate?: DateRange;
  executeTime?: number | null | readonly (number | null)[];
  sortBy?: JobSortField;
  sortDirection?: 'asc' | 'desc';
  limit?: number;
  offset?: number;
}

/** One group of a grouped count. */
export interface JobCount {
  value: string | null;
  count: number;
}

/** What {@link JobStore.claimJobs} may take. */
export interface ClaimRequest {
  nodeId: string;
  incarnation: string;
  /**
   * `orphans`: unfinished jobs nobody owns. `previous`: unfinished jobs of the same `nodeId`
   * owned by another incarnation that is not alive (a restarted node reclaiming its own).
   */
  scope: 'orphans' | 'previous';
  /** Only jobs of these kinds (a node runs only kinds it has registered). */
  jobNames: readonly string[];
  limit: number;
}

/**
 * A progress report, stored under the job's `apiId` (J6).
 *
 * @example
 * ```ts
 * import type { ProgressEntry } from 'flowchain';
 * const line = (p: ProgressEntry) => `${p.percent}% ${p.time}`;
 * ```
 */
export interface ProgressEntry {
  apiId: string;
  jobUuid: string;
  /** 0–100. */
  percent: number;
  /** JSON text of the detail given with the report, or `null`. */
  detail: string | null;
  /** ISO-8601. */
  time: string;
}

/** A node incarnation as the store sees it. */
export interface NodeRecord {
  nodeId: string;
  incarnation: string;
  startedAt: string;
  heartbeatAt: string;
  /** The store's own clock decides when this passes. */
  leaseUntil: string;
  state: 'alive' | 'dead';
}

/**
 * Optional node capability: heartbeats, leases and reaping dead nodes (J8 across nodes).
 * Every time comparison uses the store's clock (the database's), never the caller's.
 */
export interface NodeRegistry {
  /**
   * Registers a new incarnation with a lease of `leaseTtlMs`. Any other alive incarnation
   * with the same `nodeId` is a previous run of this node: it is marked dead, so its
   * heartbeat fails and it fences itself off.
   */
  register(node: { nodeId: string; incarnation: string; leaseTtlMs: number }): Promise<void>;
  /** Renews the lease; false when the incarnation is dead or unknown (it must stop at once). */
  heartbeat(incarnation: string, leaseTtlMs: number): Promise<boolean>;
  /** Graceful leave: the incarnation is removed; jobs it still owns become orphans. */
  leave(incarnation: string): Promise<void>;
  /** Every known incarnation. */
  list(): Promise<NodeRecord[]>;
  /**
   * Marks alive incarnations whose lease ended more than `graceMs` ago dead, and orphans
   * the unfinished jobs of every dead incarnation, and of any incarnation the registry does
   * not know (owner cleared, epoch and version incremented). With `retainDeadMs`, it also
   * deletes dead incarnations whose lease ended more than that long ago (their jobs are
   * orphans by then). Returns the incarnations it marked dead.
   */
  reap(graceMs: number, retainDeadMs?: number): Promise<string[]>;
}

/** A change notification: a hint to re-read, never the source of truth. */
export interface JobChange {
  uuid: string;
  state: LongJobState;
  version: number;
  managementNodeUuid: string | null;
}

/**
 * Where jobs, progress and checkpoints live. Implement it to use your own storage, and run
 * `describeJobStoreContract` from `flowchain/testing` on it.
 *
 * Errors: a version mismatch is `STORE_CONFLICT`, an owner mismatch `OWNERSHIP_LOST`, a
 * missing job `JOB_NOT_FOUND`, anything the storage itself fails with `STORE_FAILURE`
 * (with the driver's error as `cause`). A failed write changes nothing.
 *
 * @example
 * ```ts
 * import { MemoryJobStore, type JobStore } from 'flowchain';
 * const store: JobStore = new MemoryJobStore();
 * const running = await store.queryJobs({ state: 'Running' });
 * await store.close();
 * ```
 */
export interface JobStore {
  /** Creates a job; `STORE_CONFLICT` if the uuid exists. Returns the stored record. */
  createJob(job: StoredJob): Promise<StoredJob>;
  /** The job, or `undefined`. Records are returned as stored, even if corrupt (S4). */
  getJob(uuid: string): Promise<StoredJob | undefined>;
  /** Compare-and-set write; returns the record with `version` incremented. */
  updateJob(uuid: string, condition: JobWriteCondition, changes: JobChanges): Promise<StoredJob>;
  /** Deletes a job, its checkpoint and all its progress reports (of every run); compare-and-set on `version`. */
  deleteJob(uuid: string, condition: JobWriteCondition): Promise<void>;
  /** Jobs matching the query. */
  queryJobs(query: JobQuery): Promise<StoredJob[]>;
  /** How many jobs match (`limit`/`offset` ignored). */
  countJobs(query: JobQuery): Promise<number>;
  /** How many jobs match, per value of `field`, ordered by value (nulls first). */
  countJobsBy(query: JobQuery, field: JobGroupField): Promise<JobCount[]>;
  /**
   * Claims up to `limit` unfinished jobs of the given kinds: orphans (`incarnation` null), or,
   * with scope `previous`, jobs of the same `nodeId` owned by another incarnation that is not
   * alive in the node registry (any other incarnation, for a store without one). Sets the
   * owner, increments `epoch` and `version`, and increments `takeovers` for jobs that were
   * Running or Canceling. Each job goes to exactly one claimer.
   */
  claimJobs(request: ClaimRequest): Promise<StoredJob[]>;
  /** The job's checkpoint (JSON text), or `undefined`. */
  getCheckpoint(uuid: string): Promise<string | undefined>;
  /** Appends a progress report. */
  appendProgress(entry: ProgressEntry): Promise<void>;
  /** Every progress report under `apiId`, oldest first. */
  listProgress(apiId: string): Promise<ProgressEntry[]>;
  /** Optional: node heartbeats and leases, for several managers on one store. */
  readonly nodes?: NodeRegistry;
  /** Optional: change notifications, as wake-up hints. Returns an unsubscribe function. */
  subscribe?(listener: (change: JobChange) => void): () => void;
  /** Releases the store's resources (connections, file handles). Idempotent. */
  close(): Promise<void>;
}
