import {
  FlowChainError,
  FlowChainErrorCode,
  describeThrown,
  flowLocation,
  isFlowChainError,
} from '../errors.js';
import { now, preciseNow } from './clock.js';
import type { ChainExtensions, FlowChain } from './chain.js';
import type { Flow, FlowTrigger, RollbackTrigger } from './flow.js';
import { COMPLETED, FlowStep, PENDING, RollbackStep, isThenable, type StepHost } from './trigger.js';

/*
 * The execution engine. A chain starts once, so one ChainRun holds all run state: the
 * position, one status number and one timestamp per flow. The hot path allocates one
 * three-field trigger per step and nothing else: a promise returned by a flow is followed
 * with two reactions shared by the whole run (see `watch`). Everything a run rarely needs
 * (cancellation, setError, failures, halting, nested runs) lives in a record made on
 * demand. It never recurses: `drive()` is a loop, and a completion that arrives while the
 * loop is running only records the outcome, so 1,000,000 synchronous flows use constant
 * stack. Rollback walks back over the status array; there is no undo stack.
 */

/** Per-flow status codes; also the trace's source. @internal */
export const Status = {
  NOT_RUN: 0,
  RUNNING: 1,
  DONE: 2,
  SKIPPED: 3,
  FAILED: 4,
  ROLLING_BACK: 5,
  ROLLED_BACK: 6,
  ROLLBACK_FAILED: 7,
} as const;

/** ChainRun.busy bits. */
const DRIVING = 1;
const CHECKPOINTING = 2;

const FORWARD = 0;
const ROLLBACK = 1;
const FINISHING = 2;
const ENDED = 3;

/**
 * Where a flow stands before it runs: marshal + preCheck, then skip, then run. A chain with
 * neither a marshaller nor a preCheck starts each flow at READY: only a `skip` to look at.
 */
const STAGE_PRECHECK = 0;
const STAGE_SKIP = 1;
const STAGE_RUN = 2;
const STAGE_READY = 3;

/**
 * Marks a flow that unwinds other flows (a nested chain, a parallel group). Each inner
 * rollback has its own timeout; one armed for the whole unwinding would let the parent move
 * on, out of order, while the inner flows are still rolling back. @internal
 */
export const COMPOSITE: unique symbol = Symbol('flowchain.composite');

/** Hooks a durable job uses to checkpoint each step and to resume from a checkpoint. @internal */
export interface RunHooks {
  /** `jobUuid:flow:attempt` keys for triggers. */
  idempotencyKey?(flowName: string, index: number): string;
  /** Called just before a flow's run, or its rollback, starts. */
  beforeStep?(run: ChainRun<unknown>, index: number): void;
  /** Called with the data after each flow that completed; a throw fails that flow instead. */
  checkData?(data: unknown): void;
  /** Called after every forward outcome and rollback step (of flow `index`); the run waits for it. */
  afterStep?(run: ChainRun<unknown>, index: number): void | Promise<void>;
}

/** Whether a flow unwinds other flows (a nested chain, a parallel group). @internal */
export function isCompositeFlow(flow: object): boolean {
  return (flow as { [COMPOSITE]?: boolean })[COMPOSITE] === true;
}

/** The state a resumed run starts from (durable chains). @internal */
export interface RunResume {
  status: number[];
  phase: 'forward' | 'rollback';
  index: number;
  error?: FlowChainError;
  /** The first setError() of the run so far. */
  setError?: { index: number; error: unknown };
  /** skipRestRollbacks() was called. */
  skipRest?: boolean;
}

/** The state a run rarely needs, made on first use. */
interface Cold<Data> {
  canceled: boolean;
  cancelReason: unknown;
  cancelError: FlowChainError | undefined;
  setErrorIndex: number;
  setErrorValue: unknown;
  handlerError: { handler: string; error: unknown } | undefined;
  /** Set when this run rolls back on behalf of a parent chain that failed later. */
  parentRollback: RollbackTrigger | undefined;
  detach: (() => void) | undefined;
  halted: boolean;
  haltReason: unknown;
  skipRest: boolean;
  /** When unwinding began (the trace's start of the first rollback). */
  rollbackBegan: number | undefined;
  /** Promises followed by the shared reactions whose steps completed another way. */
  staleWatches: number;
  /** The next flow to roll back. */
  rbIndex: number;
  /** When each flow's rollback ended (NaN until then). */
  rbTimes: number[] | undefined;
  /** A nested run's timeouts, from its parent. */
  inheritedTimeoutMs: number | undefined;
  inheritedRollbackTimeoutMs: number | undefined;
  /** The error each flow's run failed with (sparse). */
  flowErrors: unknown[];
  /** The ROLLBACK_FAILED error of each flow whose rollback failed (sparse). */
  rollbackFailures: FlowChainError[];
  /** Runs of nested chains and parallel groups, by flow index (sparse). */
  children: ChainRun<Data>[][];
}

