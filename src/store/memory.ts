import { FlowChainError, FlowChainErrorCode, invalidArgument } from '../errors.js';
import { isFinalState } from '../job/states.js';
import type {
  ClaimRequest,
  JobChange,
  JobChanges,
  JobCount,
  JobGroupField,
  JobQuery,
  JobStore,
  JobWriteCondition,
  NodeRecord,
  NodeRegistry,
  ProgressEntry,
  StoredJob,
} from './contract.js';
import { compareValues, matchesQuery, sortAndPage } from './query.js';

/** Options of {@link MemoryJobStore}. */
export interface MemoryJobStoreOptions {
  /**
   * The store's clock (its "database time") for leases, in milliseconds since the epoch.
   * @default Date.now
   */
  now?: () => number;
}

/** The store methods a failure or latency can be injected into. */
export type MemoryJobStoreMethod =
  | 'createJob'
  | 'getJob'
  | 'updateJob'
  | 'deleteJob'
  | 'queryJobs'
  | 'countJobs'
  | 'countJobsBy'
  | 'claimJobs'
  | 'getCheckpoint'
  | 'appendProgress'
  | 'listProgress'
  | 'register'
  | 'heartbeat'
  | 'leave'
  | 'listNodes'
  | 'reap';

/** A fault to inject with {@link MemoryJobStore.injectFault}. */
export interface MemoryJobStoreFault {
  /** What the call fails with. @default a STORE_FAILURE error */
  error?: unknown;
  /** Delay before the call runs (or fails), in milliseconds. @default 0 */
  latencyMs?: number;
  /** How many calls the fault applies to; `Infinity` until cleared. @default 1 */
  times?: number;
  /**
   * Perform the write, then fail anyway: an ambiguous commit, as when a connection drops
   * after COMMIT. Only meaningful for writes. @default false
   */
  afterWrite?: boolean;
  /** Only pure latency, no failure. @default false */
  latencyOnly?: boolean;
}

interface Entry {
  job: StoredJob;
  checkpoint: string | undefined;
}

interface NodeEntry {
  record: NodeRecord;
  leaseUntilMs: number;
}

/**
 * The embedded default store, and the job-storage mock for your own tests: everything in
 * process memory, the full contract including node leases (several managers can share one
 * instance), change notifications, and tools to inspect records and inject failures or
 * latency into any method.
 *
 * @example
 * ```ts
 * import { JobManager, MemoryJobStore } from 'flowchain';
 * const store = new MemoryJobStore();
 * store.injectFault('updateJob', { times: 1 }); // the next updateJob fails with STORE_FAILURE
 * const jobs = new JobManager({ store, nodeId: 'mn-1' });
 * console.log(store.inspect().length); // 0
 * ```
 */
export class MemoryJobStore implements JobStore {
  readonly nodes: NodeRegistry;
  private readonly jobs = new Map<string, Entry>();
  private readonly progress = new Map<string, ProgressEntry[]>();
  private readonly nodeEntries = new Map<string, NodeEntry>();
  private readonly listeners = new Set<(change: JobChange) => void>();
  private readonly faults = new Map<MemoryJobStoreMethod, MemoryJobStoreFault & { remaining: number }>();
  private readonly now: () => number;
  private closed = false;

  constructor(options: MemoryJobStoreOptions = {}) {
    if (options === null || typeof options !== 'object') throw invalidArgument('options', 'an object', options);
    if (options.now !== undefined && typeof options.now !== 'function') throw invalidArgument('now', 'a function', options.now);
    this.now = options.now ?? Date.now;
    this.nodes = {
      register: (node) => this.register(node),
      heartbeat: (incarnation, leaseTtlMs) => this.heartbeat(incarnation, leaseTtlMs),
      leave: (incarnation) => this.leave(incarnation),
      list: () => this.listNodes(),
      reap: (graceMs, retainDeadMs) => this.reap(graceMs, retainDeadMs),
    };
  }

  // ---- test tools -------------------------------------------------------------------

  /** Copies of every stored job, oldest first. */
  inspect(): StoredJob[] {
    return [...this.jobs.values()].map((entry) => ({ ...entry.job }));
  }

  /** Copies of every node incarnation. */
  inspectNodes(): NodeRecord[] {
    return [...this.nodeEntries.values()].map((entry) => ({ ...entry.record }));
  }

  /**
   * Makes the next call(s) of `method` fail or slow down. Faults on one method do not
   * affect the others; a later injection on the same method replaces the earlier one.
   */
  injectFault(method: MemoryJobStoreMethod, fault: MemoryJobStoreFault = {}): void {
    const times = fault.times ?? 1;
    if (!(times >= 1)) throw invalidArgument('fault.times', 'a number from 1 up (or Infinity)', times);
    this.faults.set(method, { ...fault, remaining: times });
  }

