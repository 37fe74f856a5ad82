import { EventEmitter } from 'eventemitter3';
import { FlowChainError, FlowChainErrorCode, describeThrown, invalidArgument, isFlowChainError } from '../errors.js';
import type { JobCount, JobQuery, JobStore, ProgressEntry, StoredJob } from '../store/contract.js';
import { MemoryJobStore } from '../store/memory.js';
import { checkGroupField, checkJobQuery } from '../store/query.js';
import type { JobManagerEvents, JobManagerOptions, ManagerCore, ResolvedJobManagerOptions, UnwrittenResult } from './core.js';
import { type Execution, nowIso, startExecution } from './execution.js';
import { toJsonText } from './json.js';
import { type ChainJobKind, type JobKind, type ResolvedKind, resolveKind } from './kind.js';
import { Liveness } from './liveness.js';
import {
  cancelJob,
  checkDescription,
  checkName,
  cleanJob,
  deleteJob,
  mustRead,
  requireKind,
  rerunJob,
  resumeJob,
  updateJob,
} from './operations.js';
import { type LongJob, checkStoredJob, isUuid, newUuid, toLongJob } from './record.js';
import { type LongJobState, isFinalState } from './states.js';

/**
 * What {@link JobManager.submit} takes.
 *
 * @example
 * ```ts
 * import type { SubmitRequest } from 'flowchain';
 * const request: SubmitRequest = {
 *   jobName: 'APIPrimaryStorageMigrateVolumeMsg',
 *   jobData: { volumeUuid: 'v1', type: 'NFSTONFSVOLUME' },
 *   targetResourceUuid: 'v1',
 * };
 * ```
 */
export interface SubmitRequest<JobData = unknown> {
  /** A registered job kind. */
  jobName: string;
  /** The job's input; must survive JSON unchanged. @default {} */
  jobData?: JobData;
  /** @default jobName */
  name?: string;
  description?: string | null;
  targetResourceUuid?: string | null;
  /** Preset uuid (32 hex characters). @default a new uuid */
  uuid?: string;
  /** Preset apiId, the key progress is reported under (32 hex characters). @default a new uuid */
  apiId?: string;
}

/** Options of {@link JobManager.stop}. */
export interface StopOptions {
  /**
   * `drain` waits for running jobs to finish; `suspend` aborts them and leaves them
   * Suspended for another node or a restart to resume. @default 'drain'
   */
  mode?: 'drain' | 'suspend';
  /** After this many milliseconds, jobs still running are suspended anyway. @default no limit */
  timeoutMs?: number;
}

/** Options of {@link JobManager.waitFor}. */
export interface WaitForOptions {
  /** Give up after this many milliseconds with `WAIT_TIMEOUT`. @default no limit */
  timeoutMs?: number;
  /** Give up when this signal aborts. */
  signal?: AbortSignal;
}

/**
 * Runs and tracks long jobs, as ZStack's LongJobManager: submit a job of a registered kind,
 * and it runs in the background while its record moves through the states; cancel, rerun,
 * resume, clean, query and wait for it from any node sharing the store.
 *
 * @example
 * ```ts
 * import { JobManager, MemoryJobStore } from 'flowchain';
 * const jobs = new JobManager({ store: new MemoryJobStore(), nodeId: 'mn-1' });
 * jobs.register('APIPrimaryStorageMigrateVolumeMsg', {
 *   async start(job, ctx) { await ctx.progress(50); return { migrated: true }; },
 *   async cancel() { return false; },
 * });
 * await jobs.start();
 * const job = await jobs.submit({ jobName: 'APIPrimaryStorageMigrateVolumeMsg', jobData: { volumeUuid: 'v1' } });
 * const finished = await jobs.waitFor(job.uuid);
 * console.log(finished.state, finished.jobResult); // Succeeded {"migrated":true}
 * await jobs.stop();
 * ```
 */
