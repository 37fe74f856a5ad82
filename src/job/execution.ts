import {
  FlowChainError,
  FlowChainErrorCode,
  describeThrown,
  invalidArgument,
  isFlowChainError,
  serializeError,
} from '../errors.js';
import type { FlowChain } from '../flow/chain.js';
import type { RunHooks, RunResume } from '../flow/run.js';
import { runDurable } from './durable.js';
import type { JobChanges, ProgressEntry, StoredJob } from '../store/contract.js';
import type { ManagerCore, UnwrittenResult } from './core.js';
import { toJsonText } from './json.js';
import type { JobContext, ResolvedKind } from './kind.js';
import { type LongJob, checkStoredJob, toLongJob } from './record.js';
import { type LongJobStateEvent, isFinalState, nextLongJobState } from './states.js';

/** The owner fence of a write: this incarnation at this epoch. @internal */
export interface Owner {
  incarnation: string;
  epoch: number;
}

/** One run of a job's code on this node. @internal */
export class Execution {
  readonly controller = new AbortController();
  /** The kind's cancel has been called (or is being called) for this run. */
  cancelDelivered = false;
  /** `stop({ mode: 'suspend' })` asked this run to stop: a failure now means Suspended. */
  suspendRequested = false;
  /** This node no longer owns the job (or someone else finished it): never write again. */
  abandoned = false;
  settled: Promise<void> = Promise.resolve();
  private ctx: Context | undefined = undefined;

  constructor(
    readonly uuid: string,
    readonly kind: ResolvedKind,
    readonly owner: Owner,
  ) {}

  abort(reason: unknown): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /** The context the job's code sees (one per run). */
  context(core: ManagerCore, job: StoredJob): Context {
    this.ctx ??= new Context(core, this, job);
    return this.ctx;
  }
}

/** How a run ended. @internal */
export type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** How many unwritten results a node keeps at most (the oldest go first). */
const MAX_UNWRITTEN = 10_000;

/** Starts the job's code in the background. @internal */
export function startExecution(
  core: ManagerCore,
  job: StoredJob,
  kind: ResolvedKind,
  mode: 'start' | 'resume',
): Execution | undefined {
  // This node was fenced (or restarted its lease) since the job was taken: it is no longer
  // the incarnation that owns it, and whoever claims it next will run it.
  if (core.incarnation !== job.incarnation) return undefined;
  const owner = { incarnation: job.incarnation, epoch: job.epoch };
  const execution = new Execution(job.uuid, kind, owner);
  core.executions.set(job.uuid, execution);
  execution.settled = runExecution(core, execution, job, mode).finally(() => {
    if (core.executions.get(job.uuid) === execution) core.executions.delete(job.uuid);
  });
  return execution;
}

async function runExecution(core: ManagerCore, execution: Execution, job: StoredJob, mode: 'start' | 'resume'): Promise<void> {
  let outcome: Outcome;
  try {
    const context = execution.context(core, job);
    const { kind, chainKind } = execution.kind;
    let value: unknown;
    if (chainKind !== undefined) {
      value = await runDurable(core, execution, job, context);
    } else if (kind !== undefined) {
      const body = mode === 'resume' && kind.resume !== undefined ? kind.resume : kind.start;
      value = await body.call(kind, context.job, context);
    }
    outcome = { ok: true, value };
  } catch (error) {
    outcome = { ok: false, error };
  }
  // A success is kept until it is written: if the node loses the job first (a store outage
  // outlasting its lease), the job may come back to this node, which then writes it (see
  // recovery.ts). A failure is not kept: it may only be the run's answer to its abort, and
  // the restart rules handle the job.
  const kept = outcome.ok ? keepUnwritten(core, execution, outcome.value) : undefined;
  const written = execution.abandoned ? undefined : await finishJob(core, execution.uuid, execution, outcome);
  // Written, or nothing to write: drop it, unless a recovery took it already.
  if (kept !== undefined && (written !== undefined || !execution.abandoned) && core.unwritten.get(execution.uuid) === kept) {
    core.unwritten.delete(execution.uuid);
  }
}