  /** Removes every injected fault (or those of one method). */
  clearFaults(method?: MemoryJobStoreMethod): void {
    if (method === undefined) this.faults.clear();
    else this.faults.delete(method);
  }

  /** Overwrites one field of a stored record with a raw value, to test corrupt-record handling. */
  corrupt(uuid: string, field: string, rawValue: unknown): void {
    const entry = this.jobs.get(uuid);
    if (entry === undefined) throw invalidArgument('uuid', 'the uuid of a stored job', uuid);
    (entry.job as unknown as Record<string, unknown>)[field] = rawValue;
  }

  // ---- jobs -------------------------------------------------------------------------

  async createJob(job: StoredJob): Promise<StoredJob> {
    await this.before('createJob');
    if (this.jobs.has(job.uuid)) {
      throw new FlowChainError(FlowChainErrorCode.STORE_CONFLICT, `A job with uuid ${job.uuid} already exists.`, {
        details: { uuid: job.uuid },
      });
    }
    const stored = { ...job };
    this.jobs.set(job.uuid, { job: stored, checkpoint: undefined });
    this.changed(stored);
    await this.after('createJob');
    return { ...stored };
  }

  async getJob(uuid: string): Promise<StoredJob | undefined> {
    await this.before('getJob');
    const entry = this.jobs.get(uuid);
    return entry === undefined ? undefined : { ...entry.job };
  }