/** @internal */
export class ChainRun<Data> implements StepHost {
  /**
   * Two numbers per flow, in one array (one allocation): its status at `2i` and, at
   * `2i + 1`, when its run ended (ms since the epoch, NaN until then). After them: when the
   * run began, and the last boundary's time (see `stamp`).
   */
  private readonly slots: number[];
  error: FlowChainError | undefined;
  index: number;
  private stage: number;
  private phase: number;
  private current: FlowStep | RollbackStep | undefined;
  /** DRIVING and CHECKPOINTING bits (one field: a run is kept per in-flight chain). */
  private busy: number;
  private onWatchFulfilled: ((value: unknown) => void) | undefined;
  private onWatchRejected: ((error: unknown) => void) | undefined;
  private cold: Cold<Data> | undefined;

  constructor(
    readonly chain: FlowChain<Data>,
    /**
     * How the run reports its end: `start()`'s promise resolve (a failure resolves it with a
     * rejecting thenable, so the promise's reject function need not be kept: less memory per
     * chain), or, for a nested run, the parent's trigger.
     */
    private readonly settle: ((value: Data | PromiseLike<Data>) => void) | FlowTrigger,
    inherited: { timeoutMs: number; rollbackTimeoutMs: number } | undefined,
    readonly hooks: RunHooks | undefined,
  ) {
    const n = chain.runFlows.length;
    const options = chain.options;
    const slots = freshSlots(n);
    const startedAt = options.preciseTiming ? preciseNow() : now();
    slots[2 * n] = startedAt;
    slots[2 * n + 1] = startedAt;
    this.slots = slots;
    this.error = undefined;
    this.index = 0;
    this.stage = this.firstStage();
    this.phase = FORWARD;
    this.current = undefined;
    this.busy = 0;
    this.onWatchFulfilled = undefined;
    this.onWatchRejected = undefined;
    this.cold = undefined;
    if (inherited !== undefined && (inherited.timeoutMs > 0 || inherited.rollbackTimeoutMs > 0)) {
      const cold = this.more();
      cold.inheritedTimeoutMs = inherited.timeoutMs;
      cold.inheritedRollbackTimeoutMs = inherited.rollbackTimeoutMs;
    }
  }

  /** The live data, the chain's (a nested run's is its parent's). */
  get data(): Data {
    return this.chain.data;
  }

  /** The flows, the chain's list (fixed once it starts; a marshaller edits a copy of its own). */
  get flows(): Flow<Data>[] {
    return this.chain.runFlows;
  }

  /** The driving loop is running (see drive()). */
  private get driving(): boolean {
    return (this.busy & DRIVING) !== 0;
  }

  /** A checkpoint write is in flight: the loop must not run on from unrecorded state. */
  private get checkpointing(): boolean {
    return (this.busy & CHECKPOINTING) !== 0;
  }

  /** The number of flows. */
  get n(): number {
    return this.flows.length;
  }

  /** Each flow's status (a copy). */
  get status(): number[] {
    const out = new Array<number>(this.n);
    for (let i = 0; i < out.length; i++) out[i] = this.slots[2 * i] as number;
    return out;
  }

  /** Flow `index`'s status. */
  statusOf(index: number): number {
    return this.slots[2 * index] as number;
  }

  /** When flow `index`'s run ended, or NaN. */
  timeOf(index: number): number {
    return this.slots[2 * index + 1] as number;
  }

  /** When flow `index`'s rollback ended, or NaN. */
  rollbackTimeOf(index: number): number {
    return this.cold?.rbTimes?.[index] ?? Number.NaN;
  }

  /** When the run began: the start of the first flow. */
  get startedAt(): number {
    return this.slots[2 * this.n] as number;
  }

  /** Inherited timeouts for nested chains and parallel members. */
  get timeouts(): { timeoutMs: number; rollbackTimeoutMs: number } {
    return { timeoutMs: this.timeoutMs, rollbackTimeoutMs: this.rollbackTimeoutMs };
  }

  /** The default timeout of every flow: the chain's own, or its parent's for a nested run. */
  private get timeoutMs(): number {
    return this.chain.options.timeoutMs ?? this.cold?.inheritedTimeoutMs ?? 0;
  }

  private get rollbackTimeoutMs(): number {
    return this.chain.options.rollbackTimeoutMs ?? this.cold?.inheritedRollbackTimeoutMs ?? 0;
  }

  get ended(): boolean {
    return this.phase === ENDED;
  }

  get rollingBack(): boolean {
    return this.phase === ROLLBACK;
  }

  nameOf(index: number): string {
    const flow = this.flows[index];
    return flow?.name ?? `#${index + 1}`;
  }

  locationOf(index: number): string {
    return flowLocation(this.nameOf(index), index, this.n);
  }

  idempotencyKey(index: number): string | undefined {
    return this.hooks?.idempotencyKey?.(this.nameOf(index), index);
  }

  /** Whether flow `index`'s run failed, and with what. */
  failureOf(index: number): { failed: boolean; error: unknown } {
    const errors = this.cold?.flowErrors;
    return errors !== undefined && index in errors ? { failed: true, error: errors[index] } : { failed: false, error: undefined };
  }

