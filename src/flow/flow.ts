import type { FlowChainError } from '../errors.js';

/**
 * One step of a {@link FlowChain}: it runs, and can be rolled back if a later step fails.
 *
 * Finish `run` either by calling `trigger.next()` / `trigger.fail(error)` (callback style)
 * or by returning a promise (promise style: fulfilment means next, rejection means fail).
 * A synchronous throw means fail. Rollbacks alike: `trigger.rollback()` or a settled promise.
 *
 * @example
 * ```ts
 * import type { Flow } from 'flowchain';
 * type Data = { volumeUuid: string; allocated?: boolean };
 * const allocate: Flow<Data> = {
 *   name: 'allocate',
 *   run(trigger, data) { data.allocated = true; trigger.next(); },
 *   rollback(trigger, data) { data.allocated = false; trigger.rollback(); },
 * };
 * ```
 */
export interface Flow<Data = FlowData> {
  /** Shown in errors, events and the trace. @default `#<position>` */
  readonly name?: string;
  /** Does the work. Complete with `trigger.next()`/`trigger.fail()` or by returning a promise. */
  run(trigger: FlowTrigger, data: Data): void | PromiseLike<unknown>;
  /** Undoes the work; called when this flow or a later one fails. Optional. */
  rollback?(trigger: RollbackTrigger, data: Data): void | PromiseLike<unknown>;
  /** Returns true (or a promise of true) to pass this flow over; a skipped flow is never rolled back. */
  skip?(data: Data): boolean | PromiseLike<boolean>;
  /**
   * Milliseconds `run` may take before it fails with `FLOW_TIMEOUT` and its signal aborts.
   * `0` disables the chain's default `timeoutMs` for this flow.
   * @default the chain's `timeoutMs` (none)
   */
  readonly timeoutMs?: number;
}

/** The data object every flow of a chain shares, unless the chain is given a type. */
export type FlowData = Record<string, unknown>;

/**
 * What a flow's `run` receives to report its outcome. Each flow gets its own trigger:
 * the first `next()`/`fail()` wins; a second call throws `FLOW_ALREADY_COMPLETED`.
 *
 * @example
 * ```ts
 * import type { Flow } from 'flowchain';
 * const copy: Flow = {
 *   name: 'copy',
 *   run(trigger) {
 *     const timer = setTimeout(() => trigger.next(), 10);
 *     trigger.signal.addEventListener('abort', () => { clearTimeout(timer); trigger.fail(trigger.signal.reason); });
 *   },
 * };
 * ```
 */
export interface FlowTrigger {
  /** Completes the flow successfully; the chain moves to the next flow. */
  next(): void;
  /** Fails the flow; the chain starts rolling back, this flow first. */
  fail(error?: unknown): void;
  /** Records an error but lets the chain go on; at the end it takes the error path without rollback. */
  setError(error: unknown): void;
  /** Aborts when the flow times out or the chain is canceled. */
  readonly signal: AbortSignal;
  /** The flow's name. */
  readonly flowName: string;
  /** The flow's zero-based position in its chain. */
  readonly index: number;
  /**
   * A key stable across re-executions of this flow in a durable job (`jobUuid:flowName:attempt`),
   * for making side effects idempotent. `undefined` outside durable chains.
   */
  readonly idempotencyKey: string | undefined;
}

/**
 * What a flow's `rollback` receives to report that the undo is complete.
 *
 * @example
 * ```ts
 * import type { Flow } from 'flowchain';
 * const reserve: Flow = {
 *   name: 'reserve',
 *   run: (trigger) => trigger.next(),
 *   rollback(trigger) {
 *     if (trigger.error.code === 'CHAIN_CANCELED') trigger.skipRestRollbacks();
 *     trigger.rollback();
 *   },
 * };
 * ```
 */
export interface RollbackTrigger {
  /** Completes this rollback; unwinding continues with the previous flow. */
  rollback(): void;
  /** Stops the unwinding after this rollback: earlier flows are not rolled back. */
  skipRestRollbacks(): void;
  /** Aborts when the rollback times out. */
  readonly signal: AbortSignal;
  /** Why the chain is rolling back. */
  readonly error: FlowChainError;
  /** The flow's name. */
  readonly flowName: string;
  /** The flow's zero-based position in its chain. */
  readonly index: number;
  /** Same key as the flow's forward run had; see {@link FlowTrigger.idempotencyKey}. */
  readonly idempotencyKey: string | undefined;
}