  async updateJob(uuid: string, condition: JobWriteCondition, changes: JobChanges): Promise<StoredJob> {
    await this.before('updateJob');
    const entry = this.jobs.get(uuid);
    if (entry === undefined) throw notFound(uuid);
    checkCondition(entry.job, condition);
    const { checkpoint, ...fields } = changes;
    const next: StoredJob = { ...entry.job, uuid, version: entry.job.version + 1 };
    // A change given as undefined leaves the field alone, as the SQL stores do.
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined && key !== 'uuid' && key !== 'version') (next as unknown as Record<string, unknown>)[key] = value;
    }
    entry.job = next;
    if (checkpoint !== undefined) entry.checkpoint = checkpoint === null ? undefined : checkpoint;
    this.changed(next);
    await this.after('updateJob');
    return { ...next };
  }

  async deleteJob(uuid: string, condition: JobWriteCondition): Promise<void> {
    await this.before('deleteJob');
    const entry = this.jobs.get(uuid);
    if (entry === undefined) throw notFound(uuid);
    checkCondition(entry.job, condition);
    this.jobs.delete(uuid);
    // Every report of the job goes, under its current apiId and those of earlier runs.
    for (const [apiId, list] of this.progress) {
      const kept = list.filter((report) => report.jobUuid !== uuid);
      if (kept.length === 0) this.progress.delete(apiId);
      else if (kept.length !== list.length) this.progress.set(apiId, kept);
    }
    this.changed(entry.job);
    await this.after('deleteJob');
  }

  async queryJobs(query: JobQuery): Promise<StoredJob[]> {
    await this.before('queryJobs');
    return sortAndPage(this.matching(query), query).map((job) => ({ ...job }));
  }

  async countJobs(query: JobQuery): Promise<number> {
    await this.before('countJobs');
    return this.matching(query).length;
  }

  async countJobsBy(query: JobQuery, field: JobGroupField): Promise<JobCount[]> {
    await this.before('countJobsBy');
    const counts = new Map<string | null, number>();
    for (const job of this.matching(query)) {
      const value = job[field];
      counts.set(value, (counts.get(value) ?? 0) + 1);
    }
    return [...counts.entries()]
      .map(([value, count]) => ({ value, count }))
      .sort((a, b) => compareValues(a.value, b.value));
  }

  async claimJobs(request: ClaimRequest): Promise<StoredJob[]> {
    await this.before('claimJobs');
    const claimed: StoredJob[] = [];
    const kinds = new Set(request.jobNames);
    const candidates = [...this.jobs.values()]
      .map((entry) => entry)
      .filter(({ job }) =>
        isClaimable(job, request, kinds, (incarnation) => this.nodeEntries.get(incarnation)?.record.state === 'alive'),
      )
      .sort((a, b) => compareValues(a.job.createDate, b.job.createDate) || compareValues(a.job.uuid, b.job.uuid));
    for (const entry of candidates) {
      if (claimed.length >= request.limit) break;
      const job = entry.job;
      const next: StoredJob = {
        ...job,
        incarnation: request.incarnation,
        managementNodeUuid: request.nodeId,
        epoch: job.epoch + 1,
        version: job.version + 1,
        takeovers: job.state === 'Running' || job.state === 'Canceling' ? job.takeovers + 1 : job.takeovers,
        lastOpDate: new Date(this.now()).toISOString(),
      };
      entry.job = next;
      claimed.push({ ...next });
      this.changed(next);
    }
    await this.after('claimJobs');
    return claimed;
  }

  async getCheckpoint(uuid: string): Promise<string | undefined> {
    await this.before('getCheckpoint');
    return this.jobs.get(uuid)?.checkpoint;
  }

  async appendProgress(entry: ProgressEntry): Promise<void> {
    await this.before('appendProgress');
    let list = this.progress.get(entry.apiId);
    if (list === undefined) this.progress.set(entry.apiId, (list = []));
    list.push({ ...entry });
    await this.after('appendProgress');
  }

  async listProgress(apiId: string): Promise<ProgressEntry[]> {
    await this.before('listProgress');
    return (this.progress.get(apiId) ?? []).map((entry) => ({ ...entry }));
  }

  subscribe(listener: (change: JobChange) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
  }

  /** Same as {@link MemoryJobStore.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- nodes ------------------------------------------------------------------------

  private async register(node: { nodeId: string; incarnation: string; leaseTtlMs: number }): Promise<void> {
    await this.before('register');
    const now = this.now();
    for (const entry of this.nodeEntries.values()) {
      if (entry.record.nodeId === node.nodeId && entry.record.state === 'alive') entry.record.state = 'dead';
    }
    const iso = new Date(now).toISOString();
    this.nodeEntries.set(node.incarnation, {
      record: {
        nodeId: node.nodeId,
        incarnation: node.incarnation,
        startedAt: iso,
        heartbeatAt: iso,
        leaseUntil: new Date(now + node.leaseTtlMs).toISOString(),
        state: 'alive',
      },
      leaseUntilMs: now + node.leaseTtlMs,
    });
    await this.after('register');
  }

  private async heartbeat(incarnation: string, leaseTtlMs: number): Promise<boolean> {
    await this.before('heartbeat');
    const entry = this.nodeEntries.get(incarnation);
    if (entry === undefined || entry.record.state !== 'alive') return false;
    const now = this.now();
    entry.leaseUntilMs = now + leaseTtlMs;
    entry.record.heartbeatAt = new Date(now).toISOString();
    entry.record.leaseUntil = new Date(entry.leaseUntilMs).toISOString();
    await this.after('heartbeat');
    return true;
  }

  private async leave(incarnation: string): Promise<void> {
    await this.before('leave');
    this.nodeEntries.delete(incarnation);
    this.orphan((owner) => owner === incarnation);
    await this.after('leave');
  }

  private async listNodes(): Promise<NodeRecord[]> {
    await this.before('listNodes');
    return this.inspectNodes();
  }

  private async reap(graceMs: number, retainDeadMs: number | undefined): Promise<string[]> {
    await this.before('reap');
    const now = this.now();
    const newlyDead: string[] = [];
    for (const entry of this.nodeEntries.values()) {
      if (entry.record.state === 'alive' && entry.leaseUntilMs + graceMs < now) {
        entry.record.state = 'dead';
        newlyDead.push(entry.record.incarnation);
      }
    }
    // Jobs of any dead incarnation (also one superseded by a restart), or of one the
    // registry does not know, become orphans.
    this.orphan((incarnation) => this.nodeEntries.get(incarnation)?.record.state !== 'alive');
    if (retainDeadMs !== undefined) {
      for (const [incarnation, entry] of this.nodeEntries) {
        if (entry.record.state === 'dead' && entry.leaseUntilMs + retainDeadMs < now) this.nodeEntries.delete(incarnation);
      }
    }
    await this.after('reap');
    return newlyDead;
  }

  /** Clears the owner of every unfinished job whose incarnation `ownerGone` says is gone. */
  private orphan(ownerGone: (incarnation: string) => boolean): void {
    const iso = new Date(this.now()).toISOString();
    for (const entry of this.jobs.values()) {
      const job = entry.job;
      if (job.incarnation === null || isFinalState(job.state) || !ownerGone(job.incarnation)) continue;
      entry.job = {
        ...job,
        incarnation: null,
        managementNodeUuid: null,
        epoch: job.epoch + 1,
        version: job.version + 1,
        lastOpDate: iso,
      };
      this.changed(entry.job);
    }
  }

  // ---- plumbing ---------------------------------------------------------------------

  private matching(query: JobQuery): StoredJob[] {
    const out: StoredJob[] = [];
    for (const entry of this.jobs.values()) if (matchesQuery(entry.job, query)) out.push(entry.job);
    return out;
  }

  /** Applies an injected fault before the call (failure or latency). */
  private async before(method: MemoryJobStoreMethod): Promise<void> {
    if (this.closed) {
      throw new FlowChainError(FlowChainErrorCode.STORE_FAILURE, `MemoryJobStore.${method}: the store is closed.`, {
        details: { method },
      });
    }
    if (this.faults.size === 0) return;
    const fault = this.faults.get(method);
    if (fault === undefined) return;
    if (fault.latencyMs !== undefined && fault.latencyMs > 0) await sleep(fault.latencyMs);
    if (fault.afterWrite || fault.latencyOnly) {
      if (fault.latencyOnly) this.consume(method, fault);
      return;
    }
    this.consume(method, fault);
    throw fault.error ?? injectedFailure(method);
  }

  /** Applies an "after write" fault: the write happened, the caller still sees an error. */
  private async after(method: MemoryJobStoreMethod): Promise<void> {
    if (this.faults.size === 0) return;
    const fault = this.faults.get(method);
    if (fault === undefined || !fault.afterWrite) return;
    this.consume(method, fault);
    throw fault.error ?? injectedFailure(method);
  }

  private consume(method: MemoryJobStoreMethod, fault: { remaining: number }): void {
    fault.remaining--;
    if (fault.remaining <= 0) this.faults.delete(method);
  }

  private changed(job: StoredJob): void {
    if (this.listeners.size === 0) return;
    const change: JobChange = {
      uuid: job.uuid,
      state: job.state,
      version: job.version,
      managementNodeUuid: job.managementNodeUuid,
    };
    // Delivered after the current call returns, never from inside a store method.
    queueMicrotask(() => {
      for (const listener of this.listeners) {
        try {
          listener(change);
        } catch {
          // A listener's failure is its own; notifications are hints.
        }
      }
    });
  }
}

