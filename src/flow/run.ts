import {
  FlowChainError,
  FlowChainErrorCode,
  describeThrown,
  flowLocation,
  isFlowChainError,
} from '../errors.js';
import { now, preciseNow } from './clock.js';
import type { FlowChain } from './chain.js';
import type { Flow, RollbackTrigger } from './flow.js';
import { FlowStep, RollbackStep, isThenable, type StepHost } from './trigger.js';

/*
 * The execution engine. A chain starts once, so one ChainRun holds all run state: the
 * position, one status number per flow and the timings. The hot path allocates one small
 * trigger object per step (and the two promise reactions only when the flow returns a
 * promise); it never recurses: `drive()` is a loop, and a completion that arrives while
 * the loop is running only records the outcome, so 1,000,000 synchronous flows use
 * constant stack. Rollback walks back over the status array; there is no undo stack.
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

const FORWARD = 0;
const ROLLBACK = 1;
const FINISHING = 2;
const ENDED = 3;

/** Where a flow stands before it runs: marshal + preCheck, then skip, then run. */
const STAGE_PRECHECK = 0;
const STAGE_SKIP = 1;
const STAGE_RUN = 2;

/**
 * Marks a flow that unwinds other flows (a nested chain, a parallel group). Each inner
 * rollback has its own timeout; one armed for the whole unwinding would let the parent move
 * on, out of order, while the inner flows are still rolling back. @internal
 */
export const COMPOSITE: unique symbol = Symbol('flowchain.composite');

/** How a run reports its end: to `start()`'s promise, or to a parent chain's trigger. @internal */
export interface RunSettler<Data> {
  resolve(data: Data): void;
  reject(error: FlowChainError): void;
}

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
}

/** @internal */
export class ChainRun<Data> implements StepHost {
  readonly n: number;
  readonly status: number[];
  /** `[start, end]` of each flow's run, milliseconds since the epoch. */
  readonly times: number[];
  /** `[start, end]` of each flow's rollback, allocated when the chain fails. */
  rbTimes: number[] | undefined = undefined;
  /** The error each flow's run failed with (sparse). */
  readonly flowErrors: unknown[] = [];
  /** The ROLLBACK_FAILED error of each flow whose rollback failed (sparse). */
  readonly rollbackFailures: FlowChainError[] = [];
  /** Traces of nested chains and parallel groups, by flow index (sparse). */
  readonly children: ChainRun<Data>[][] = [];
  error: FlowChainError | undefined = undefined;

  index = 0;
  private stage = STAGE_PRECHECK;
  private rbIndex = -1;
  private phase = FORWARD;
  private current: FlowStep | RollbackStep | undefined = undefined;
  private driving = false;
  private checkpointing = false;
  private halted = false;
  private haltReason: unknown = undefined;
  private skipRest = false;
  private canceled = false;
  private cancelReason: unknown = undefined;
  private cancelError: FlowChainError | undefined = undefined;
  private setErrorIndex = -1;
  private setErrorValue: unknown = undefined;
  private handlerError: unknown = undefined;
  private readonly clock: () => number;
  private readonly timeoutMs: number;
  private readonly rollbackTimeoutMs: number;
  /** Set when this run rolls back on behalf of a parent chain that failed later. */
  private parentRollback: RollbackTrigger | undefined = undefined;
  private detach: (() => void) | undefined = undefined;

  constructor(
    readonly chain: FlowChain<Data>,
    readonly data: Data,
    readonly flows: Flow<Data>[],
    private readonly settler: RunSettler<Data>,
    inherited: { timeoutMs: number; rollbackTimeoutMs: number } | undefined,
    readonly hooks: RunHooks | undefined,
  ) {
    const n = flows.length;
    this.n = n;
    this.status = new Array<number>(n).fill(Status.NOT_RUN);
    this.times = new Array<number>(2 * n).fill(0);
    const options = chain.options;
    this.clock = options.preciseTiming ? preciseNow : now;
    this.timeoutMs = options.timeoutMs ?? inherited?.timeoutMs ?? 0;
    this.rollbackTimeoutMs = options.rollbackTimeoutMs ?? inherited?.rollbackTimeoutMs ?? 0;
  }

