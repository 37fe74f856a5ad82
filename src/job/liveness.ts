import { FlowChainError, FlowChainErrorCode, serializeError } from '../errors.js';
import type { JobChange, NodeRegistry } from '../store/contract.js';
import type { ManagerCore } from './core.js';
import { type Execution, nowIso, writeOwned } from './execution.js';
import { deliverCancel } from './operations.js';
import { checkStoredJob, newUuid } from './record.js';
import { reclaimJobs, recoverJob } from './recovery.js';
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
  /** The incarnation this node had when it last fenced itself off. */
  private fencedIncarnation: string | undefined = undefined;
  /** The heartbeat in flight, if any: stop() waits for it. */
  private heartbeating: Promise<void> | undefined = undefined;
  /** A newer incarnation of this nodeId took over: this one never comes back. */
  private superseded = false;
  /** False once stop() began: no more claims, no re-registration. */
  private claiming = false;
  private ended = true;
  /** This incarnation has yet to reclaim its predecessors' jobs (the first try may fail). */
  private restartPending = false;
  /** Owned, unfinished jobs seen with nothing running them at the last poll. */
  private suspects = new Set<string>();
  private unsubscribe: (() => void) | undefined = undefined;

  constructor(
    private readonly core: ManagerCore,
    private readonly wake: (uuid: string) => void,
  ) {}

  /** Registers a new incarnation and starts the heartbeat. */
  async begin(): Promise<void> {
    this.fenced = false;
    this.superseded = false;
    this.claiming = true;
    this.ended = false;
    await this.register();
    if (this.core.store.nodes !== undefined) this.scheduleHeartbeat();
    this.unsubscribe = this.core.store.subscribe?.((change) => this.onChange(change));
  }

  /** Reclaims what this node may take, then polls for more. */
  async recover(reason: 'restart' | 'orphan'): Promise<void> {
    try {
      await reclaimJobs(this.core, reason);
      if (reason === 'restart') this.restartPending = false;
    } catch (error) {
      // The store may be down at start: the poll retries (no job is failed for it).
      this.core.reportError(error, 'reclaiming jobs');
    }
    this.pollTimer ??= setInterval(() => void this.poll(), this.core.options.pollIntervalMs);
    this.pollTimer.unref();
  }

  /** Stops claiming new work (the heartbeat goes on while jobs drain). */
  async stopClaiming(): Promise<void> {
    this.claiming = false;
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
    // A fenced run can no longer write: there is nothing to wait for. A run may be fenced
    // while we wait, so the set is looked at again after every settle (and every 100 ms).
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + timeoutMs;
    for (;;) {
      const pending = this.unfinished();
      if (pending.length === 0) return;
      const left = deadline - performance.now();
      if (left <= 0) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.race(pending.map((execution) => execution.settled)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.min(100, left));
        }),
      ]);
      clearTimeout(timer);
    }
    await Promise.all(
      this.unfinished().map(async (execution) => {
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

  private unfinished(): Execution[] {
    return [...this.core.executions.values()].filter((execution) => !execution.abandoned);
  }

  /** Stops every timer and leaves the store's node registry. */
  async end(): Promise<void> {
    this.ended = true;
    this.claiming = false;
    if (this.pollTimer !== undefined) clearInterval(this.pollTimer);
    if (this.heartbeatTimer !== undefined) clearTimeout(this.heartbeatTimer);
    if (this.fenceTimer !== undefined) clearTimeout(this.fenceTimer);
    this.pollTimer = this.heartbeatTimer = this.fenceTimer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    // A heartbeat in flight may be re-registering a fenced node: it takes that back out (see
    // heartbeat()); stop() resolves once it has.
    await this.heartbeating;
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
    this.restartPending = true;
  }

  private scheduleHeartbeat(): void {
    this.heartbeatTimer = setTimeout(() => {
      this.heartbeating = this.heartbeat();
    }, this.core.options.heartbeatIntervalMs);
    this.heartbeatTimer.unref();
  }

  private async heartbeat(): Promise<void> {
    const nodes = this.core.store.nodes;
    if (nodes === undefined || !this.core.live || this.ended) return;
    try {
      if (this.fenced) {
        // Stopping, or replaced by a newer process with this nodeId: stay down.
        if (!this.claiming || this.superseded) return;
        // A process that restarted with this nodeId while this one was cut off (a rolling
        // restart during a partition) owns our jobs now; registering would mark it dead.
        if (await this.anotherAlive(nodes, this.fencedIncarnation)) {
          this.superseded = true;
          this.core.reportError(
            new FlowChainError(
              FlowChainErrorCode.OWNERSHIP_LOST,
              `Node ${this.core.nodeId} stays fenced off: a newer process registered the same nodeId while this one could not reach the store.`,
              { details: { nodeId: this.core.nodeId } },
            ),
            'coming back after a fence',
          );
          return;
        }
        // Come back as a new incarnation; the restart rules then reclaim our old jobs.
        await this.register();
        if (this.ended || !this.claiming) {
          // stop() ran meanwhile: take the new incarnation back out, and claim nothing.
          await this.withdraw(nodes);
          return;
        }
        await reclaimJobs(this.core, 'restart');
        this.restartPending = false;
        return;
      }
      const incarnation = this.incarnation;
      if (incarnation === undefined) return;
      const sentAt = performance.now();
      const alive = await nodes.heartbeat(incarnation, this.core.options.leaseTtlMs);
      if (this.ended) return;
      if (alive) {
        this.trustUntil(sentAt);
      } else {
        // Dead because a newer process registered this nodeId (a restart): that one owns the
        // jobs now, and this one must not take them back. Dead because the lease ran out:
        // come back as a new incarnation at the next heartbeat.
        this.superseded = await this.anotherAlive(nodes, incarnation);
        this.fence(
          this.superseded
            ? 'a newer process registered the same nodeId (a restart); this one stays fenced off'
            : 'the store declared this node dead (its lease expired)',
        );
      }
    } catch (error) {
      // The fence timer still runs: if renewals keep failing, the node stops itself in time.
      this.core.reportError(error, 'renewing the node lease');
    } finally {
      if (!this.ended && (this.heartbeatTimer !== undefined || this.fenced)) this.scheduleHeartbeat();
    }
  }

  /**
   * Whether an incarnation of this nodeId other than `own` is alive: a process registered
   * after this one (registering marks every earlier one dead).
   */
  private async anotherAlive(nodes: NodeRegistry, own: string | undefined): Promise<boolean> {
    const nodeId = this.core.nodeId;
    return (await nodes.list()).some((node) => node.nodeId === nodeId && node.state === 'alive' && node.incarnation !== own);
  }

  /** Undoes a registration that stop() overtook. */
  private async withdraw(nodes: NodeRegistry): Promise<void> {
    const incarnation = this.incarnation;
    this.incarnation = undefined;
    this.fenced = true;
    if (this.fenceTimer !== undefined) clearTimeout(this.fenceTimer);
    this.fenceTimer = undefined;
    if (incarnation !== undefined) await nodes.leave(incarnation);
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
    this.fencedIncarnation = this.incarnation;
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
        const dead = await nodes.reap(this.core.options.reapGraceMs, this.core.options.deadNodeRetentionMs);
        if (dead.length > 0) this.core.emitEvent('node:dead', dead);
      }
      if (this.restartPending) {
        await reclaimJobs(this.core, 'restart');
        this.restartPending = false;
      } else {
        await reclaimJobs(this.core, 'orphan');
      }
      await this.checkOwned();
    } catch (error) {
      this.core.reportError(error, 'polling');
    } finally {
      this.polling = false;
    }
  }

  /**
   * Looks at the unfinished jobs this incarnation owns. A Canceling one gets its cancel
   * delivered (J8: a cancel issued on any node reaches the owner); deliveries are not awaited,
   * so one slow kind cannot hold the others up. A Waiting or Running one with nothing running
   * it on two polls in a row (its run was lost: an ambiguous write, an error that ended it)
   * gets the restart rules again, so no job stays Running with nobody running it.
   */
  private async checkOwned(): Promise<void> {
    const incarnation = this.incarnation;
    if (incarnation === undefined) return;
    const rows = await this.core.store.queryJobs({
      managementNodeUuid: this.core.nodeId,
      state: ['Canceling', 'Waiting', 'Running'],
    });
    const suspects = new Set<string>();
    for (const row of rows) {
      let job;
      try {
        job = checkStoredJob(row);
      } catch (error) {
        this.core.reportError(error, 'checking owned jobs');
        continue;
      }
      if (job.incarnation !== incarnation || this.core.busy.has(job.uuid)) continue;
      const execution = this.core.executions.get(job.uuid);
      if (job.state === 'Canceling') {
        if (execution?.cancelDelivered === true) continue;
        void deliverCancel(this.core, job).catch((error: unknown) =>
          this.core.reportError(error, `delivering the cancel of job ${job.uuid}`),
        );
        continue;
      }
      if (execution !== undefined) continue;
      if (!this.suspects.has(job.uuid)) {
        suspects.add(job.uuid);
        continue;
      }
      void this.core.track(recoverJob(this.core, job)).catch((error: unknown) =>
        this.core.reportError(error, `recovering job ${job.uuid}`),
      );
    }
    this.suspects = suspects;
  }
}

function interrupted(nodeId: string): FlowChainError {
  return new FlowChainError(
    FlowChainErrorCode.JOB_INTERRUPTED,
    `Node ${nodeId} stopped; the job was suspended so that another node or a restart can resume it.`,
    { details: { nodeId } },
  );
}