function keepUnwritten(core: ManagerCore, execution: Execution, value: unknown): UnwrittenResult {
  const kept = { epoch: execution.owner.epoch, value };
  core.unwritten.delete(execution.uuid);
  core.unwritten.set(execution.uuid, kept);
  if (core.unwritten.size > MAX_UNWRITTEN) core.unwritten.delete(core.unwritten.keys().next().value as string);
  return kept;
}

/**
 * Records a run's outcome (J5), retrying through conflicts and store failures; for a run,
 * or for a result kept from a run this node could not write for (recovery.ts). Returns the
 * written record, or undefined when nothing was written.
 * @internal
 */
export async function finishJob(
  core: ManagerCore,
  uuid: string,
  execution: Execution | Owner,
  outcome: Outcome,
): Promise<StoredJob | undefined> {
  // Read at each write attempt: a stop({ mode: 'suspend' }) may come during the retries.
  const stopping = {
    get suspendRequested(): boolean {
      return execution instanceof Execution && execution.suspendRequested;
    },
  };
  let resultText: string | undefined;
  if (outcome.ok) {
    try {
      resultText = outcome.value === undefined ? 'Succeeded' : toJsonText(outcome.value, 'result');
    } catch (error) {
      outcome = {
        ok: false,
        error: new FlowChainError(
          FlowChainErrorCode.INVALID_ARGUMENT,
          `Job ${uuid} completed with a result that cannot be stored as JSON: ${describeThrown(error)}`,
          { cause: error },
        ),
      };
    }
  }
  let progressWritten = !outcome.ok;
  return writeOwned(core, execution, uuid, RETRY, async (job) => {
    const changes = completionChanges(job, outcome, resultText, stopping);
    if (!progressWritten && changes?.state === 'Succeeded') {
      // ZStack reports 100 before the job turns Succeeded (not when a cancel got there first).
      await appendProgress(core, job, 100, null);
      progressWritten = true;
      return completionChanges(job, outcome, resultText, stopping);
    }
    return changes;
  });
}

/** The write that records an outcome, following ZStack's completion rules. @internal */
export function completionChanges(
  job: StoredJob,
  outcome: Outcome,
  resultText: string | undefined,
  execution: { suspendRequested: boolean },
): JobChanges | undefined {
  let event: LongJobStateEvent;
  let jobResult = job.jobResult;
  if (outcome.ok) {
    event = 'succeed';
    jobResult ??= resultText ?? 'Succeeded';
  } else {
    const code = isFlowChainError(outcome.error) ? outcome.error.code : undefined;
    // Interrupted (or asked to stop) runs are suspended, for another node to resume; but a
    // job being canceled ends its cancel. An incompatible durable chain waits, Suspended,
    // for an operator (new code, or cancel).
    // (Canceled while incompatible, it ends Canceled: its rollback cannot run with other flows.)
    const suspend =
      code === FlowChainErrorCode.JOB_INTERRUPTED ||
      (code === FlowChainErrorCode.INCOMPATIBLE_CHAIN && job.state !== 'Canceling') ||
      (execution.suspendRequested && job.state !== 'Canceling' && code !== FlowChainErrorCode.CHAIN_CANCELED);
    if (suspend) event = 'suspend';
    else if (code === FlowChainErrorCode.JOB_CANCELED) event = 'canceled';
    else event = 'fail';
    const canceling = job.state === 'Canceling' || job.state === 'Canceled';
    const error =
      canceling && code !== FlowChainErrorCode.JOB_CANCELED
        ? new FlowChainError(FlowChainErrorCode.JOB_CANCELED, `Job ${job.uuid} was canceled.`, { cause: outcome.error })
        : outcome.error;
    jobResult ??= JSON.stringify(serializeError(error));
  }
  if (isFinalState(job.state)) return undefined;
  const state = nextLongJobState(job.state, event, job.uuid);
  const changes: JobChanges = { state, jobResult, lastOpDate: nowIso() };
  if (isFinalState(state)) {
    Object.assign(changes, finalChanges(job));
  } else if (state === 'Suspended' && execution.suspendRequested) {
    // Stopped on purpose: leave the job to whichever node claims it next.
    changes.incarnation = null;
    changes.managementNodeUuid = null;
  }
  return changes;
}