  /** Inherited timeouts for nested chains and parallel members. */
  get timeouts(): { timeoutMs: number; rollbackTimeoutMs: number } {
    return { timeoutMs: this.timeoutMs, rollbackTimeoutMs: this.rollbackTimeoutMs };
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
        this.detach = () => signal.removeEventListener('abort', onAbort);
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
    this.parentRollback = step;
    this.error = step.error;
    this.skipRest = false;
    this.phase = ROLLBACK;
    this.rbIndex = this.n - 1;
    this.rbTimes ??= new Array<number>(2 * this.n).fill(0);
    this.drive();
  }

  cancel(reason: unknown): boolean {
    if (this.phase !== FORWARD || this.canceled) return false;
    this.canceled = true;
    this.cancelReason = reason;
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
    if (this.phase === ENDED || this.halted) return false;
    this.halted = true;
    this.haltReason = reason;
    const step = this.current;
    if (step !== undefined && step.pending) step.abort(reason);
    return true;
  }

  /** Where the run stands, for a checkpoint. */
  snapshot(): { status: number[]; phase: 'forward' | 'rollback'; index: number } {
    const rollingBack = this.phase === ROLLBACK || (this.phase !== FORWARD && this.error !== undefined);
    return { status: this.status.slice(), phase: rollingBack ? 'rollback' : 'forward', index: rollingBack ? this.rbIndex : this.index };
  }

  skipRestRollbacks(): void {
    this.skipRest = true;
  }

  recordSetError(index: number, error: unknown): void {
    // ZStack keeps the last setError; we keep the first, the root of what went wrong.
    if (this.setErrorIndex < 0) {
      this.setErrorIndex = index;
      this.setErrorValue = error;
    }
  }

  reportLate(index: number, error: FlowChainError): void {
    if (this.listening()) this.chain.emitSafe('flow:late', this.nameOf(index), index, error);
  }

  // ---- the loop ---------------------------------------------------------------------