export class JobManager extends EventEmitter<JobManagerEvents> {
  /** This node's id (`managementNodeUuid` of the jobs it runs). */
  readonly nodeId: string;
  /** The store this manager uses. */
  readonly store: JobStore;
  private readonly options: ResolvedJobManagerOptions;
  private readonly kinds = new Map<string, ResolvedKind>();
  private readonly executions = new Map<string, Execution>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly waiters = new Map<string, Set<(job?: StoredJob) => void>>();
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly busy = new Set<string>();
  private readonly unwritten = new Map<string, UnwrittenResult>();
  private readonly core: ManagerCore;
  private readonly liveness: Liveness;
  private status: 'idle' | 'starting' | 'running' | 'stopping' | 'stopped' = 'idle';
  private transition: Promise<void> | undefined = undefined;

  constructor(options: JobManagerOptions = {}) {
    super();
    if (options === null || typeof options !== 'object') throw invalidArgument('options', 'an object', options);
    const { store, nodeId } = options;
    if (store !== undefined && (store === null || typeof store !== 'object' || typeof store.createJob !== 'function')) {
      throw invalidArgument('store', 'a JobStore', store);
    }
    if (nodeId !== undefined && (typeof nodeId !== 'string' || nodeId.length === 0 || nodeId.length > 255)) {
      throw invalidArgument('nodeId', 'a non-empty string of at most 255 characters', nodeId);
    }
    this.options = resolveOptions(options);
    this.store = store ?? new MemoryJobStore();
    this.nodeId = nodeId ?? newUuid();
    const manager = this;
    this.core = {
      store: this.store,
      nodeId: this.nodeId,
      options: this.options,
      kinds: this.kinds,
      executions: this.executions,
      get incarnation() {
        return manager.liveness.incarnation;
      },
      get live() {
        return manager.status === 'running' || manager.status === 'stopping';
      },
      emitEvent: (event, ...args) => this.emitSafe(event, ...args),
      serial: (uuid, fn) => this.serial(uuid, fn),
      published: (job, previous) => this.published(job, previous),
      reportError: (error, context, code) => this.reportError(error, context, code),
      track: (work) => this.track(work),
      busy: this.busy,
      unwritten: this.unwritten,
    };
    this.liveness = new Liveness(this.core, (uuid) => this.wake(uuid));
  }

  /** Whether `start()` has completed and `stop()` has not begun. */
  get running(): boolean {
    return this.status === 'running';
  }

  /** The current incarnation (a new one for every `start()`), or undefined. */
  get incarnation(): string | undefined {
    return this.liveness.incarnation;
  }

  /**
   * Registers a job kind (J3): code (`start`, and optionally `cancel`, `resume`, `clean`,
   * `validate`) or a durable chain (`chain`). A node runs and claims only kinds it registered.
   */
  register<JobData = unknown, Result = unknown>(jobName: string, kind: JobKind<JobData, Result>): this;
  register<JobData = unknown, Data = unknown>(jobName: string, kind: ChainJobKind<JobData, Data>): this;
  register(jobName: string, kind: JobKind<unknown, unknown> | ChainJobKind<unknown, unknown>): this {
    const resolved = resolveKind(jobName, kind);
    if (this.kinds.has(jobName)) {
      throw new FlowChainError(
        FlowChainErrorCode.INVALID_ARGUMENT,
        `Job kind ${JSON.stringify(jobName)} is already registered on node ${this.nodeId}; register each jobName once.`,
        { details: { option: 'jobName', jobName } },
      );
    }
    this.kinds.set(jobName, resolved);
    return this;
  }

  /**
   * Starts the manager: registers a new incarnation of this node, reclaims its previous
   * incarnation's unfinished jobs and orphans (restart rules, J8), and begins heartbeats and
   * polling. Idempotent.
   */
  async start(): Promise<void> {
    if (this.status === 'running') return;
    if (this.status === 'stopping' && this.transition !== undefined) {
      // Let the stop finish, then start again.
      await this.transition.catch(() => undefined);
      return this.start();
    }
    if (this.transition !== undefined) return this.transition;
    this.status = 'starting';
    this.transition = (async () => {
      try {
        await this.liveness.begin();
        this.status = 'running';
        await this.liveness.recover('restart');
      } catch (error) {
        this.status = 'idle';
        await this.liveness.end();
        throw error;
      } finally {
        this.transition = undefined;
      }
    })();
    return this.transition;
  }