/** What every write into a final state also sets. @internal */
export function finalChanges(job: StoredJob): JobChanges {
  return {
    incarnation: null,
    executeTime: job.executeTime ?? Math.max(1, Math.round((Date.now() - Date.parse(job.createDate)) / 1000)),
  };
}

/**
 * Reads the job, lets `decide` compute a write, and writes it fenced by `owner`. Retries on
 * version conflicts at once and on store failures with backoff while the manager is live.
 * Returns the written record, or undefined when nothing was written (decided so, the job
 * is gone, or this node lost it).
 * @internal
 */
export async function writeOwned(
  core: ManagerCore,
  execution: Execution | Owner,
  uuid: string,
  options: { retry: boolean; rethrow?: boolean },
  decide: (job: StoredJob) => JobChanges | undefined | Promise<JobChanges | undefined>,
): Promise<StoredJob | undefined> {
  const owner = execution instanceof Execution ? execution.owner : execution;
  for (let attempt = 0; ; attempt++) {
    if (execution instanceof Execution && execution.abandoned) return undefined;
    try {
      return await core.serial(uuid, async () => {
        const job = await readJob(core, uuid);
        if (job === undefined) return undefined;
        if (job.incarnation !== owner.incarnation || job.epoch !== owner.epoch) {
          throw new FlowChainError(FlowChainErrorCode.OWNERSHIP_LOST, `This node no longer owns job ${uuid}.`, {
            details: { uuid },
          });
        }
        const changes = await decide(job);
        if (changes === undefined) return undefined;
        const updated = await core.store.updateJob(uuid, { version: job.version, owner }, changes);
        core.published(updated, job.state);
        return updated;
      });
    } catch (error) {
      if (isFlowChainError(error, FlowChainErrorCode.STORE_CONFLICT)) continue;
      if (isFlowChainError(error, FlowChainErrorCode.OWNERSHIP_LOST)) {
        if (execution instanceof Execution) {
          execution.abandoned = true;
          execution.abort(error);
        }
        if (options.rethrow) throw error;
        return undefined;
      }
      // A store failure, or anything that is not one of our errors (a driver's own), is an
      // outage: retry while the manager runs. Our other errors are refusals: give up.
      const outage = !isFlowChainError(error) || error.code === FlowChainErrorCode.STORE_FAILURE;
      if (!outage || !core.live || !options.retry) {
        core.reportError(error, `writing job ${uuid}`);
        if (options.rethrow) throw error;
        return undefined;
      }
      core.reportError(error, `writing job ${uuid} (retrying)`);
      await sleep(Math.min(5_000, 50 * 2 ** Math.min(attempt, 7)));
    }
  }
}

/** Reads and validates a job (S4: a corrupt record is CORRUPT_RECORD). @internal */
export async function readJob(core: ManagerCore, uuid: string): Promise<StoredJob | undefined> {
  const raw = await core.store.getJob(uuid);
  return raw === undefined ? undefined : checkStoredJob(raw);
}

/** Appends a progress report and publishes it. @internal */
export async function appendProgress(core: ManagerCore, job: LongJob, percent: number, detail: string | null): Promise<void> {
  const entry: ProgressEntry = { apiId: job.apiId, jobUuid: job.uuid, percent, detail, time: nowIso() };
  await core.store.appendProgress(entry);
  core.emitEvent('job:progress', entry);
}

/** The context a job's code sees. @internal */
export class Context implements JobContext<unknown> {
  readonly job: LongJob;
  readonly jobData: unknown;
  readonly nodeId: string;
  private progressQueue: Promise<void> = Promise.resolve();

  constructor(
    private readonly core: ManagerCore,
    private readonly execution: Execution,
    stored: StoredJob,
  ) {
    this.job = toLongJob(stored);
    this.jobData = JSON.parse(stored.jobData) as unknown;
    this.nodeId = core.nodeId;
  }

  get signal(): AbortSignal {
    return this.execution.controller.signal;
  }

  async progress(percent: number, detail?: unknown): Promise<void> {
    if (typeof percent !== 'number' || !Number.isFinite(percent) || percent < 0 || percent > 100) {
      throw invalidArgument('percent', 'a number from 0 to 100', percent);
    }
    const detailText = detail === undefined ? null : toJsonText(detail, 'detail');
    this.assertOwned('progress');
    await appendProgress(this.core, this.job, percent, detailText);
  }