  drive(): void {
    if (this.driving) return;
    this.driving = true;
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
      this.driving = false;
    }
  }

  /** Advances one flow; returns false when it must wait for something asynchronous. */
  private forward(): boolean {
    if (this.halted) return this.stopHalted();
    const i = this.index;
    if (this.canceled) return this.failAt(i, this.canceledError());
    if (i >= this.n) {
      if (this.setErrorIndex >= 0) this.error = this.setErrorFailure();
      this.phase = FINISHING;
      return true;
    }
    const chain = this.chain;
    if (this.stage === STAGE_PRECHECK) {
      const marshaller = chain.flowMarshaller;
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
            this.flows[i] = chain.checkFlow(replacement, 'marshaller result');
          } catch (error) {
            return this.failAt(i, this.flowFailure(i, error, 'its marshaller returned an invalid flow'));
          }
        }
      }
      const preCheck = chain.preCheckFn;
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
    if (this.stage === STAGE_SKIP) {
      if (flow.skip !== undefined) {
        let skip: unknown;
        try {
          skip = flow.skip(this.data);
        } catch (error) {
          return this.failAt(i, this.flowFailure(i, error, 'its skip() threw'));
        }
        if (isThenable(skip)) return this.wait(skip, STAGE_SKIP);
        if (skip === true) return this.skipped(i);
      }
    }
    this.stage = STAGE_PRECHECK;

    this.hooks?.beforeStep?.(this as ChainRun<unknown>, i);
    const step = new FlowStep(this, i);
    this.current = step;
    this.status[i] = Status.RUNNING;
    this.times[2 * i] = this.clock();
    if (this.listening()) chain.emitSafe('flow:start', this.nameOf(i), i);
    let result: unknown;
    try {
      result = flow.run(step, this.data);
    } catch (error) {
      step.threw(error);
      return !this.checkpointing;
    }
    if (!step.pending) {
      if (isThenable(result)) silence(result);
      return !this.checkpointing;
    }
    if (isThenable(result)) step.watch(result);
    const timeoutMs = flow.timeoutMs ?? this.timeoutMs;
    if (timeoutMs > 0 && step.pending) step.armTimeout(timeoutMs);
    return false;
  }

  /** Unwinds one flow; returns false when it must wait. */
  private backward(): boolean {
    if (this.halted) return this.stopHalted();
    let j = this.rbIndex;
    let flow: Flow<Data> | undefined;
    for (;;) {
      if (j < 0 || this.skipRest) {
        this.phase = FINISHING;
        return true;
      }
      const s = this.status[j];
      flow = this.flows[j];
      if ((s === Status.DONE || s === Status.FAILED) && flow?.rollback !== undefined) break;
      j--;
      this.rbIndex = j;
    }
    this.hooks?.beforeStep?.(this as ChainRun<unknown>, j);
    const step = new RollbackStep(this, j);
    this.current = step;
    this.status[j] = Status.ROLLING_BACK;
    (this.rbTimes as number[])[2 * j] = this.clock();
    if (this.listening()) this.chain.emitSafe('rollback:start', this.nameOf(j), j);
    let result: unknown;
    try {
      result = (flow as Flow<Data> & Required<Pick<Flow<Data>, 'rollback'>>).rollback(step, this.data);
    } catch (error) {
      step.threw(error);
      return !this.checkpointing;
    }
    if (!step.pending) {
      if (isThenable(result)) silence(result);
      return !this.checkpointing;
    }
    if (isThenable(result)) step.watch(result);
    if (this.rollbackTimeoutMs > 0 && step.pending && (flow as { [COMPOSITE]?: boolean })[COMPOSITE] !== true) {
      step.armTimeout(this.rollbackTimeoutMs);
    }
    return false;
  }

  // ---- outcomes ---------------------------------------------------------------------

  flowSettled(step: FlowStep, ok: boolean, error: unknown): void {
    const i = step.index;
    this.current = undefined;
    this.times[2 * i + 1] = this.clock();
    if (this.halted && !ok) {
      // Interrupted, not failed: the flow is in doubt and runs again when the job resumes.
      this.status[i] = Status.NOT_RUN;
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
      this.status[i] = Status.DONE;
      if (emitting) this.chain.emitSafe('flow:done', this.nameOf(i), i);
      if (this.canceled) this.failAt(i, this.canceledError());
      else this.index = i + 1;
    } else {
      this.status[i] = Status.FAILED;
      this.flowErrors[i] = error;
      if (emitting) this.chain.emitSafe('flow:fail', this.nameOf(i), i, error);
      // A timed-out step settles with its own FLOW_TIMEOUT error, which already names the flow.
      const failure = this.canceled
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
    (this.rbTimes as number[])[2 * j + 1] = this.clock();
    if (this.halted && !ok) {
      // Interrupted: this rollback is in doubt and runs again when the job resumes.
      this.status[j] = j in this.flowErrors ? Status.FAILED : Status.DONE;
      this.resume();
      return;
    }
    if (ok) {
      this.status[j] = Status.ROLLED_BACK;
      if (this.listening()) this.chain.emitSafe('rollback:done', this.nameOf(j), j);
    } else {
      this.status[j] = Status.ROLLBACK_FAILED;
      const failure = new FlowChainError(
        FlowChainErrorCode.ROLLBACK_FAILED,
        `Rollback of flow ${JSON.stringify(this.locationOf(j))} failed: ${describeThrown(error).replace(/\.$/, '')}. Unwinding went on with the previous flow.`,
        { cause: error, flowName: this.nameOf(j), flowIndex: j, flowCount: this.n },
      );
      this.rollbackFailures[j] = failure;
      (this.error as FlowChainError).rollbackErrors.push(failure);
      if (this.listening()) this.chain.emitSafe('rollback:fail', this.nameOf(j), j, failure);
    }
    this.rbIndex = j - 1;
    this.continue(j);
  }

  /** After a step of flow `index` settles: checkpoint if durable, then keep going. */
  private continue(index: number): void {
    const afterStep = this.hooks?.afterStep;
    if (afterStep !== undefined) {
      const pending = afterStep(this as ChainRun<unknown>, index);
      if (isThenable(pending)) {
        // The loop must not run on from an outcome that is not recorded yet.
        this.checkpointing = true;
        pending.then(
          () => {
            this.checkpointing = false;
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
    this.phase = ENDED;
    this.detach?.();
    this.settler.reject(this.haltReason as FlowChainError);
    return false;
  }

  private checkpointFailed(error: unknown): void {
    // A durable run whose checkpoint write failed must not run on from unrecorded state.
    this.phase = ENDED;
    this.detach?.();
    this.settler.reject(
      error instanceof FlowChainError
        ? error
        : new FlowChainError(FlowChainErrorCode.STORE_FAILURE, `Checkpoint failed: ${describeThrown(error)}`, {
            cause: error,
          }),
    );
  }

  private skipped(i: number): boolean {
    this.status[i] = Status.SKIPPED;
    const t = this.clock();
    this.times[2 * i] = t;
    this.times[2 * i + 1] = t;
    this.stage = STAGE_PRECHECK;
    this.index = i + 1;
    if (this.listening()) this.chain.emitSafe('flow:skip', this.nameOf(i), i);
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
    this.error = error;
    this.stage = STAGE_PRECHECK;
    this.phase = ROLLBACK;
    this.rbIndex = this.chain.options.noRollback ? -1 : index;
    this.rbTimes = new Array<number>(2 * this.n).fill(0);
    return true;
  }

  // ---- the end ----------------------------------------------------------------------

  private finish(): void {
    this.phase = ENDED;
    this.detach?.();
    const parentStep = this.parentRollback;
    if (parentStep !== undefined) {
      // A nested chain unwound for its parent: no handlers run a second time.
      parentStep.rollback();
      return;
    }
    const chain = this.chain;
    const ok = this.error === undefined;
    if (this.listening()) {
      if (ok) chain.emitSafe('chain:done', this.data);
      else chain.emitSafe('chain:fail', this.error as FlowChainError);
    }
    const handler = ok ? chain.doneHandler : chain.errorHandler;
    if (handler === undefined && chain.finallyHandler === undefined) {
      this.end();
      return;
    }
    void this.runHandlers(ok);
  }

  private async runHandlers(ok: boolean): Promise<void> {
    const chain = this.chain;
    try {
      const pending = ok
        ? chain.doneHandler?.(this.data)
        : chain.errorHandler?.(this.error as FlowChainError, this.data);
      if (isThenable(pending)) await pending;
    } catch (error) {
      this.handlerFailed(ok ? 'done' : 'error', error);
    }
    try {
      const pending = chain.finallyHandler?.();
      if (isThenable(pending)) await pending;
    } catch (error) {
      this.handlerFailed('finally', error);
    }
    this.end();
  }

  private handlerFailed(handler: 'done' | 'error' | 'finally', error: unknown): void {
    if (this.handlerError === undefined) this.handlerError = { handler, error };
    if (this.listening()) this.chain.emitSafe('handler:fail', handler, error);
  }

  private end(): void {
    const error = this.error;
    if (error !== undefined) {
      this.settler.reject(error);
      return;
    }
    const failed = this.handlerError as { handler: string; error: unknown } | undefined;
    if (failed !== undefined) {
      this.settler.reject(
        new FlowChainError(
          FlowChainErrorCode.HANDLER_FAILED,
          `Every flow of chain ${JSON.stringify(this.chain.name)} completed, but its ${failed.handler} handler threw: ${describeThrown(failed.error)}.`,
          { cause: failed.error, details: { handler: failed.handler } },
        ),
      );
      return;
    }
    this.settler.resolve(this.data);
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

  private setErrorFailure(): FlowChainError {
    const i = this.setErrorIndex;
    return new FlowChainError(
      FlowChainErrorCode.FLOW_FAILED,
      `Flow ${JSON.stringify(this.locationOf(i))} set an error with setError(): ${describeThrown(this.setErrorValue)}. Every flow ran; nothing was rolled back.`,
      { cause: this.setErrorValue, flowName: this.nameOf(i), flowIndex: i, flowCount: this.n },
    );
  }

  private canceledError(): FlowChainError {
    if (this.cancelError === undefined) {
      const reason = this.cancelReason;
      const i = Math.min(this.index, this.n - 1);
      this.cancelError = new FlowChainError(
        FlowChainErrorCode.CHAIN_CANCELED,
        `Chain ${JSON.stringify(this.chain.name)} was canceled${
          reason === undefined ? '' : `: ${describeThrown(reason)}`
        }; completed flows were rolled back.`,
        i >= 0 ? { cause: reason, flowName: this.nameOf(i), flowIndex: i, flowCount: this.n } : { cause: reason },
      );
    }
    return this.cancelError;
  }

  private restore(resume: RunResume): void {
    for (let i = 0; i < this.n; i++) this.status[i] = resume.status[i] ?? Status.NOT_RUN;
    this.index = resume.index;
    if (resume.phase === 'rollback') {
      this.error = resume.error;
      this.phase = ROLLBACK;
      this.rbIndex = resume.index;
      this.rbTimes = new Array<number>(2 * this.n).fill(0);
    }
  }

  private listening(): boolean {
    // eventemitter3 keeps a listener count; reading it keeps emission free when nobody listens.
    return (this.chain as unknown as { _eventsCount: number })._eventsCount !== 0;
  }
}

function silence(result: PromiseLike<unknown>): void {
  result.then(undefined, noop);
}

function noop(): void {}