  /**
   * Stops taking work (J9) and either waits for running jobs (`drain`) or suspends them so
   * another node or a restart resumes them (`suspend`). Idempotent.
   */
  async stop(options: StopOptions = {}): Promise<void> {
    if (options === null || typeof options !== 'object') throw invalidArgument('options', 'an object', options);
    const mode = options.mode ?? 'drain';
    if (mode !== 'drain' && mode !== 'suspend') throw invalidArgument('mode', '"drain" or "suspend"', mode);
    if (options.timeoutMs !== undefined && !(Number.isFinite(options.timeoutMs) && options.timeoutMs >= 0)) {
      throw invalidArgument('timeoutMs', 'a finite number of milliseconds from 0', options.timeoutMs);
    }
    if (this.transition !== undefined) await this.transition.catch(() => undefined);
    if (this.status !== 'running') return;
    this.status = 'stopping';
    this.transition = (async () => {
      try {
        await this.liveness.stopClaiming();
        // Operations already past their checks (a submit, a recovery) finish first, so that
        // the jobs they start are drained or suspended like the others.
        while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
        if (mode === 'suspend') this.liveness.suspendAll();
        await this.liveness.settle(options.timeoutMs);
        await this.liveness.end();
      } finally {
        this.status = 'stopped';
        this.transition = undefined;
      }
    })();
    return this.transition;
  }

  /**
   * Submits a job (J4): validates the jobName, the jobData (JSON-serialisable, within the
   * size limit) and the kind's `validate` before anything is stored, then stores the job as
   * Running and starts it in the background. Resolves with the record at once.
   */
  async submit<JobData = unknown>(request: SubmitRequest<JobData>): Promise<LongJob> {
    this.assertRunning('submit');
    if (request === null || typeof request !== 'object') throw invalidArgument('request', 'an object', request);
    const kind = requireKind(this.core, checkJobName(request.jobName));
    const uuid = request.uuid ?? newUuid();
    if (!isUuid(uuid)) throw invalidArgument('uuid', 'a uuid of 32 lowercase hex characters', request.uuid);
    const apiId = request.apiId ?? newUuid();
    if (!isUuid(apiId)) throw invalidArgument('apiId', 'a uuid of 32 lowercase hex characters', request.apiId);
    const name = request.name ?? request.jobName;
    checkName(name);
    const description = request.description ?? null;
    checkDescription(description);
    const target = request.targetResourceUuid ?? null;
    if (target !== null && (typeof target !== 'string' || target.length === 0 || target.length > 255)) {
      throw invalidArgument('targetResourceUuid', 'a non-empty string of at most 255 characters, or null', target);
    }
    const jobData = 'jobData' in request && request.jobData !== undefined ? request.jobData : {};
    const jobDataText = toJsonText(jobData, 'jobData', this.options.maxJobDataBytes);
    await validateJobData(kind, JSON.parse(jobDataText) as unknown);
    // Checked again after the awaits above: a stop() may have begun meanwhile.
    this.assertRunning('submit');
    const incarnation = this.liveness.incarnation;
    const now = nowIso();
    const stored: StoredJob = {
      uuid,
      name,
      description,
      jobName: request.jobName,
      jobData: jobDataText,
      jobResult: null,
      managementNodeUuid: this.nodeId,
      apiId,
      targetResourceUuid: target,
      // ZStack stores Waiting and moves to Running at once; one write does both here.
      state: 'Running',
      createDate: now,
      lastOpDate: now,
      executeTime: null,
      version: 1,
      incarnation: incarnation as string,
      epoch: 1,
      takeovers: 0,
    };
    return this.track(this.create(stored, kind));
  }

  private async create(stored: StoredJob, kind: ResolvedKind): Promise<LongJob> {
    let created: StoredJob;
    try {
      created = await this.store.createJob(stored);
    } catch (error) {
      // A commit can succeed and still be reported as failed: look before giving up, so that
      // a job that exists is run, never left Running with nobody running it.
      const found = isFlowChainError(error, FlowChainErrorCode.STORE_FAILURE)
        ? await this.store.getJob(stored.uuid).catch(() => undefined)
        : undefined;
      const ours =
        found !== undefined &&
        found.apiId === stored.apiId &&
        found.incarnation === stored.incarnation &&
        found.epoch === stored.epoch &&
        found.createDate === stored.createDate;
      if (!ours) throw error;
      created = found;
    }
    this.published(created, 'Waiting');
    startExecution(this.core, created, kind, 'start');
    return toLongJob(created);
  }

