import { FlowChainError, FlowChainErrorCode, serializeError } from '../errors.js';
import type { JobChange } from '../store/contract.js';
import type { ManagerCore } from './core.js';
import { nowIso, writeOwned } from './execution.js';
import { deliverCancel } from './operations.js';
import { checkStoredJob, newUuid } from './record.js';
import { reclaimJobs } from './recovery.js';
import { isFinalState, nextLongJobState } from './states.js';

/**
 * A node's life on a shared store (J8): its incarnation, the lease it renews, the fence it
 * puts up when it can no longer trust that lease, and the polling that reaps dead nodes,
 * claims orphaned jobs and delivers cancel requests.
 *
 * Safety rests on two clocks. The store decides who is dead with its own clock (a lease
 * ends `leaseTtlMs` after the store stamped the last heartbeat). This node stops trusting
 * its lease `leaseTtlMs − margin` after it *sent* the last successful heartbeat, on the
 * monotonic clock, so it always fences itself before anyone can take its jobs over.
 * @internal
 */
export class Liveness {
  incarnation: string | undefined = undefined;
  private heartbeatTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  private fenceTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  private pollTimer: ReturnType<typeof setInterval> | undefined = undefined;
  private pokeScheduled = false;
  private polling = false;
  private lastReap = Number.NEGATIVE_INFINITY;
  private fenced = false;
  private unsubscribe: (() => void) | undefined = undefined;

  constructor(
    private readonly core: ManagerCore,
    private readonly wake: (uuid: string) => void,
  ) {}

  /** Registers a new incarnation and starts the heartbeat. */
  async begin(): Promise<void> {
    this.fenced = false;
    await this.register();
    if (this.core.store.nodes !== undefined) this.scheduleHeartbeat();
    this.unsubscribe = this.core.store.subscribe?.((change) => this.onChange(change));
  }

  /** Reclaims what this node may take, then polls for more. */
  async recover(reason: 'restart' | 'orphan'): Promise<void> {
    try {
      await reclaimJobs(this.core, reason);
    } catch (error) {
      // The store may be down at start: the poll retries (no job is failed for it).
      this.core.reportError(error, 'reclaiming jobs');
    }
    this.pollTimer ??= setInterval(() => void this.poll(), this.core.options.pollIntervalMs);
    this.pollTimer.unref();
  }

  /** Stops claiming new work (the heartbeat goes on while jobs drain). */
  async stopClaiming(): Promise<void> {
    if (this.pollTimer !== undefined) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }

  /** Asks every running job to stop; each ends Suspended and orphaned, for others to resume (J9). */
  suspendAll(): void {
    for (const execution of this.core.executions.values()) {
      execution.suspendRequested = true;
      execution.abort(interrupted(this.core.nodeId));
    }
  }

  /** Waits for running jobs; after `timeoutMs`, suspends the ones still running, fenced. */
  async settle(timeoutMs: number | undefined): Promise<void> {
    // A fenced run can no longer write: there is nothing to wait for.
    const pending = [...this.core.executions.values()].filter((execution) => !execution.abandoned);
    if (pending.length === 0) return;
    const all = Promise.all(pending.map((execution) => execution.settled));
    if (timeoutMs === undefined) {
      await all;
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!expired) return;
    await Promise.all(
      pending.map(async (execution) => {
        if (execution.abandoned) return;
        execution.suspendRequested = true;
        execution.abandoned = true;
        execution.abort(interrupted(this.core.nodeId));
        // epoch + 1 fences off the code still running: its late writes are rejected.
        // One attempt: a stop must end even when the store is unreachable.
        await writeOwned(this.core, execution.owner, execution.uuid, { retry: false }, (job) =>
          isFinalState(job.state)
            ? undefined
            : {
                state: nextLongJobState(job.state, 'suspend', job.uuid),
                incarnation: null,
                managementNodeUuid: null,
                epoch: job.epoch + 1,
                jobResult: job.jobResult ?? JSON.stringify(serializeError(interrupted(this.core.nodeId))),
                lastOpDate: nowIso(),
              },
        );
      }),
    );
  }

  /** Stops every timer and leaves the store's node registry. */
  async end(): Promise<void> {
    if (this.pollTimer !== undefined) clearInterval(this.pollTimer);
    if (this.heartbeatTimer !== undefined) clearTimeout(this.heartbeatTimer);
    if (this.fenceTimer !== undefined) clearTimeout(this.fenceTimer);
    this.pollTimer = this.heartbeatTimer = this.fenceTimer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    const incarnation = this.incarnation;
    this.incarnation = undefined;
    const nodes = this.core.store.nodes;
    if (nodes !== undefined && incarnation !== undefined && !this.fenced) {
      try {
        await nodes.leave(incarnation);
      } catch (error) {
        this.core.reportError(error, 'leaving the node registry');
      }
    }
  }

  // ---- lease --------------------------------------------------------------------------

