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
}

const PENDING = 0;
const COMPLETED = 1;
/** Timed out, or abandoned because the chain moved on; late completions are ignored. */
const ABANDONED = 2;

/**
 * What every step (a flow's run or its rollback) shares: exactly-once completion, a lazily
 * created AbortSignal, and an optional timeout. One small object per step; no closures
 * unless the step returns a promise or arms a timeout.
 * @internal
 */
abstract class Step {
  state: number = PENDING;
  private controller: AbortController | undefined = undefined;
  private abortReason: unknown = undefined;
  private aborted = false;
  private timer: ReturnType<typeof setTimeout> | undefined = undefined;
  private lastLate: FlowChainError | undefined = undefined;

  constructor(
    readonly run: StepHost,
    readonly index: number,
  ) {}

  get flowName(): string {
    return this.run.nameOf(this.index);
  }

  get idempotencyKey(): string | undefined {
    return this.run.idempotencyKey(this.index);
  }

  get signal(): AbortSignal {
    // AbortController costs about a microsecond: create it only for flows that look.
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  get pending(): boolean {
    return this.state === PENDING;
  }

  /** Settled by its timeout rather than by the flow. */
  get timedOut(): boolean {
    return this.state === ABANDONED;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }

  /** Follows a promise returned by the step; settles after an explicit call are ignored. */
  watch(result: PromiseLike<unknown>): void {
    result.then(
      () => {
        if (this.state === PENDING) this.complete(true, undefined);
      },
      (error: unknown) => {
        if (this.state === PENDING) this.complete(false, error);
      },
    );
  }

  armTimeout(ms: number): void {
    this.timer = setTimeout(onStepTimeout, ms, this, ms);
  }

  timeout(ms: number): void {
    if (this.state !== PENDING) return;
    const error = new FlowChainError(
      FlowChainErrorCode.FLOW_TIMEOUT,
      `${this.describe()} did not finish within ${ms} ms; its signal was aborted. Raise \`timeoutMs\` or make it finish sooner.`,
      { flowName: this.flowName, flowIndex: this.index, flowCount: this.run.n, details: { timeoutMs: ms } },
    );
    // Abandon before aborting: an abort listener that completes the step (the usual
    // `signal.onabort = () => trigger.fail(signal.reason)`) must be a late call, not a
    // second settle that would roll back and run the handlers twice.
    this.state = ABANDONED;
    this.abort(error);
    this.settle(ABANDONED, false, error);
  }

  /** An explicit `next`/`fail`/`rollback` call. */
  protected call(ok: boolean, error: unknown, method: string): void {
    if (this.state === PENDING) {
      this.complete(ok, error);
      return;
    }
    const late = new FlowChainError(
      FlowChainErrorCode.FLOW_ALREADY_COMPLETED,
      `${this.describe()} called \`${method}()\` after it had already ${
        this.state === ABANDONED ? 'timed out' : 'completed'
      }; the call was ignored. Call exactly one of next()/fail() (rollback() in a rollback) once.`,
      { flowName: this.flowName, flowIndex: this.index, flowCount: this.run.n, details: { method } },
    );
    this.run.reportLate(this.index, late);
    // A timed-out step's late completion is expected and harmless; a second completion is a bug.
    if (this.state === COMPLETED) {
      this.lastLate = late;
      throw late;
    }
  }

  /** A synchronous throw from the step's function. */
  threw(error: unknown): void {
    if (this.state === PENDING) {
      this.complete(false, error);
      return;
    }
    // The FLOW_ALREADY_COMPLETED this step threw at a second call, escaping run(): reported once.
    if (error === this.lastLate) return;
    this.run.reportLate(
      this.index,
      new FlowChainError(
        FlowChainErrorCode.FLOW_ALREADY_COMPLETED,
        `${this.describe()} threw after it had already completed; the error was ignored.`,
        { cause: error, flowName: this.flowName, flowIndex: this.index, flowCount: this.run.n },
      ),
    );
  }

  private complete(ok: boolean, error: unknown): void {
    this.settle(COMPLETED, ok, error);
  }

  private settle(state: number, ok: boolean, error: unknown): void {
    this.state = state;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.onSettled(ok, error);
  }

  protected describe(): string {
    return `Flow ${JSON.stringify(flowLocation(this.flowName, this.index, this.run.n))}`;
  }

  protected abstract onSettled(ok: boolean, error: unknown): void;
}

function onStepTimeout(step: Step, ms: number): void {
  step.timeout(ms);
}

/** The trigger a flow's `run` receives. @internal */
export class FlowStep extends Step implements FlowTrigger {
  next(): void {
    this.call(true, undefined, 'next');
  }

  fail(error?: unknown): void {
    this.call(false, error, 'fail');
  }

  setError(error: unknown): void {
    this.run.recordSetError(this.index, error);
  }

  protected onSettled(ok: boolean, error: unknown): void {
    this.run.flowSettled(this, ok, error);
  }
}

/** The trigger a flow's `rollback` receives. @internal */
export class RollbackStep extends Step implements RollbackTrigger {
  rollback(): void {
    this.call(true, undefined, 'rollback');
  }

  skipRestRollbacks(): void {
    this.run.skipRestRollbacks();
  }

  get error(): FlowChainError {
    return this.run.error as FlowChainError;
  }

  protected override describe(): string {
    return `Rollback of ${super.describe().slice('Flow '.length)}`;
  }

  protected onSettled(ok: boolean, error: unknown): void {
    this.run.rollbackSettled(this, ok, error);
  }
}

/** Whether a value is a thenable (a promise or promise-like). @internal */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
