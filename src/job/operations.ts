import { FlowChainError, FlowChainErrorCode, describeThrown, invalidArgument, isFlowChainError, serializeError } from '../errors.js';
import type { JobChanges, StoredJob } from '../store/contract.js';
import type { ManagerCore } from './core.js';
import { rerunCheckpoint } from './durable.js';
import { Execution, finalChanges, nowIso, readJob, runClean, startExecution } from './execution.js';
import type { ResolvedKind } from './kind.js';
import { type LongJob, newUuid, toLongJob } from './record.js';
import { endJob, recoverCanceling } from './recovery.js';
import { isFinalState, nextLongJobState } from './states.js';

/*
 * The per-job operations of J4, with ZStack's preconditions (zstack.md §2.4). Every write
 * is a compare-and-set on `version` inside the job's serial queue (J7); a lost race is
 * re-read and re-decided, so the preconditions are checked against the latest state.
 */

/** Reads a job or fails with JOB_NOT_FOUND. @internal */
export async function mustRead(core: ManagerCore, uuid: string): Promise<StoredJob> {
  const job = await readJob(core, uuid);
  if (job === undefined) {
    throw new FlowChainError(FlowChainErrorCode.JOB_NOT_FOUND, `No job has uuid ${uuid}.`, { details: { uuid } });
  }
  return job;
}

/** Reads, decides and writes with compare-and-set, re-deciding after a lost race. @internal */
export async function writeShared(
  core: ManagerCore,
  uuid: string,
  decide: (job: StoredJob) => JobChanges | undefined | Promise<JobChanges | undefined>,
): Promise<{ job: StoredJob; previous: StoredJob }> {
  return core.serial(uuid, async () => {
    for (;;) {
      const job = await mustRead(core, uuid);
      const changes = await decide(job);
      if (changes === undefined) return { job, previous: job };
      try {
        const updated = await core.store.updateJob(uuid, { version: job.version }, changes);
        core.published(updated, job.state);
        return { job: updated, previous: job };
      } catch (error) {
        if (!isFlowChainError(error, FlowChainErrorCode.STORE_CONFLICT)) throw error;
      }
    }
  });
}

/**
 * Cancel (J4, zstack.md §2.6): Waiting → Canceled at once; Running/Suspended → Canceling,
 * then the node that owns the job calls the kind's `cancel` and aborts the job's signal.
 * Succeeded/Failed refuse; Canceled is idempotent.
 * @internal
 */
export async function cancelJob(core: ManagerCore, uuid: string): Promise<LongJob> {
  const { job } = await writeShared(core, uuid, (current) => {
    if (current.state === 'Succeeded' || current.state === 'Failed') {
      throw new FlowChainError(
        FlowChainErrorCode.INVALID_TRANSITION,
        `Job ${uuid} has already ${current.state === 'Succeeded' ? 'succeeded' : 'failed'}; only unfinished jobs can be canceled.`,
        { details: { uuid, state: current.state, operation: 'cancel' } },
      );
    }
    if (current.state === 'Canceled' || current.state === 'Canceling') return undefined;
    const kind = core.kinds.get(current.jobName);
    if (kind !== undefined && !kind.supportsCancel) throw notSupported(uuid, current.jobName, 'cancel');
    const state = nextLongJobState(current.state, 'canceling', uuid);
    const changes: JobChanges = { state, lastOpDate: nowIso() };
    // A suspended job's result is why it was suspended; the cancel writes its own.
    if (current.state === 'Suspended') changes.jobResult = null;
    if (isFinalState(state)) {
      Object.assign(changes, finalChanges(current), {
        jobResult: current.jobResult ?? JSON.stringify(serializeError(canceledError(uuid))),
      });
    }
    return changes;
  });
  if (job.state === 'Canceling' && job.incarnation !== null && job.incarnation === core.incarnation) {
    await deliverCancel(core, job);
    const latest = await readJob(core, uuid);
    if (latest !== undefined) return toLongJob(latest);
  }
  return toLongJob(job);
}

/**
 * Acts on a Canceling job this node owns. Running here: ask the kind's `cancel`, abort the
 * signal; `true` ends it Canceled now, `false` lets the running code roll back and end it.
 * Not running: `cancel`, then `clean` unless cancel said it is clean, then Canceled.
 * @internal
 */
export async function deliverCancel(core: ManagerCore, job: StoredJob): Promise<void> {
  const kind = core.kinds.get(job.jobName);
  // One delivery per job at a time: the direct one (cancel() on this node) and the one the
  // store's notification triggers must not both run the kind's cancel and clean.
  if (kind === undefined || core.busy.has(job.uuid)) return;
  core.busy.add(job.uuid);
  try {
    await deliver(core, job, kind);
  } finally {
    core.busy.delete(job.uuid);
  }
}

