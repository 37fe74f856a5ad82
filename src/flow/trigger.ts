import { FlowChainError, FlowChainErrorCode, flowLocation } from '../errors.js';
import type { FlowTrigger, RollbackTrigger } from './flow.js';

/** What a step needs from the run it belongs to. @internal */
export interface StepHost {
  readonly n: number;
  readonly error: FlowChainError | undefined;
  nameOf(index: number): string;
  idempotencyKey(index: number): string | undefined;
  reportLate(index: number, error: FlowChainError): void;
  recordSetError(index: number, error: unknown): void;
  skipRestRollbacks(): void;
  flowSettled(step: FlowStep, ok: boolean, error: unknown): void;
  rollbackSettled(step: RollbackStep, ok: boolean, error: unknown): void;
  /** A step whose promise the run follows completed another way: skip that promise's settle. */
  abandonWatch(): void;
}

/** Running; nothing watched, or its promise followed by its own reactions. @internal */
export const PENDING = 0;
/** Completed by the flow (explicitly or through its promise). @internal */
export const COMPLETED = 1;
/** Timed out, or abandoned because the chain moved on; late completions are ignored. */
const ABANDONED = 2;
/** Running, its promise followed by the run's shared reactions (see ChainRun.watch). */
const WATCHED = 3;

/** What few steps need: a signal, a timeout, a remembered late call. Created on demand. */
interface StepExtra {
  controller: AbortController | undefined;
  aborted: boolean;
  abortReason: unknown;
  timer: ReturnType<typeof setTimeout> | undefined;
  lastLate: FlowChainError | undefined;
}

/**
 * What every step (a flow's run or its rollback) shares: exactly-once completion, a lazily
 * created AbortSignal, and an optional timeout. It is the one object the hot path allocates
 * per step, so it holds four fields; everything rare lives in `extra`, made on demand.
 * @internal
 */
abstract class Step {
  // Set by FlowStep's and RollbackStep's own constructors (see there); run and index never change.
  declare state: number;
  declare extra: StepExtra | undefined;
  declare run: StepHost;
  declare index: number;

  get flowName(): string {
    return this.run.nameOf(this.index);
  }

  get idempotencyKey(): string | undefined {
    return this.run.idempotencyKey(this.index);
  }

  get signal(): AbortSignal {
    // AbortController costs about a microsecond: create it only for flows that look.
    const extra = this.more();
    if (extra.controller === undefined) {
      extra.controller = new AbortController();
      if (extra.aborted) extra.controller.abort(extra.abortReason);
    }
    return extra.controller.signal;
  }

  get pending(): boolean {
    return this.state === PENDING || this.state === WATCHED;
  }

  /** Settled by its timeout rather than by the flow. */
  get timedOut(): boolean {
    return this.state === ABANDONED;
  }

  abort(reason: unknown): void {
    const extra = this.more();
    if (extra.aborted) return;
    extra.aborted = true;
    extra.abortReason = reason;
    extra.controller?.abort(reason);
  }

  /** Marks this step's promise as followed by the run's shared reactions. */
  watchedByRun(): void {
    this.state = WATCHED;
  }

  /**
   * Follows the step's thenable with reactions of its own (the rare path). They guard the
   * step, so a thenable that calls back twice, or from then() itself, completes it once;
   * a then() that throws fails it, as `await` would.
   */
  watch(result: PromiseLike<unknown>): void {
    try {
      result.then(
        () => {
          if (this.pending) this.settle(COMPLETED, true, undefined);
        },
        (error: unknown) => {
          if (this.pending) this.settle(COMPLETED, false, error);
        },
      );
    } catch (error) {
      if (this.pending) this.settle(COMPLETED, false, error);
    }
  }

  /** The run's shared reaction saw this step's promise settle. */
  settleWatched(ok: boolean, error: unknown): void {
    this.state = PENDING;
    this.settle(COMPLETED, ok, error);
  }

  armTimeout(ms: number): void {
    this.more().timer = setTimeout(onStepTimeout, ms, this, ms);
  }

  timeout(ms: number): void {
    if (!this.pending) return;
    const error = new FlowChainError(
      FlowChainErrorCode.FLOW_TIMEOUT,
      `${this.describe()} did not finish within ${ms} ms; its signal was aborted. Raise \`timeoutMs\` or make it finish sooner.`,
      { flowName: this.flowName, flowIndex: this.index, flowCount: this.run.n, details: { timeoutMs: ms } },
    );
    // Abandon before aborting: an abort listener that completes the step (the usual
    // `signal.onabort = () => trigger.fail(signal.reason)`) must be a late call, not a
    // second settle that would roll back and run the handlers twice.
    const watched = this.state === WATCHED;
    this.state = ABANDONED;
    if (watched) this.run.abandonWatch();
    this.abort(error);
    this.settle(ABANDONED, false, error);
  }