function isClaimable(
  job: StoredJob,
  request: ClaimRequest,
  kinds: Set<string>,
  alive: (incarnation: string) => boolean,
): boolean {
  if (isFinalState(job.state) || !kinds.has(job.jobName)) return false;
  if (request.scope === 'orphans') return job.incarnation === null;
  return (
    job.incarnation !== null &&
    job.managementNodeUuid === request.nodeId &&
    job.incarnation !== request.incarnation &&
    !alive(job.incarnation)
  );
}

/** Checks a write condition against the stored job. @internal */
export function checkCondition(job: StoredJob, condition: JobWriteCondition): void {
  const owner = condition.owner;
  if (owner !== undefined && (job.incarnation !== owner.incarnation || job.epoch !== owner.epoch)) {
    throw ownershipLost(job.uuid, owner, job);
  }
  if (job.version !== condition.version) throw versionConflict(job.uuid, condition.version, job.version);
}

/** `STORE_CONFLICT` for a lost compare-and-set. @internal */
export function versionConflict(uuid: string, expected: number, actual: number | undefined): FlowChainError {
  return new FlowChainError(
    FlowChainErrorCode.STORE_CONFLICT,
    `Job ${uuid} was changed by another writer (expected version ${expected}, found ${actual ?? 'another'}). Re-read it and retry.`,
    { details: { uuid, expectedVersion: expected, actualVersion: actual ?? null } },
  );
}

/** `OWNERSHIP_LOST` for a fenced write that no longer owns the job. @internal */
export function ownershipLost(
  uuid: string,
  owner: { incarnation: string; epoch: number },
  actual: { incarnation: string | null; epoch: number } | undefined,
): FlowChainError {
  return new FlowChainError(
    FlowChainErrorCode.OWNERSHIP_LOST,
    `This node no longer owns job ${uuid} (incarnation ${owner.incarnation} epoch ${owner.epoch}; the job is now at ${
      actual === undefined ? 'another owner' : `incarnation ${actual.incarnation ?? 'none'} epoch ${actual.epoch}`
    }); its write was rejected.`,
    { details: { uuid, incarnation: owner.incarnation, epoch: owner.epoch } },
  );
}

/** `JOB_NOT_FOUND`. @internal */
export function notFound(uuid: string): FlowChainError {
  return new FlowChainError(FlowChainErrorCode.JOB_NOT_FOUND, `No job has uuid ${uuid}.`, { details: { uuid } });
}

function injectedFailure(method: string): FlowChainError {
  return new FlowChainError(FlowChainErrorCode.STORE_FAILURE, `MemoryJobStore.${method} failed (injected fault).`, {
    details: { method, injected: true },
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