async function deliver(core: ManagerCore, job: StoredJob, kind: ResolvedKind): Promise<void> {
  const owner = { incarnation: job.incarnation as string, epoch: job.epoch };
  const execution = core.executions.get(job.uuid);
  if (execution !== undefined) {
    if (execution.cancelDelivered) return;
    execution.cancelDelivered = true;
    // The signal first: a kind's cancel that hangs must not keep the job from stopping.
    execution.abort(canceledError(job.uuid));
    let cleanedUp = false;
    let failure: unknown;
    try {
      cleanedUp = (await kind.kind?.cancel?.(toLongJob(job), execution.context(core, job))) === true;
    } catch (error) {
      failure = error;
    }
    if (cleanedUp) {
      await endJob(core, owner, job.uuid, 'canceled', canceledError(job.uuid));
      execution.abandoned = true;
    }
    if (failure !== undefined) {
      throw new FlowChainError(
        FlowChainErrorCode.CANCEL_FAILED,
        `The cancel of job ${job.uuid} failed: ${describeThrown(failure)}. The job stays Canceling; if it completes anyway it ends Succeeded.`,
        { cause: failure, details: { uuid: job.uuid } },
      );
    }
    return;
  }
  if (kind.chainKind !== undefined) {
    // Nothing runs it here: a durable chain finishes its cancel by rolling back from its checkpoint.
    await recoverCanceling(core, job, kind, owner);
    return;
  }
  let cleanedUp = false;
  const idle = new Execution(job.uuid, kind, owner);
  try {
    cleanedUp = (await kind.kind?.cancel?.(toLongJob(job), idle.context(core, job))) === true;
  } catch (error) {
    core.reportError(error, `canceling job ${job.uuid}`, FlowChainErrorCode.HANDLER_FAILED);
  }
  if (!cleanedUp) await runClean(core, job, kind, owner);
  await endJob(core, owner, job.uuid, 'canceled', canceledError(job.uuid));
}

/** Delete: only finished jobs (Succeeded, Failed, Canceled). @internal */
export async function deleteJob(core: ManagerCore, uuid: string): Promise<void> {
  await core.serial(uuid, async () => {
    for (;;) {
      const job = await mustRead(core, uuid);
      if (!isFinalState(job.state)) {
        throw new FlowChainError(
          FlowChainErrorCode.INVALID_TRANSITION,
          `Job ${uuid} is ${job.state}; only Succeeded, Failed or Canceled jobs can be deleted. Cancel it first.`,
          { details: { uuid, state: job.state, operation: 'delete' } },
        );
      }
      try {
        await core.store.deleteJob(uuid, { version: job.version });
        return;
      } catch (error) {
        if (!isFlowChainError(error, FlowChainErrorCode.STORE_CONFLICT)) throw error;
      }
    }
  });
}

/**
 * Rerun: a finished job starts again from scratch with the same uuid and jobData, a new
 * apiId, this node as owner, and its result, dates and checkpoint reset (zstack.md §2.7).
 * @internal
 */
export async function rerunJob(
  core: ManagerCore,
  uuid: string,
  apiId: string | undefined,
  validate: (kind: ResolvedKind, jobData: unknown) => Promise<void>,
): Promise<LongJob> {
  const incarnation = requireIncarnation(core);
  const { job } = await writeShared(core, uuid, async (current) => {
    if (!isFinalState(current.state)) {
      throw new FlowChainError(
        FlowChainErrorCode.INVALID_TRANSITION,
        `Job ${uuid} is ${current.state}; only Succeeded, Failed or Canceled jobs can be rerun.`,
        { details: { uuid, state: current.state, operation: 'rerun' } },
      );
    }
    const kind = requireKind(core, current.jobName);
    await validate(kind, JSON.parse(current.jobData) as unknown);
    // A durable chain starts over with the next attempt number (its idempotency keys change).
    const checkpoint =
      kind.chainKind === undefined ? null : rerunCheckpoint(await core.store.getCheckpoint(uuid), uuid);
    const now = nowIso();
    return {
      state: 'Running',
      apiId: apiId ?? newUuid(),
      managementNodeUuid: core.nodeId,
      incarnation,
      epoch: current.epoch + 1,
      takeovers: 0,
      createDate: now,
      lastOpDate: now,
      executeTime: null,
      jobResult: null,
      checkpoint,
    };
  });
  startExecution(core, job, requireKind(core, job.jobName), 'start');
  return toLongJob(job);
}

/** Resume: only Suspended jobs of kinds that can resume; this node takes the job. @internal */
export async function resumeJob(core: ManagerCore, uuid: string): Promise<LongJob> {
  const incarnation = requireIncarnation(core);
  const { job } = await writeShared(core, uuid, (current) => {
    if (current.state !== 'Suspended') {
      throw new FlowChainError(
        FlowChainErrorCode.INVALID_TRANSITION,
        `Job ${uuid} is ${current.state}; only Suspended jobs can be resumed.`,
        { details: { uuid, state: current.state, operation: 'resume' } },
      );
    }
    const kind = requireKind(core, current.jobName);
    if (!kind.supportsResume) throw notSupported(uuid, current.jobName, 'resume');
    return {
      state: nextLongJobState(current.state, 'resume', uuid),
      jobResult: null,
      managementNodeUuid: core.nodeId,
      incarnation,
      epoch: current.epoch + 1,
      lastOpDate: nowIso(),
    };
  });
  startExecution(core, job, requireKind(core, job.jobName), 'resume');
  return toLongJob(job);
}