  private async register(): Promise<void> {
    const incarnation = newUuid();
    const nodes = this.core.store.nodes;
    if (nodes !== undefined) {
      const sentAt = performance.now();
      await nodes.register({ nodeId: this.core.nodeId, incarnation, leaseTtlMs: this.core.options.leaseTtlMs });
      this.trustUntil(sentAt);
    }
    this.incarnation = incarnation;
    this.fenced = false;
  }

  private scheduleHeartbeat(): void {
    this.heartbeatTimer = setTimeout(() => void this.heartbeat(), this.core.options.heartbeatIntervalMs);
    this.heartbeatTimer.unref();
  }

  private async heartbeat(): Promise<void> {
    const nodes = this.core.store.nodes;
    if (nodes === undefined || !this.core.live) return;
    try {
      if (this.fenced) {
        // Come back as a new incarnation; the restart rules then reclaim our old jobs.
        await this.register();
        await reclaimJobs(this.core, 'restart');
        return;
      }
      const incarnation = this.incarnation;
      if (incarnation === undefined) return;
      const sentAt = performance.now();
      const alive = await nodes.heartbeat(incarnation, this.core.options.leaseTtlMs);
      if (alive) this.trustUntil(sentAt);
      else this.fence('the store declared this node dead (its lease expired or a restart superseded it)');
    } catch (error) {
      // The fence timer still runs: if renewals keep failing, the node stops itself in time.
      this.core.reportError(error, 'renewing the node lease');
    } finally {
      if (this.heartbeatTimer !== undefined || this.fenced) this.scheduleHeartbeat();
    }
  }

  private trustUntil(sentAt: number): void {
    const ttl = this.core.options.leaseTtlMs;
    const margin = Math.max(ttl / 10, 1);
    if (this.fenceTimer !== undefined) clearTimeout(this.fenceTimer);
    const delay = Math.max(0, sentAt + ttl - margin - performance.now());
    this.fenceTimer = setTimeout(() => this.fence('its lease could not be renewed in time'), delay);
    this.fenceTimer.unref();
  }

  /** Stops every side effect of this incarnation at once: no write with it will succeed anyway. */
  private fence(reason: string): void {
    if (this.fenced) return;
    this.fenced = true;
    this.incarnation = undefined;
    if (this.fenceTimer !== undefined) clearTimeout(this.fenceTimer);
    this.fenceTimer = undefined;
    const error = new FlowChainError(
      FlowChainErrorCode.OWNERSHIP_LOST,
      `Node ${this.core.nodeId} fenced itself off: ${reason}. Its running jobs were aborted without writing; they will be resumed by whichever node claims them.`,
      { details: { nodeId: this.core.nodeId } },
    );
    for (const execution of this.core.executions.values()) {
      execution.abandoned = true;
      execution.abort(error);
    }
    this.core.emitEvent('node:fenced', reason);
  }

  // ---- polling ------------------------------------------------------------------------

  private onChange(change: JobChange): void {
    this.wake(change.uuid);
    const mine = change.managementNodeUuid === this.core.nodeId && change.state === 'Canceling';
    const orphan = change.managementNodeUuid === null && !isFinalState(change.state);
    if ((mine || orphan) && this.pollTimer !== undefined) this.poke();
  }

  /** Polls soon (coalesced), instead of waiting for the next interval. */
  private poke(): void {
    if (this.pokeScheduled) return;
    this.pokeScheduled = true;
    setImmediate(() => {
      this.pokeScheduled = false;
      void this.poll();
    });
  }

  private async poll(): Promise<void> {
    if (this.polling || this.pollTimer === undefined || this.incarnation === undefined) return;
    this.polling = true;
    try {
      const nodes = this.core.store.nodes;
      const now = performance.now();
      if (nodes !== undefined && now - this.lastReap >= this.core.options.heartbeatIntervalMs) {
        this.lastReap = now;
        const dead = await nodes.reap(this.core.options.reapGraceMs);
        if (dead.length > 0) this.core.emitEvent('node:dead', dead);
      }
      await reclaimJobs(this.core, 'orphan');
      await this.deliverCancels();
    } catch (error) {
      this.core.reportError(error, 'polling');
    } finally {
      this.polling = false;
    }
  }

  /** A cancel issued on any node reaches the node that owns the job (J8). */
  private async deliverCancels(): Promise<void> {
    const incarnation = this.incarnation;
    if (incarnation === undefined) return;
    const canceling = await this.core.store.queryJobs({ managementNodeUuid: this.core.nodeId, state: 'Canceling' });
    for (const row of canceling) {
      let job;
      try {
        job = checkStoredJob(row);
      } catch (error) {
        this.core.reportError(error, 'delivering cancels');
        continue;
      }
      if (job.incarnation !== incarnation) continue;
      if (this.core.executions.get(job.uuid)?.cancelDelivered === true) continue;
      try {
        await deliverCancel(this.core, job);
      } catch (error) {
        this.core.reportError(error, `delivering the cancel of job ${job.uuid}`);
      }
    }
  }
}

function interrupted(nodeId: string): FlowChainError {
  return new FlowChainError(
    FlowChainErrorCode.JOB_INTERRUPTED,
    `Node ${nodeId} stopped; the job was suspended so that another node or a restart can resume it.`,
    { details: { nodeId } },
  );
}