  /** A run this node no longer owns (fenced off, taken over) writes nothing, progress included. */
  private assertOwned(what: string): void {
    if (!this.execution.abandoned) return;
    throw new FlowChainError(
      FlowChainErrorCode.OWNERSHIP_LOST,
      `Job ${this.job.uuid} is no longer owned by node ${this.nodeId} (the node fenced itself off, or another node took the job over); its ${what} was not written.`,
      { details: { uuid: this.job.uuid, nodeId: this.nodeId } },
    );
  }

  async setResult(value: unknown): Promise<void> {
    const text = toJsonText(value, 'result');
    await writeOwned(this.core, this.execution, this.job.uuid, RETRY, (job) =>
      job.jobResult === null ? { jobResult: text, lastOpDate: nowIso() } : undefined,
    );
  }

  /**
   * Runs a chain as the job's body. Plain (no hooks): the job's signal cancels the chain.
   * Durable (hooks): a cancel still cancels (the chain rolls back), but an interruption
   * (stop with suspend, a lost lease) halts it where it stands, without rollback, so that
   * whichever node takes the job over resumes it from its checkpoint.
   */
  async runChain<Data>(chain: FlowChain<Data>, hooks?: RunHooks, resume?: RunResume): Promise<Data> {
    let completed = 0;
    let reported = -1;
    const onStep = (): void => {
      completed++;
      const total = Math.max(1, chain.flows.length);
      // 100 is written when the job succeeds, not when the last flow does.
      const percent = Math.min(99, Math.floor((100 * completed) / total));
      if (percent <= reported || this.execution.abandoned) return;
      reported = percent;
      this.progressQueue = this.progressQueue
        .then(() => appendProgress(this.core, this.job, percent, null))
        .catch((error: unknown) => this.core.reportError(error, `reporting progress of job ${this.job.uuid}`));
    };
    chain.on('flow:done', onStep);
    chain.on('flow:skip', onStep);
    try {
      if (hooks === undefined) return await chain.start({ signal: this.signal });
      return await runLinked(chain, this.signal, hooks, resume);
    } finally {
      chain.off('flow:done', onStep);
      chain.off('flow:skip', onStep);
      await this.progressQueue;
    }
  }
}

const RETRY = { retry: true };

function runLinked<Data>(chain: FlowChain<Data>, signal: AbortSignal, hooks: RunHooks, resume: RunResume | undefined): Promise<Data> {
  const act = (): void => {
    const reason: unknown = signal.reason;
    if (isFlowChainError(reason, FlowChainErrorCode.JOB_CANCELED)) chain.cancel(reason);
    else chain.halt(reason);
  };
  if (signal.aborted && !isFlowChainError(signal.reason, FlowChainErrorCode.JOB_CANCELED)) {
    return Promise.reject(signal.reason as Error);
  }
  if (signal.aborted) chain.cancel(signal.reason);
  const promise = chain.launch({}, hooks, resume);
  if (!signal.aborted) {
    signal.addEventListener('abort', act, { once: true });
    void promise.then(
      () => signal.removeEventListener('abort', act),
      () => signal.removeEventListener('abort', act),
    );
  }
  return promise;
}

/** Now as an ISO-8601 string. @internal */
export function nowIso(): string {
  return new Date().toISOString();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs a kind's `clean` for a job this node owns (after a cancel, or for an interrupted job
 * that cannot resume). A failing clean is reported and does not stop the job from ending,
 * as ZStack's clean takes a NoErrorCompletion.
 * @internal
 */
export async function runClean(core: ManagerCore, job: StoredJob, kind: ResolvedKind, owner: Owner): Promise<void> {
  if (kind.clean === undefined) return;
  const execution = new Execution(job.uuid, kind, owner);
  try {
    await kind.clean(toLongJob(job), execution.context(core, job));
  } catch (error) {
    core.reportError(error, `cleaning job ${job.uuid}`, FlowChainErrorCode.HANDLER_FAILED);
  }
}
