import { FlowChainError, FlowChainErrorCode, isFlowChainError, serializeError } from '../errors.js';
import type { StoredJob } from '../store/contract.js';
import type { ManagerCore } from './core.js';
import { type Owner, finalChanges, finishJob, nowIso, runClean, startExecution, writeOwned } from './execution.js';
import type { ResolvedKind } from './kind.js';
import { canceledError } from './operations.js';
import { checkStoredJob, toLongJob } from './record.js';
import { type LongJobStateEvent, isFinalState, nextLongJobState } from './states.js';

/**
 * Claims every job this node may take — its previous incarnation's and orphans, of kinds
 * it has registered — and applies the restart rules to each (J8). Returns how many it took.
 * @internal
 */
export async function reclaimJobs(core: ManagerCore, reason: 'restart' | 'orphan'): Promise<number> {
  // At (re)start: this node's previous incarnations' jobs first, then orphans; when polling,
  // orphans only (a still-running old incarnation must not take back what its successor took).
  let total = 0;
  if (reason === 'restart') total += await claim(core, 'previous');
  return total + (await claim(core, 'orphans'));
}

async function claim(core: ManagerCore, scope: 'previous' | 'orphans'): Promise<number> {
  const incarnation = core.incarnation;
  if (incarnation === undefined || core.kinds.size === 0) return 0;
  let total = 0;
  for (;;) {
    const claimed = await core.store.claimJobs({
      nodeId: core.nodeId,
      incarnation,
      jobNames: [...core.kinds.keys()],
      limit: core.options.claimBatchSize,
      scope,
    });
    for (const raw of claimed) {
      let job: StoredJob;
      try {
        job = checkStoredJob(raw);
      } catch (error) {
        // A corrupt record stays where it is, visible; it never stops the others (S4).
        core.reportError(error, 'claiming jobs');
        continue;
      }
      core.published(job, null);
      core.emitEvent('job:claim', toLongJob(job), scope === 'previous' ? 'restart' : 'orphan');
      void core.track(recoverJob(core, job)).catch((error: unknown) => core.reportError(error, `recovering job ${job.uuid}`));
    }
    total += claimed.length;
    if (claimed.length < core.options.claimBatchSize) return total;
  }
}

/**
 * ZStack's restart rules for a job this node just claimed: Waiting → start;
 * Running/Suspended → resume if the kind can, else clean (if it can) then Failed;
 * Canceling → clean (if it can) then Canceled. A job taken over more than `maxTakeovers`
 * times fails instead (a poison job must not crash-loop every node).
 * @internal
 */
export async function recoverJob(core: ManagerCore, job: StoredJob): Promise<void> {
  // One recovery (or cancel delivery) per job at a time on this node.
  if (core.busy.has(job.uuid)) return;
  core.busy.add(job.uuid);
  try {
    await recover(core, job);
  } finally {
    core.busy.delete(job.uuid);
  }
}

async function recover(core: ManagerCore, job: StoredJob): Promise<void> {
  const kind = core.kinds.get(job.jobName) as ResolvedKind;
  const owner: Owner = { incarnation: job.incarnation as string, epoch: job.epoch };
  const kept = core.unwritten.get(job.uuid);
  if (kept !== undefined) {
    core.unwritten.delete(job.uuid);
    // This node's run succeeded while the node was cut off. One claim since (epoch + 1) means
    // the job went straight from that run's incarnation to this one: nobody else has run it,
    // so the result stands. Anything more, and the restart rules decide.
    if (job.epoch === kept.epoch + 1 && (job.state === 'Running' || job.state === 'Canceling')) {
      await finishJob(core, job.uuid, owner, { ok: true, value: kept.value });
      return;
    }
  }
  if (job.takeovers > core.options.maxTakeovers) {
    const error = new FlowChainError(
      FlowChainErrorCode.TAKEOVER_LIMIT_EXCEEDED,
      `Job ${job.uuid} was taken over ${job.takeovers} times (limit ${core.options.maxTakeovers}): it seems to crash the node running it, so it was failed instead of resumed again.`,
      { details: { uuid: job.uuid, takeovers: job.takeovers, maxTakeovers: core.options.maxTakeovers } },
    );
    await endJob(core, owner, job.uuid, 'fail', error);
    return;
  }
  switch (job.state) {
    case 'Waiting':
      await transitionAndRun(core, owner, job.uuid, kind, 'start');
      return;
    case 'Running':
    case 'Suspended':
      if (kind.supportsResume) {
        await transitionAndRun(core, owner, job.uuid, kind, 'resume');
        return;
      }
      await runClean(core, job, kind, owner);
      await endJob(
        core,
        owner,
        job.uuid,
        'fail',
        new FlowChainError(
          FlowChainErrorCode.JOB_INTERRUPTED,
          `Job ${job.uuid} was ${job.state} on a node that stopped, and kind ${JSON.stringify(job.jobName)} cannot resume it; rerun it to start over.`,
          { details: { uuid: job.uuid } },
        ),
      );
      return;
    case 'Canceling':
      await recoverCanceling(core, job, kind, owner);
      return;
    default:
      return;
  }
}

/** The Canceling restart rule: a durable chain rolls back from its checkpoint; code: clean, then Canceled. @internal */
export async function recoverCanceling(core: ManagerCore, job: StoredJob, kind: ResolvedKind, owner: Owner): Promise<void> {
  if (kind.chainKind !== undefined) {
    startExecution(core, job, kind, 'resume')?.abort(canceledError(job.uuid));
    return;
  }
  await runClean(core, job, kind, owner);
  await endJob(core, owner, job.uuid, kind.clean === undefined ? 'canceled' : 'fail', canceledError(job.uuid));
}

/** Writes `start` or `resume` (→ Running), then runs the kind's code. @internal */
export async function transitionAndRun(
  core: ManagerCore,
  owner: Owner,
  uuid: string,
  kind: ResolvedKind,
  mode: 'start' | 'resume',
): Promise<StoredJob | undefined> {
  let canceling: StoredJob | undefined;
  const updated = await writeOwned(core, owner, uuid, { retry: true }, (job) => {
    // Finished meanwhile: nothing to run. Canceled meanwhile (a cancel raced the claim):
    // the Canceling rule applies instead.
    if (isFinalState(job.state)) return undefined;
    if (job.state === 'Canceling') {
      canceling = job;
      return undefined;
    }
    return {
      state: nextLongJobState(job.state, mode, uuid),
      // A resumed job's result is written when it finishes; the reason it was suspended goes.
      ...(mode === 'resume' ? { jobResult: null } : {}),
      lastOpDate: nowIso(),
    };
  });
  if (canceling !== undefined) {
    await recoverCanceling(core, canceling, kind, owner);
    return undefined;
  }
  if (updated !== undefined) startExecution(core, updated, kind, mode);
  return updated;
}

/** Ends a job with an event and an error result (first result wins). @internal */
export async function endJob(
  core: ManagerCore,
  owner: Owner,
  uuid: string,
  event: LongJobStateEvent,
  error: unknown,
): Promise<StoredJob | undefined> {
  return writeOwned(core, owner, uuid, { retry: true }, (job) => {
    const state = nextLongJobState(job.state, event, uuid);
    if (state === job.state) return undefined;
    return {
      state,
      jobResult: job.jobResult ?? JSON.stringify(serializeError(error)),
      lastOpDate: nowIso(),
      ...finalChanges(job),
    };
  });
}

/** Whether an error is a store outage (worth retrying later) rather than a real refusal. @internal */
export function isStoreOutage(error: unknown): boolean {
  return isFlowChainError(error, FlowChainErrorCode.STORE_FAILURE);
}