  /**
   * Cancels a job (J4): a Waiting job becomes Canceled; a Running or Suspended one becomes
   * Canceling, its kind's `cancel` is called and its signal aborts on the node running it.
   * A job that then fails ends Canceled; one that completes anyway ends Succeeded.
   */
  cancel(uuid: string): Promise<LongJob> {
    return cancelJob(this.core, checkUuid(uuid));
  }

  /** Deletes a finished job, its progress and its checkpoint. */
  delete(uuid: string): Promise<void> {
    return deleteJob(this.core, checkUuid(uuid));
  }

  /** Runs a finished job again from scratch on this node, under a new apiId. */
  rerun(uuid: string, options: { apiId?: string } = {}): Promise<LongJob> {
    this.assertRunning('rerun');
    if (options.apiId !== undefined && !isUuid(options.apiId)) {
      throw invalidArgument('apiId', 'a uuid of 32 lowercase hex characters', options.apiId);
    }
    return this.track(rerunJob(this.core, checkUuid(uuid), options.apiId, validateJobData));
  }

  /** Resumes a Suspended job on this node (kinds with `resume`). */
  resume(uuid: string): Promise<LongJob> {
    this.assertRunning('resume');
    return this.track(resumeJob(this.core, checkUuid(uuid)));
  }

  /** Changes a job's name or description, in any state. */
  update(uuid: string, changes: { name?: string; description?: string | null }): Promise<LongJob> {
    return updateJob(this.core, checkUuid(uuid), changes);
  }

  /** Cleans a Canceling job (kinds with `clean`); it then ends Canceled. */
  clean(uuid: string): Promise<LongJob> {
    this.assertRunning('clean');
    return this.track(cleanJob(this.core, checkUuid(uuid)));
  }

  /** The job's record; `JOB_NOT_FOUND` if there is none, `CORRUPT_RECORD` if it is unreadable. */
  async get(uuid: string): Promise<LongJob> {
    return toLongJob(await mustRead(this.core, checkUuid(uuid)));
  }

  /** Jobs matching a query. A corrupt record is left out and reported as `manager:error`. */
  async query(query: JobQuery = {}): Promise<LongJob[]> {
    const rows = await this.store.queryJobs(normalizeQuery(checkJobQuery(query)));
    const jobs: LongJob[] = [];
    for (const row of rows) {
      try {
        jobs.push(toLongJob(checkStoredJob(row)));
      } catch (error) {
        this.reportError(error, 'query');
      }
    }
    return jobs;
  }

  /** How many jobs match; with `groupBy`, how many per value of that field. */
  count(query?: JobQuery): Promise<number>;
  count(query: JobQuery, options: { groupBy: Parameters<JobStore['countJobsBy']>[1] }): Promise<JobCount[]>;
  async count(
    query: JobQuery = {},
    options?: { groupBy: Parameters<JobStore['countJobsBy']>[1] },
  ): Promise<number | JobCount[]> {
    const q = normalizeQuery(checkJobQuery(query));
    if (options === undefined) return this.store.countJobs(q);
    return this.store.countJobsBy(q, checkGroupField(options.groupBy));
  }

  /** Progress reported under `apiId` (J6): the latest entry, or all of them oldest first. */
  getProgress(apiId: string): Promise<ProgressEntry | undefined>;
  getProgress(apiId: string, options: { all: true }): Promise<ProgressEntry[]>;
  getProgress(apiId: string, options: { all: false }): Promise<ProgressEntry | undefined>;
  async getProgress(apiId: string, options: { all?: boolean } = {}): Promise<ProgressEntry | ProgressEntry[] | undefined> {
    if (!isUuid(apiId)) throw invalidArgument('apiId', 'a uuid of 32 lowercase hex characters', apiId);
    const entries = await this.store.listProgress(apiId);
    return options.all === true ? entries : entries.at(-1);
  }