  /** The ROLLBACK_FAILED error of flow `index`, if its rollback failed. */
  rollbackFailureOf(index: number): FlowChainError | undefined {
    return this.cold?.rollbackFailures[index];
  }

  /** The flow running now (its run, not a rollback), or -1. */
  get runningIndex(): number {
    const step = this.current;
    return step instanceof FlowStep ? step.index : -1;
  }

  /** When unwinding began, if it has. */
  get rollbackBegan(): number | undefined {
    return this.cold?.rollbackBegan;
  }

  /** The runs of the nested chain or parallel group at `index`. */
  childrenOf(index: number): ChainRun<Data>[] | undefined {
    return this.cold?.children[index];
  }

  /** Records the runs of the nested chain or parallel group at `index`, for the trace. */
  setChildren(index: number, runs: ChainRun<Data>[]): void {
    this.more().children[index] = runs;
  }

  begin(signal: AbortSignal | undefined, resume: RunResume | undefined): void {
    if (resume !== undefined) this.restore(resume);
    if (signal !== undefined) {
      if (signal.aborted) {
        this.cancel(signal.reason);
      } else {
        const onAbort = (): void => {
          this.cancel(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        this.more().detach = () => signal.removeEventListener('abort', onAbort);
      }
    }
    if (this.listening()) this.chain.emitSafe('chain:start', this.chain.name);
    this.drive();
  }

  /** Rolls back this (successful) nested chain because its parent chain failed later. */
  rollbackForParent(step: RollbackTrigger): void {
    if (this.error !== undefined) {
      // It failed on its own and has already rolled itself back.
      step.rollback();
      return;
    }
    const cold = this.more();
    cold.parentRollback = step;
    cold.skipRest = false;
    cold.rollbackBegan = this.stamp();
    this.error = step.error;
    this.phase = ROLLBACK;
    this.more().rbIndex = this.n - 1;
    this.drive();
  }

  cancel(reason: unknown): boolean {
    const cold = this.more();
    if (this.phase !== FORWARD || cold.canceled) return false;
    cold.canceled = true;
    cold.cancelReason = reason;
    if (this.listening()) this.chain.emitSafe('chain:cancel', reason);
    const step = this.current;
    if (step !== undefined && step.pending) step.abort(this.canceledError());
    return true;
  }

  /**
   * Stops the run where it stands, without rollback and without handlers (a durable job
   * being suspended or fenced): the running step's signal aborts; if it then completes its
   * outcome is still recorded, if it fails it counts as not run. `start()` rejects with
   * `reason`.
   */
  halt(reason: unknown): boolean {
    const cold = this.more();
    if (this.phase === ENDED || cold.halted) return false;
    cold.halted = true;
    cold.haltReason = reason;
    const step = this.current;
    if (step !== undefined && step.pending) step.abort(reason);
    return true;
  }

  /** Where the run stands, for a checkpoint. */
  snapshot(): {
    status: number[];
    phase: 'forward' | 'rollback';
    index: number;
    setError: { index: number; error: unknown } | undefined;
    skipRest: boolean;
  } {
    const rollingBack = this.phase === ROLLBACK || (this.phase !== FORWARD && this.error !== undefined);
    const cold = this.cold;
    return {
      status: this.status,
      phase: rollingBack ? 'rollback' : 'forward',
      index: rollingBack ? (cold?.rbIndex ?? -1) : this.index,
      setError: cold !== undefined && cold.setErrorIndex >= 0 ? { index: cold.setErrorIndex, error: cold.setErrorValue } : undefined,
      skipRest: cold?.skipRest ?? false,
    };
  }

  skipRestRollbacks(): void {
    this.more().skipRest = true;
  }

  recordSetError(index: number, error: unknown): void {
    // ZStack keeps the last setError; we keep the first, the root of what went wrong.
    const cold = this.more();
    if (cold.setErrorIndex < 0) {
      cold.setErrorIndex = index;
      cold.setErrorValue = error;
    }
  }

  reportLate(index: number, error: FlowChainError): void {
    if (this.listening()) this.chain.emitSafe('flow:late', this.nameOf(index), index, error);
  }

  abandonWatch(): void {
    this.more().staleWatches++;
  }

  // ---- the loop ---------------------------------------------------------------------

  drive(): void {
    if (this.driving) return;
    this.busy |= DRIVING;
    try {
      for (;;) {
        const phase = this.phase;
        if (phase === FORWARD) {
          if (!this.forward()) break;
        } else if (phase === ROLLBACK) {
          if (!this.backward()) break;
        } else if (phase === FINISHING) {
          // finish() may hand control to a parent chain that, synchronously, asks this
          // (nested) run to roll back: the loop then goes on in the new phase.
          this.finish();
        } else {
          break;
        }
      }
    } finally {
      this.busy &= ~DRIVING;
    }
  }

  /**
   * Runs flows while they complete synchronously; returns false when it must wait for
   * something asynchronous, true when the phase changed.
   *
   * This loop, the shared promise reactions and a callback flow's next() are the hot path.
   * They are kept small, everything rare a call away, because V8 inlines by bytecode size
   * and with a budget per optimized function: a promise flow's reaction inlines drive(),
   * this loop and the loop's own callees, and a large rare branch anywhere on that path
   * would use up the budget and leave the common calls un-inlined.
   */
  private forward(): boolean {
    const flows = this.flows;
    const n = flows.length;
    for (;;) {
      if (this.cold !== undefined) {
        const stop = this.interrupted();
        if (stop !== undefined) return stop;
      }
      const i = this.index;
      if (i >= n) return this.reachedEnd();
      let flow = flows[i] as Flow<Data>;
      if (this.stage !== STAGE_READY || flow.skip !== undefined) {
        const verdict = this.screen(i);
        if (verdict !== undefined) return verdict;
        flow = flows[i] as Flow<Data>; // the marshaller may have replaced it
      }
      if (this.hooks !== undefined) this.hooks.beforeStep?.(this as ChainRun<unknown>, i);
      // The flow's status stays NOT_RUN while it runs: `current` says which one is running.
      const step = new FlowStep(this, i);
      this.current = step;
      if (this.listening()) this.emitAt('flow:start', i);
      let result: unknown;
      try {
        result = flow.run(step, this.data);
      } catch (error) {
        step.threw(error);
        return !this.checkpointing;
      }
      if (step.state !== PENDING) {
        // Completed by an explicit call. A callback flow returns nothing; a promise that
        // settles after the call is ignored (F3).
        if (result !== undefined) silence(result);
        if (this.checkpointing) return false;
        if (this.phase !== FORWARD) return true;
        continue;
      }
      if (result !== undefined) {
        this.watch(step, result);
        // A thenable that is not a promise may call back from then() itself: done already.
        if (!step.pending) {
          if (this.checkpointing) return false;
          if (this.phase !== FORWARD) return true;
          continue;
        }
      }
      const timeoutMs = flow.timeoutMs ?? this.timeoutMs;
      if (timeoutMs > 0) step.armTimeout(timeoutMs);
      return false;
    }
  }

  /** A halted or canceled run stops before the next flow: what forward() returns, or undefined. */
  private interrupted(): boolean | undefined {
    const cold = this.cold as Cold<Data>;
    if (cold.halted) return this.stopHalted();
    if (cold.canceled) return this.failAt(this.index, this.canceledError());
    return undefined;
  }

  /** Every flow has run: a recorded setError() still fails the chain (F-setError). */
  private reachedEnd(): boolean {
    const cold = this.cold;
    if (cold !== undefined && cold.setErrorIndex >= 0) this.error = this.setErrorFailure(cold);
    this.phase = FINISHING;
    return true;
  }

  /**
   * What comes before flow `i` runs: the chain's marshaller and preCheck, then the flow's
   * skip(). Returns undefined when the flow is to run now, else what forward() returns.
   */
  private screen(i: number): boolean | undefined {
    const ext = this.chain.ext;
    if (this.stage === STAGE_PRECHECK && ext !== undefined) {
      const marshaller = ext.marshaller;
      if (marshaller !== undefined) {
        let replacement: Flow<Data> | undefined | null | void;
        try {
          replacement = marshaller(this.flows[i] as Flow<Data>, {
            index: i,
            previous: i > 0 ? this.flows[i - 1] : undefined,
            data: this.data,
          });
        } catch (error) {
          return this.failAt(i, this.flowFailure(i, error, 'its marshaller threw'));
        }
        if (replacement != null) {
          // An invalid replacement fails this flow; thrown from here it would escape into
          // the previous flow's next() (or start()) and leave the chain running forever.
          try {
            this.flows[i] = this.chain.checkFlow(replacement, 'marshaller result');
          } catch (error) {
            return this.failAt(i, this.flowFailure(i, error, 'its marshaller returned an invalid flow'));
          }
        }
      }
      const preCheck = ext.preCheck;
      if (preCheck !== undefined) {
        let verdict: unknown;
        try {
          verdict = preCheck(this.data);
        } catch (error) {
          verdict = error ?? new Error('preCheck threw');
        }
        if (isThenable(verdict)) return this.wait(verdict, STAGE_PRECHECK);
        if (verdict != null) return this.failAt(i, this.preCheckFailure(i, verdict));
      }
      this.stage = STAGE_SKIP;
    }
    const flow = this.flows[i] as Flow<Data>;
    if (this.stage !== STAGE_RUN && flow.skip !== undefined) {
      let skip: unknown;
      try {
        skip = flow.skip(this.data);
      } catch (error) {
        return this.failAt(i, this.flowFailure(i, error, 'its skip() threw'));
      }
      if (isThenable(skip)) return this.wait(skip, STAGE_SKIP);
      if (skip === true) return this.skipped(i);
    }
    this.stage = this.firstStage();
    return undefined;
  }

  /** Where each flow starts: at its marshaller and preCheck if the chain has either. */
  private firstStage(): number {
    const ext = this.chain.ext;
    return ext !== undefined && (ext.marshaller !== undefined || ext.preCheck !== undefined) ? STAGE_PRECHECK : STAGE_READY;
  }

  /** Unwinds one flow; returns false when it must wait. */
  private backward(): boolean {
    const cold = this.more();
    if (cold.halted) return this.stopHalted();
    let j = cold.rbIndex;
    let flow: Flow<Data> | undefined;
    for (;;) {
      if (j < 0 || cold.skipRest) {
        this.phase = FINISHING;
        return true;
      }
      const s = this.slots[2 * j];
      flow = this.flows[j];
      if ((s === Status.DONE || s === Status.FAILED) && flow?.rollback !== undefined) break;
      j--;
      cold.rbIndex = j;
    }
    this.hooks?.beforeStep?.(this as ChainRun<unknown>, j);
    cold.rbTimes ??= filled(this.n, Number.NaN);
    const step = new RollbackStep(this, j);
    this.current = step;
    this.slots[2 * j] = Status.ROLLING_BACK;
    if (this.listening()) this.emitAt('rollback:start', j);
    let result: unknown;
    try {
      result = (flow as Flow<Data> & Required<Pick<Flow<Data>, 'rollback'>>).rollback(step, this.data);
    } catch (error) {
      step.threw(error);
      return !this.checkpointing;
    }
    if (!step.pending) {
      if (result !== undefined) silence(result);
      return !this.checkpointing;
    }
    if (result !== undefined) {
      this.watch(step, result);
      // A thenable that is not a promise may call back from then() itself: done already.
      if (!step.pending) return !this.checkpointing;
    }
    if (this.rollbackTimeoutMs > 0 && !isCompositeFlow(flow as Flow<Data>)) {
      step.armTimeout(this.rollbackTimeoutMs);
    }
    return false;
  }

  /**
   * Follows a step's promise. The common case uses two reactions made once per run, not two
   * closures per step: while no followed promise is stale, at most one is in flight (the
   * current step's), so the shared reaction knows which step it belongs to. A step that
   * completes another way while followed (an explicit next(), a timeout) makes its promise
   * stale; until that stale promise settles, and the shared reaction discounts it, later
   * steps fall back to reactions of their own.
   */
  private watch(step: FlowStep | RollbackStep, result: unknown): void {
    if (!isThenable(result)) return;
    const cold = this.cold;
    // Only a promise is sure to call back once, later: any other thenable gets reactions of
    // its own, which guard their step (a second or late call back then changes nothing).
    if (!(result instanceof Promise) || (cold !== undefined && cold.staleWatches !== 0)) {
      step.watch(result);
      return;
    }
    step.watchedByRun();
    // Bound methods, not arrow functions: no closure context, so less memory per run.
    result.then(
      (this.onWatchFulfilled ??= this.watchFulfilled.bind(this)),
      (this.onWatchRejected ??= this.watchRejected.bind(this)),
    );
  }

  private watchFulfilled(): void {
    if (this.cold === undefined && this.hooks === undefined && this.phase === FORWARD) {
      // The common case, inlined: no followed promise is stale (there is no cold state), so
      // this is the current step's, a forward flow's, fulfilled, with nothing else to do.
      const step = this.current as FlowStep;
      step.state = COMPLETED;
      const i = step.index;
      this.current = undefined;
      // stamp(), inlined by hand: a call that returns a double boxes it, an allocation per flow.
      const slots = this.slots;
      const time = this.chain.options.preciseTiming ? preciseNow() : now();
      slots[2 * this.flows.length + 1] = time;
      slots[2 * i + 1] = time;
      slots[2 * i] = Status.DONE;
      this.index = i + 1;
      if (this.listening()) this.emitAt('flow:done', i);
      this.drive();
      return;
    }
    this.watchSettled(true, undefined);
  }

  private watchRejected(error: unknown): void {
    this.watchSettled(false, error);
  }

  private watchSettled(ok: boolean, error: unknown): void {
    const cold = this.cold;
    if (cold !== undefined && cold.staleWatches !== 0) {
      cold.staleWatches--;
      return;
    }
    // No followed promise is stale, so this is the current step's.
    (this.current as FlowStep | RollbackStep).settleWatched(ok, error);
  }

  // ---- outcomes ---------------------------------------------------------------------

  flowSettled(step: FlowStep, ok: boolean, error: unknown): void {
    // Small on purpose, so that V8 inlines it into next(): the common case is a flow that
    // completed synchronously with nothing else to check or record.
    if (ok && this.driving && this.cold === undefined && this.hooks === undefined && !this.listening()) {
      const i = step.index;
      this.current = undefined;
      // Synchronous: the outcome came in the previous boundary's turn; its time stays NaN and
      // the trace reads it as that boundary's (see stamp()).
      if (this.chain.options.preciseTiming) this.slots[2 * i + 1] = this.stamp();
      this.slots[2 * i] = Status.DONE;
      this.index = i + 1;
      return;
    }
    this.flowSettledSlow(step, ok, error);
  }

  private flowSettledSlow(step: FlowStep, ok: boolean, error: unknown): void {
    const i = step.index;
    this.current = undefined;
    if (!this.driving || this.chain.options.preciseTiming) this.slots[2 * i + 1] = this.stamp();
    const cold = this.cold;
    if (ok && cold === undefined && this.hooks === undefined) {
      this.slots[2 * i] = Status.DONE;
      this.index = i + 1;
      if (this.listening()) this.emitAt('flow:done', i);
      if (!this.driving) this.drive();
      return;
    }
    if (cold !== undefined && cold.halted && !ok) {
      // Interrupted, not failed: the flow is in doubt and runs again when the job resumes.
      this.slots[2 * i] = Status.NOT_RUN;
      this.resume();
      return;
    }
    const checkData = this.hooks?.checkData;
    if (ok && checkData !== undefined) {
      try {
        checkData(this.data);
      } catch (invalid) {
        ok = false;
        error = invalid;
      }
    }
    const emitting = this.listening();
    if (ok) {
      this.slots[2 * i] = Status.DONE;
      if (emitting) this.emitAt('flow:done', i);
      if (cold !== undefined && cold.canceled) this.failAt(i, this.canceledError());
      else this.index = i + 1;
    } else {
      this.slots[2 * i] = Status.FAILED;
      this.more().flowErrors[i] = error;
      if (emitting) this.chain.emitSafe('flow:fail', this.nameOf(i), i, error);
      // A timed-out step settles with its own FLOW_TIMEOUT error, which already names the flow.
      const failure =
        cold !== undefined && cold.canceled
          ? this.canceledError()
          : step.timedOut
            ? (error as FlowChainError)
            : this.flowFailure(i, error);
      this.failAt(i, failure);
    }
    this.continue(i);
  }

  rollbackSettled(step: RollbackStep, ok: boolean, error: unknown): void {
    const j = step.index;
    this.current = undefined;
    const cold = this.more();
    (cold.rbTimes as number[])[j] = this.stamp();
    if (cold.halted && !ok) {
      // Interrupted: this rollback is in doubt and runs again when the job resumes.
      this.slots[2 * j] = j in cold.flowErrors ? Status.FAILED : Status.DONE;
      this.resume();
      return;
    }
    if (ok) {
      this.slots[2 * j] = Status.ROLLED_BACK;
      if (this.listening()) this.emitAt('rollback:done', j);
    } else {
      this.slots[2 * j] = Status.ROLLBACK_FAILED;
      const failure = new FlowChainError(
        FlowChainErrorCode.ROLLBACK_FAILED,
        `Rollback of flow ${JSON.stringify(this.locationOf(j))} failed: ${describeThrown(error).replace(/\.$/, '')}. Unwinding went on with the previous flow.`,
        { cause: error, flowName: this.nameOf(j), flowIndex: j, flowCount: this.n },
      );
      cold.rollbackFailures[j] = failure;
      (this.error as FlowChainError).rollbackErrors.push(failure);
      if (this.listening()) this.chain.emitSafe('rollback:fail', this.nameOf(j), j, failure);
    }
    cold.rbIndex = j - 1;
    this.continue(j);
  }

  /** After a step of flow `index` settles: checkpoint if durable, then keep going. */
  private continue(index: number): void {
    const hooks = this.hooks;
    if (hooks !== undefined && hooks.afterStep !== undefined) {
      const pending = hooks.afterStep(this as ChainRun<unknown>, index);
      if (isThenable(pending)) {
        // The loop must not run on from an outcome that is not recorded yet.
        this.busy |= CHECKPOINTING;
        pending.then(
          () => {
            this.busy &= ~CHECKPOINTING;
            this.drive();
          },
          (error: unknown) => this.checkpointFailed(error),
        );
        return;
      }
    }
    this.resume();
  }

  /** Goes on driving, unless the loop is already running (it then picks the outcome up). */
  private resume(): void {
    if (!this.driving) this.drive();
  }

  private stopHalted(): boolean {
    const cold = this.more();
    this.phase = ENDED;
    cold.detach?.();
    this.failWith(cold.haltReason as FlowChainError);
    return false;
  }

  private checkpointFailed(error: unknown): void {
    // A durable run whose checkpoint write failed must not run on from unrecorded state.
    this.phase = ENDED;
    this.cold?.detach?.();
    this.failWith(
      error instanceof FlowChainError
        ? error
        : new FlowChainError(FlowChainErrorCode.STORE_FAILURE, `Checkpoint failed: ${describeThrown(error)}`, {
            cause: error,
          }),
    );
  }

  private skipped(i: number): boolean {
    this.slots[2 * i] = Status.SKIPPED;
    this.slots[2 * i + 1] = this.stamp();
    this.stage = this.firstStage();
    this.index = i + 1;
    if (this.listening()) this.emitAt('flow:skip', i);
    return true;
  }

  /** Waits for an asynchronous preCheck or skip verdict. */
  private wait(verdict: PromiseLike<unknown>, stage: number): boolean {
    const i = this.index;
    verdict.then(
      (value) => {
        if (stage === STAGE_PRECHECK) {
          if (value != null) this.failAt(i, this.preCheckFailure(i, value));
          else this.stage = STAGE_SKIP;
        } else if (value === true) {
          this.skipped(i);
        } else {
          this.stage = STAGE_RUN;
        }
        this.drive();
      },
      (error: unknown) => {
        this.failAt(
          i,
          stage === STAGE_PRECHECK
            ? this.preCheckFailure(i, error ?? new Error('preCheck rejected'))
            : this.flowFailure(i, error, 'its skip() rejected'),
        );
        this.drive();
      },
    );
    return false;
  }

  private failAt(index: number, error: FlowChainError): boolean {
    this.more().rollbackBegan = this.stamp();
    this.error = error;
    this.stage = this.firstStage();
    this.phase = ROLLBACK;
    this.more().rbIndex = this.chain.options.noRollback ? -1 : index;
    return true;
  }

  // ---- the end ----------------------------------------------------------------------

  private finish(): void {
    this.phase = ENDED;
    const cold = this.cold;
    if (cold !== undefined) {
      cold.detach?.();
      const parentStep = cold.parentRollback;
      if (parentStep !== undefined) {
        // A nested chain unwound for its parent: no handlers run a second time.
        parentStep.rollback();
        return;
      }
    }
    const chain = this.chain;
    const ok = this.error === undefined;
    if (this.listening()) {
      if (ok) chain.emitSafe('chain:done', this.data);
      else chain.emitSafe('chain:fail', this.error as FlowChainError);
    }
    const ext = chain.ext;
    if (ext === undefined || ((ok ? ext.done : ext.error) === undefined && ext.finally === undefined)) {
      this.end();
      return;
    }
    void this.runHandlers(ok);
  }

  private async runHandlers(ok: boolean): Promise<void> {
    const ext = this.chain.ext as ChainExtensions<Data>;
    try {
      const pending = ok ? ext.done?.(this.data) : ext.error?.(this.error as FlowChainError, this.data);
      if (isThenable(pending)) await pending;
    } catch (error) {
      this.handlerFailed(ok ? 'done' : 'error', error);
    }
    try {
      const pending = ext.finally?.();
      if (isThenable(pending)) await pending;
    } catch (error) {
      this.handlerFailed('finally', error);
    }
    this.end();
  }

  private handlerFailed(handler: 'done' | 'error' | 'finally', error: unknown): void {
    const cold = this.more();
    if (cold.handlerError === undefined) cold.handlerError = { handler, error };
    if (this.listening()) this.chain.emitSafe('handler:fail', handler, error);
  }

  private end(): void {
    const error = this.error;
    if (error !== undefined) {
      this.failWith(error);
      return;
    }
    const failed = this.cold?.handlerError;
    if (failed !== undefined) {
      this.failWith(
        new FlowChainError(
          FlowChainErrorCode.HANDLER_FAILED,
          `Every flow of chain ${JSON.stringify(this.chain.name)} completed, but its ${failed.handler} handler threw: ${describeThrown(failed.error)}.`,
          { cause: failed.error, details: { handler: failed.handler } },
        ),
      );
      return;
    }
    const settle = this.settle;
    if (typeof settle === 'function') settle(this.data);
    else settle.next();
  }

  private failWith(error: FlowChainError): void {
    const settle = this.settle;
    if (typeof settle === 'function') settle(new Rejection<Data>(error));
    else settle.fail(error);
  }

  // ---- errors -----------------------------------------------------------------------

  private flowFailure(i: number, error: unknown, how?: string): FlowChainError {
    const location = JSON.stringify(this.locationOf(i));
    const failure = new FlowChainError(
      FlowChainErrorCode.FLOW_FAILED,
      `Flow ${location} failed${how ? ` (${how})` : ''}: ${describeThrown(error)}`,
      { cause: error, flowName: this.nameOf(i), flowIndex: i, flowCount: this.n },
    );
    // Rollback failures of a nested chain are failures of this chain's unwinding too.
    if (isFlowChainError(error) && error.rollbackErrors.length > 0) failure.rollbackErrors.push(...error.rollbackErrors);
    return failure;
  }

  private preCheckFailure(i: number, verdict: unknown): FlowChainError {
    return new FlowChainError(
      FlowChainErrorCode.PRECHECK_FAILED,
      `preCheck stopped the chain before flow ${JSON.stringify(this.locationOf(i))}: ${describeThrown(verdict)}`,
      { cause: verdict, flowName: this.nameOf(i), flowIndex: i, flowCount: this.n },
    );
  }

  private setErrorFailure(cold: Cold<Data>): FlowChainError {
    const i = cold.setErrorIndex;
    return new FlowChainError(
      FlowChainErrorCode.FLOW_FAILED,
      `Flow ${JSON.stringify(this.locationOf(i))} set an error with setError(): ${describeThrown(cold.setErrorValue)}. Every flow ran; nothing was rolled back.`,
      { cause: cold.setErrorValue, flowName: this.nameOf(i), flowIndex: i, flowCount: this.n },
    );
  }

  private canceledError(): FlowChainError {
    const cold = this.more();
    if (cold.cancelError === undefined) {
      const reason = cold.cancelReason;
      const i = Math.min(this.index, this.n - 1);
      cold.cancelError = new FlowChainError(
        FlowChainErrorCode.CHAIN_CANCELED,
        `Chain ${JSON.stringify(this.chain.name)} was canceled${
          reason === undefined ? '' : `: ${describeThrown(reason)}`
        }; completed flows were rolled back.`,
        i >= 0 ? { cause: reason, flowName: this.nameOf(i), flowIndex: i, flowCount: this.n } : { cause: reason },
      );
    }
    return cold.cancelError;
  }

  private restore(resume: RunResume): void {
    for (let i = 0; i < this.n; i++) this.slots[2 * i] = resume.status[i] ?? Status.NOT_RUN;
    this.index = resume.index;
    if (resume.setError !== undefined) this.recordSetError(resume.setError.index, resume.setError.error);
    if (resume.skipRest === true) this.more().skipRest = true;
    if (resume.phase === 'rollback') {
      this.error = resume.error;
      this.phase = ROLLBACK;
      this.more().rbIndex = resume.index;
    }
  }

  private more(): Cold<Data> {
    return (this.cold ??= {
      canceled: false,
      cancelReason: undefined,
      cancelError: undefined,
      setErrorIndex: -1,
      setErrorValue: undefined,
      handlerError: undefined,
      parentRollback: undefined,
      detach: undefined,
      halted: false,
      haltReason: undefined,
      skipRest: false,
      rollbackBegan: undefined,
      staleWatches: 0,
      rbIndex: -1,
      rbTimes: undefined,
      inheritedTimeoutMs: undefined,
      inheritedRollbackTimeoutMs: undefined,
      flowErrors: [],
      rollbackFailures: [],
      children: [],
    });
  }

  /**
   * The time of a step boundary. An outcome that arrives while the loop is running came in
   * the same turn as the previous boundary, so it reuses that time (what the per-turn clock
   * would return anyway) instead of reading the clock; `preciseTiming` always reads it.
   */
  private stamp(): number {
    const last = 2 * this.flows.length + 1;
    if (this.chain.options.preciseTiming) return (this.slots[last] = preciseNow());
    if (this.driving) return this.slots[last] as number;
    return (this.slots[last] = now());
  }

  /** Emits a flow event (someone listens). */
  private emitAt(event: 'flow:start' | 'flow:done' | 'flow:skip' | 'rollback:start' | 'rollback:done', index: number): void {
    this.chain.emitSafe(event, this.nameOf(index), index);
  }

  private listening(): boolean {
    // eventemitter3 keeps a listener count; reading it keeps emission free when nobody listens.
    return (this.chain as unknown as { _eventsCount: number })._eventsCount !== 0;
  }
}

/**
 * Fresh slots start as copies of this: NOT_RUN and NaN for each flow, in a packed array of
 * doubles, so that a run's slots are one `slice()` (a block copy) rather than a loop of
 * stores, the element kind converted on the way. Grown to the longest chain seen, up to
 * TEMPLATE_FLOWS flows; longer chains (rare, and long enough to amortise it) fill a loop.
 */
let slotTemplate: number[] = [Number.NaN, Number.NaN];
const TEMPLATE_FLOWS = 4096;

/** Slots for `n` flows: NOT_RUN and NaN per flow, then two NaNs for the run's own times. */
function freshSlots(n: number): number[] {
  const length = 2 * n + 2;
  if (length <= slotTemplate.length) return slotTemplate.slice(0, length);
  if (n <= TEMPLATE_FLOWS) {
    const template = new Array<number>(length);
    template[0] = Number.NaN; // a double first, so the array holds doubles from the start
    for (let i = 0; i < length; i += 2) {
      template[i] = Status.NOT_RUN;
      template[i + 1] = Number.NaN;
    }
    slotTemplate = template.slice(); // packed, from the holey array the constructor made
    return template;
  }
  const slots = new Array<number>(length);
  slots[0] = Number.NaN;
  for (let i = 0; i < length; i += 2) {
    slots[i] = Status.NOT_RUN;
    slots[i + 1] = Number.NaN;
  }
  return slots;
}

/** An array of `n` copies of `value`; a loop beats `fill()` for the short arrays most chains have. */
function filled(n: number, value: number): number[] {
  const array = new Array<number>(n);
  for (let i = 0; i < n; i++) array[i] = value;
  return array;
}

/** A thenable that rejects: resolving a promise with it rejects that promise. */
class Rejection<Data> implements PromiseLike<Data> {
  constructor(private readonly error: FlowChainError) {}

  then<Fulfilled = Data, Rejected = never>(
    _onFulfilled?: ((value: Data) => Fulfilled | PromiseLike<Fulfilled>) | null,
    onRejected?: ((reason: unknown) => Rejected | PromiseLike<Rejected>) | null,
  ): PromiseLike<Fulfilled | Rejected> {
    onRejected?.(this.error);
    return this as unknown as PromiseLike<Fulfilled | Rejected>;
  }
}

/** Ignores a value's rejection, if it is a thenable (its outcome no longer matters). */
function silence(result: unknown): void {
  if (isThenable(result)) result.then(undefined, noop);
}

function noop(): void {}