  /** An explicit `next`/`fail`/`rollback` call. */
  call(ok: boolean, error: unknown, method: string): void {
    const state = this.state;
    if (state === PENDING) {
      this.settle(COMPLETED, ok, error);
      return;
    }
    if (state === WATCHED) {
      // The run's shared reaction will still see the promise settle: it must skip it.
      this.run.abandonWatch();
      this.settle(COMPLETED, ok, error);
      return;
    }
    const late = new FlowChainError(
      FlowChainErrorCode.FLOW_ALREADY_COMPLETED,
      `${this.describe()} called \`${method}()\` after it had already ${
        state === ABANDONED ? 'timed out' : 'completed'
      }; the call was ignored. Call exactly one of next()/fail() (rollback() in a rollback) once.`,
      { flowName: this.flowName, flowIndex: this.index, flowCount: this.run.n, details: { method } },
    );
    this.run.reportLate(this.index, late);
    // A timed-out step's late completion is expected and harmless; a second completion is a bug.
    if (state === COMPLETED) {
      this.more().lastLate = late;
      throw late;
    }
  }

  /** A synchronous throw from the step's function. */
  threw(error: unknown): void {
    if (this.state === PENDING) {
      this.settle(COMPLETED, false, error);
      return;
    }
    // The FLOW_ALREADY_COMPLETED this step threw at a second call, escaping run(): reported once.
    if (this.extra !== undefined && error === this.extra.lastLate) return;
    this.run.reportLate(
      this.index,
      new FlowChainError(
        FlowChainErrorCode.FLOW_ALREADY_COMPLETED,
        `${this.describe()} threw after it had already completed; the error was ignored.`,
        { cause: error, flowName: this.flowName, flowIndex: this.index, flowCount: this.run.n },
      ),
    );
  }

  private settle(state: number, ok: boolean, error: unknown): void {
    this.state = state;
    const extra = this.extra;
    if (extra !== undefined && extra.timer !== undefined) {
      clearTimeout(extra.timer);
      extra.timer = undefined;
    }
    this.onSettled(ok, error);
  }

  private more(): StepExtra {
    return (this.extra ??= { controller: undefined, aborted: false, abortReason: undefined, timer: undefined, lastLate: undefined });
  }

  describe(): string {
    return `Flow ${JSON.stringify(flowLocation(this.flowName, this.index, this.run.n))}`;
  }

  abstract onSettled(ok: boolean, error: unknown): void;
}

function onStepTimeout(step: Step, ms: number): void {
  step.timeout(ms);
}

/*
 * FlowStep and RollbackStep inherit Step's methods through their prototypes, not through
 * `extends`: a derived class constructs through super(), a second call that V8 does not
 * always inline, and a step is made for every flow. Each sets its four fields itself.
 */

/** The trigger a flow's `run` receives. @internal */
export interface FlowStep extends Step {}
/** @internal */
export class FlowStep implements FlowTrigger {
  constructor(run: StepHost, index: number) {
    this.state = PENDING;
    this.extra = undefined;
    this.run = run;
    this.index = index;
  }

  next(): void {
    // The hot path of a callback-style flow, without the general call() machinery.
    if (this.state === PENDING && this.extra === undefined) {
      this.state = COMPLETED;
      this.run.flowSettled(this, true, undefined);
      return;
    }
    this.call(true, undefined, 'next');
  }

  fail(error?: unknown): void {
    this.call(false, error, 'fail');
  }

  setError(error: unknown): void {
    this.run.recordSetError(this.index, error);
  }

  onSettled(ok: boolean, error: unknown): void {
    this.run.flowSettled(this, ok, error);
  }
}

/** The trigger a flow's `rollback` receives. @internal */
export interface RollbackStep extends Step {}
/** @internal */
export class RollbackStep implements RollbackTrigger {
  constructor(run: StepHost, index: number) {
    this.state = PENDING;
    this.extra = undefined;
    this.run = run;
    this.index = index;
  }

  rollback(): void {
    this.call(true, undefined, 'rollback');
  }

  skipRestRollbacks(): void {
    this.run.skipRestRollbacks();
  }

  get error(): FlowChainError {
    return this.run.error as FlowChainError;
  }

  describe(): string {
    return `Rollback of ${Step.prototype.describe.call(this).slice('Flow '.length)}`;
  }

  onSettled(ok: boolean, error: unknown): void {
    this.run.rollbackSettled(this, ok, error);
  }
}

Object.setPrototypeOf(FlowStep.prototype, Step.prototype);
Object.setPrototypeOf(RollbackStep.prototype, Step.prototype);

/** Whether a value is a thenable (a promise or promise-like). @internal */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