  /**
   * Resolves with the job once it reaches a final state, wherever it runs: woken by this
   * node's writes and the store's change notifications, and re-reading every `pollIntervalMs`.
   */
  waitFor(uuid: string, options: WaitForOptions = {}): Promise<LongJob> {
    checkUuid(uuid);
    if (options.timeoutMs !== undefined && !(Number.isFinite(options.timeoutMs) && options.timeoutMs >= 0)) {
      throw invalidArgument('timeoutMs', 'a finite number of milliseconds from 0', options.timeoutMs);
    }
    return new Promise<LongJob>((resolve, reject) => {
      let finished = false;
      let reading = false;
      let again = false;
      const cleanups: (() => void)[] = [];
      const finish = (error: unknown, job?: LongJob): void => {
        if (finished) return;
        finished = true;
        for (const cleanup of cleanups) cleanup();
        if (job !== undefined) resolve(job);
        else reject(error);
      };
      const check = async (): Promise<void> => {
        if (finished) return;
        if (reading) {
          again = true;
          return;
        }
        reading = true;
        try {
          do {
            again = false;
            const job = await mustRead(this.core, uuid);
            if (isFinalState(job.state)) finish(undefined, toLongJob(job));
          } while (again && !finished);
        } catch (error) {
          if (!isFlowChainError(error, FlowChainErrorCode.STORE_FAILURE)) finish(error);
        } finally {
          reading = false;
        }
      };
      const wake = (job?: StoredJob): void => {
        // A write made here hands over the record: no need to read it back.
        if (job !== undefined && isFinalState(job.state)) finish(undefined, toLongJob(job));
        else void check();
      };
      let set = this.waiters.get(uuid);
      if (set === undefined) this.waiters.set(uuid, (set = new Set()));
      set.add(wake);
      cleanups.push(() => {
        set.delete(wake);
        if (set.size === 0 && this.waiters.get(uuid) === set) this.waiters.delete(uuid);
      });
      // A running manager already follows the store's notifications and wakes waiters by
      // uuid; a waiter on a manager that is not running follows them itself.
      if (this.status !== 'running' && this.status !== 'stopping') {
        const unsubscribe = this.store.subscribe?.((change) => {
          if (change.uuid === uuid) wake();
        });
        if (unsubscribe !== undefined) cleanups.push(unsubscribe);
      }
      const poll = setInterval(() => wake(), this.options.pollIntervalMs);
      cleanups.push(() => clearInterval(poll));
      if (options.timeoutMs !== undefined) {
        const ms = options.timeoutMs;
        const timer = setTimeout(
          () =>
            finish(
              new FlowChainError(
                FlowChainErrorCode.WAIT_TIMEOUT,
                `Job ${uuid} did not reach a final state within ${ms} ms; it goes on regardless.`,
                { details: { uuid, timeoutMs: ms } },
              ),
            ),
          ms,
        );
        cleanups.push(() => clearTimeout(timer));
      }
      const signal = options.signal;
      if (signal !== undefined) {
        if (signal.aborted) {
          finish(signal.reason);
          return;
        }
        const onAbort = (): void => finish(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        cleanups.push(() => signal.removeEventListener('abort', onAbort));
      }
      wake();
    });
  }

  // ---- internals --------------------------------------------------------------------

  private serial<Result>(uuid: string, fn: () => Promise<Result>): Promise<Result> {
    const previous = this.queues.get(uuid);
    const run = previous === undefined ? fn() : previous.then(fn, fn);
    const tail = run.then(noop, noop);
    this.queues.set(uuid, tail);
    void tail.then(() => {
      if (this.queues.get(uuid) === tail) this.queues.delete(uuid);
    });
    return run;
  }

  private published(job: StoredJob, previous: LongJobState | null): void {
    if (previous !== job.state) this.emitSafe('job:state', toLongJob(job), previous);
    this.wake(job.uuid, job);
  }

  private wake(uuid: string, job?: StoredJob): void {
    const set = this.waiters.get(uuid);
    if (set !== undefined) for (const wake of [...set]) wake(job);
  }

  private reportError(error: unknown, context: string, code: FlowChainErrorCode = FlowChainErrorCode.STORE_FAILURE): void {
    const reported = isFlowChainError(error)
      ? error
      : new FlowChainError(code, `${context}: ${describeThrown(error)}`, { cause: error });
    this.emitSafe('manager:error', reported);
  }

  private track<Result>(work: Promise<Result>): Promise<Result> {
    this.inflight.add(work);
    void work.then(
      () => this.inflight.delete(work),
      () => this.inflight.delete(work),
    );
    return work;
  }

  private emitSafe<Event extends keyof JobManagerEvents>(event: Event, ...args: JobManagerEvents[Event]): void {
    if ((this as unknown as { _eventsCount: number })._eventsCount === 0) return;
    try {
      (this.emit as (event: string, ...args: unknown[]) => boolean)(event, ...args);
    } catch (error) {
      process.emitWarning(`A listener for ${JSON.stringify(event)} on job manager ${this.nodeId} threw: ${describeThrown(error)}`, {
        code: 'FLOWCHAIN_LISTENER_ERROR',
      });
    }
  }

  private assertRunning(operation: string): void {
    if (this.status !== 'running' || this.liveness.incarnation === undefined) {
      throw new FlowChainError(
        FlowChainErrorCode.MANAGER_NOT_RUNNING,
        `Cannot ${operation}: job manager ${this.nodeId} is ${
          this.status === 'running' ? 'fenced off until it renews its lease' : this.status
        }. Call start() first${this.status === 'stopped' || this.status === 'stopping' ? ' (it was stopped)' : ''}.`,
        { details: { operation, status: this.status } },
      );
    }
  }
}

async function validateJobData(kind: ResolvedKind, jobData: unknown): Promise<void> {
  if (kind.validate === undefined) return;
  try {
    await kind.validate(jobData);
  } catch (error) {
    if (isFlowChainError(error, FlowChainErrorCode.INVALID_ARGUMENT)) throw error;
    throw new FlowChainError(
      FlowChainErrorCode.INVALID_ARGUMENT,
      `Job kind ${JSON.stringify(kind.jobName)} rejected the jobData: ${describeThrown(error)}`,
      { cause: error, details: { option: 'jobData', jobName: kind.jobName } },
    );
  }
}

function checkJobName(jobName: unknown): string {
  if (typeof jobName !== 'string' || jobName.length === 0) {
    throw invalidArgument('jobName', 'the name of a registered job kind', jobName);
  }
  return jobName;
}

function checkUuid(uuid: unknown): string {
  if (!isUuid(uuid)) throw invalidArgument('uuid', 'a job uuid of 32 lowercase hex characters', uuid);
  return uuid;
}

function normalizeQuery(query: JobQuery): JobQuery {
  // Dates are compared as instants: normalise the bounds to the stored ISO form.
  const out: JobQuery = { ...query };
  for (const field of ['createDate', 'lastOpDate'] as const) {
    const range = query[field];
    if (range === undefined) continue;
    const normalized: { from?: string; to?: string } = {};
    if (range.from !== undefined) normalized.from = new Date(range.from).toISOString();
    if (range.to !== undefined) normalized.to = new Date(range.to).toISOString();
    out[field] = normalized;
  }
  return out;
}

function resolveOptions(options: JobManagerOptions): ResolvedJobManagerOptions {
  const number = (name: keyof JobManagerOptions, fallback: number, min: number): number => {
    const value = options[name];
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 2_147_483_647) {
      throw invalidArgument(name, `an integer from ${min} to 2147483647`, value);
    }
    return value;
  };
  const heartbeatIntervalMs = number('heartbeatIntervalMs', 5_000, 1);
  const leaseTtlMs = number('leaseTtlMs', 30_000, 1);
  if (leaseTtlMs < 3 * heartbeatIntervalMs) {
    throw invalidArgument('leaseTtlMs', `at least 3 × heartbeatIntervalMs (${3 * heartbeatIntervalMs})`, leaseTtlMs);
  }
  return {
    heartbeatIntervalMs,
    leaseTtlMs,
    pollIntervalMs: number('pollIntervalMs', 1_000, 1),
    reapGraceMs: number('reapGraceMs', 0, 0),
    deadNodeRetentionMs: number('deadNodeRetentionMs', 86_400_000, 0),
    maxJobDataBytes: number('maxJobDataBytes', 1_048_576, 1),
    maxTakeovers: number('maxTakeovers', 3, 0),
    claimBatchSize: number('claimBatchSize', 100, 1),
  };
}

function noop(): void {}