/** Update: name and description, in any state. @internal */
export async function updateJob(
  core: ManagerCore,
  uuid: string,
  changes: { name?: string; description?: string | null },
): Promise<LongJob> {
  if (changes === null || typeof changes !== 'object') throw invalidArgument('changes', 'an object', changes);
  const { name, description, ...rest } = changes;
  const unknownKey = Object.keys(rest)[0];
  if (unknownKey !== undefined) throw invalidArgument(`changes.${unknownKey}`, 'not set: only name and description can be updated', unknownKey);
  if (name !== undefined) checkName(name);
  if (description !== undefined) checkDescription(description);
  const { job } = await writeShared(core, uuid, () => {
    const write: JobChanges = { lastOpDate: nowIso() };
    if (name !== undefined) write.name = name;
    if (description !== undefined) write.description = description;
    return write;
  });
  return toLongJob(job);
}

/** Clean: only Canceling jobs of kinds with `clean`; then the job ends Canceled. @internal */
export async function cleanJob(core: ManagerCore, uuid: string): Promise<LongJob> {
  const incarnation = requireIncarnation(core);
  // Busy from the ownership write to the end: this node's poll must not see a Canceling job
  // it owns with nothing running it, and deliver the cancel (and clean) a second time.
  const marked = !core.busy.has(uuid);
  core.busy.add(uuid);
  try {
    return await cleanOwned(core, uuid, incarnation);
  } finally {
    if (marked) core.busy.delete(uuid);
  }
}

async function cleanOwned(core: ManagerCore, uuid: string, incarnation: string): Promise<LongJob> {
  const { job } = await writeShared(core, uuid, (current) => {
    if (current.state !== 'Canceling') {
      throw new FlowChainError(
        FlowChainErrorCode.INVALID_TRANSITION,
        `Job ${uuid} is ${current.state}; only Canceling jobs can be cleaned.`,
        { details: { uuid, state: current.state, operation: 'clean' } },
      );
    }
    const kind = requireKind(core, current.jobName);
    if (kind.clean === undefined) throw notSupported(uuid, current.jobName, 'clean');
    // Taking the job fences off whichever node still runs it.
    return { managementNodeUuid: core.nodeId, incarnation, epoch: current.epoch + 1, lastOpDate: nowIso() };
  });
  core.executions.get(uuid)?.abort(canceledError(uuid));
  const owner = { incarnation, epoch: job.epoch };
  await runClean(core, job, requireKind(core, job.jobName), owner);
  const ended = await endJob(core, owner, uuid, 'fail', canceledError(uuid));
  return toLongJob(ended ?? (await mustRead(core, uuid)));
}

/** Validates a job name. @internal */
export function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 255) {
    throw invalidArgument('name', 'a non-empty string of at most 255 characters', name);
  }
}

/** Validates a job description. @internal */
export function checkDescription(description: unknown): asserts description is string | null {
  if (description !== null && (typeof description !== 'string' || description.length > 2048)) {
    throw invalidArgument('description', 'a string of at most 2048 characters, or null', description);
  }
}

/** The kind registered under `jobName`, or JOB_KIND_UNKNOWN. @internal */
export function requireKind(core: ManagerCore, jobName: string): ResolvedKind {
  const kind = core.kinds.get(jobName);
  if (kind === undefined) {
    throw new FlowChainError(
      FlowChainErrorCode.JOB_KIND_UNKNOWN,
      `No job kind is registered under ${JSON.stringify(jobName)} on node ${core.nodeId}. Register it with jobs.register(${JSON.stringify(jobName)}, { start }) first.`,
      { details: { jobName, known: [...core.kinds.keys()] } },
    );
  }
  return kind;
}

function requireIncarnation(core: ManagerCore): string {
  const incarnation = core.incarnation;
  if (incarnation === undefined || !core.live) {
    throw new FlowChainError(
      FlowChainErrorCode.MANAGER_NOT_RUNNING,
      `Job manager ${core.nodeId} is not running; call start() first (or wait until it has re-registered its lease).`,
    );
  }
  return incarnation;
}

function notSupported(uuid: string, jobName: string, operation: string): FlowChainError {
  return new FlowChainError(
    FlowChainErrorCode.NOT_SUPPORTED,
    `Job kind ${JSON.stringify(jobName)} does not support ${operation} (it defines no \`${operation}\`), so job ${uuid} was left unchanged.`,
    { details: { uuid, jobName, operation } },
  );
}

/** The error a canceled job ends with. @internal */
export function canceledError(uuid: string): FlowChainError {
  return new FlowChainError(FlowChainErrorCode.JOB_CANCELED, `Job ${uuid} was canceled.`, { details: { uuid } });
}
