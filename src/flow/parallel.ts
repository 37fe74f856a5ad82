import { FlowChainError, FlowChainErrorCode, describeThrown, invalidArgument, isFlowChainError } from '../errors.js';
import { FlowChain } from './chain.js';
import type { Flow, FlowTrigger, RollbackTrigger } from './flow.js';
import { COMPOSITE, type ChainRun } from './run.js';

/**
 * Options of a parallel group ({@link FlowChain.parallel}).
 *
 * @example
 * ```ts
 * import { FlowChain } from 'flowchain';
 * const chain = new FlowChain().parallel(
 *   [{ name: 'a', run: (t) => t.next() }, { name: 'b', run: async () => {} }],
 *   { name: 'prepare-hosts', concurrency: 2 },
 * );
 * ```
 */
export interface ParallelOptions {
  /** The group's name in errors, events and the trace. @default "parallel" */
  name?: string;
  /** How many members run at once. @default Infinity */
  concurrency?: number;
}

/**
 * A group of flows run concurrently as one flow of a chain. Each member runs as a one-flow
 * nested chain, so it has the same exactly-once completion, timeout and signal as any flow.
 * On the first failure the running members' signals abort, no new member starts, and once
 * every running member has settled the group fails; members that failed or were aborted have
 * rolled themselves back by then, and the group's own rollback undoes the members that
 * completed, in reverse start order.
 * @internal
 */
export class ParallelFlow<Data> implements Flow<Data> {
  readonly name: string;
  readonly timeoutMs = 0;
  readonly [COMPOSITE] = true;
  readonly concurrency: number;
  private readonly executions = new WeakMap<object, ParallelRun<Data>>();

  constructor(
    readonly members: readonly Flow<Data>[],
    options: ParallelOptions,
  ) {
    if (options === null || typeof options !== 'object') throw invalidArgument('options', 'an object', options);
    const { name, concurrency } = options;
    if (name !== undefined && typeof name !== 'string') throw invalidArgument('name', 'a string', name);
    if (
      concurrency !== undefined &&
      (typeof concurrency !== 'number' || !(concurrency >= 1) || (!Number.isInteger(concurrency) && concurrency !== Infinity))
    ) {
      throw invalidArgument('concurrency', 'an integer from 1 up, or Infinity', concurrency);
    }
    if (members.length === 0) throw invalidArgument('flows', 'a non-empty array of flows', members);
    this.name = name ?? 'parallel';
    this.concurrency = concurrency ?? Infinity;
  }

  run(trigger: FlowTrigger, data: Data): void {
    const parent = (trigger as unknown as { run: ChainRun<Data> }).run;
    const execution = new ParallelRun<Data>(this, trigger, data, parent);
    this.executions.set(parent, execution);
    parent.setChildren(trigger.index, execution.runs as ChainRun<Data>[]);
    execution.start();
  }

  rollback(trigger: RollbackTrigger): void {
    const parent = (trigger as unknown as { run: ChainRun<Data> }).run;
    const execution = this.executions.get(parent);
    if (execution === undefined) trigger.rollback();
    else execution.rollback(trigger);
  }
}

class ParallelRun<Data> {
  readonly runs: (ChainRun<Data> | undefined)[] = [];
  private readonly chains: FlowChain<Data>[] = [];
  /** Member indices in the order they started. */
  private readonly startOrder: number[] = [];
  private readonly controller = new AbortController();
  private nextMember = 0;
  private running = 0;
  private pumping = false;
  private failure: FlowChainError | undefined = undefined;
  private readonly selfRollbackErrors: FlowChainError[] = [];
  private ended = false;

  constructor(
    private readonly group: ParallelFlow<Data>,
    private readonly trigger: FlowTrigger,
    private readonly data: Data,
    private readonly parent: ChainRun<Data>,
  ) {}

  start(): void {
    const parentSignal = this.trigger.signal;
    if (parentSignal.aborted) this.controller.abort(parentSignal.reason);
    else parentSignal.addEventListener('abort', () => this.controller.abort(parentSignal.reason), { once: true });
    this.pump();
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      const members = this.group.members;
      while (this.failure === undefined && this.running < this.group.concurrency && this.nextMember < members.length) {
        this.launch(this.nextMember++);
      }
    } finally {
      this.pumping = false;
    }
    this.maybeEnd();
  }

  private launch(k: number): void {
    const member = this.group.members[k] as Flow<Data>;
    const chain = new FlowChain<Data>({ name: member.name ?? `${this.group.name}[${k}]` }).flow(member);
    this.chains[k] = chain;
    this.startOrder.push(k);
    this.running++;
    let settled = false;
    const memberTrigger: FlowTrigger = {
      next: () => {
        if (settled) return;
        settled = true;
        this.running--;
        this.pump();
      },
      fail: (error?: unknown) => {
        if (settled) return;
        settled = true;
        this.running--;
        this.memberFailed(k, error);
        this.pump();
      },
      setError: (error: unknown) => this.trigger.setError(error),
      signal: this.controller.signal,
      flowName: chain.name,
      index: k,
      idempotencyKey: this.trigger.idempotencyKey,
    };
    const run = chain.startNested(this.data, memberTrigger, this.parent);
    this.runs[k] = run;
    run.begin(memberTrigger.signal, undefined);
  }

  private memberFailed(k: number, error: unknown): void {
    if (isFlowChainError(error)) this.selfRollbackErrors.push(...error.rollbackErrors);
    if (this.failure !== undefined) return;
    const name = this.chains[k]?.name ?? String(k);
    const root = isFlowChainError(error, FlowChainErrorCode.FLOW_FAILED) ? error.cause : error;
    this.failure = new FlowChainError(
      isFlowChainError(error) && error.code !== FlowChainErrorCode.FLOW_FAILED ? error.code : FlowChainErrorCode.FLOW_FAILED,
      `Member ${JSON.stringify(name)} of parallel group ${JSON.stringify(this.group.name)} failed: ${describeThrown(root)}`,
      { cause: root, flowName: name, flowIndex: k, flowCount: this.group.members.length, details: { group: this.group.name } },
    );
    this.controller.abort(this.failure);
  }

  private maybeEnd(): void {
    if (this.ended || this.running > 0) return;
    if (this.failure === undefined && this.nextMember < this.group.members.length) return;
    this.ended = true;
    if (this.failure === undefined) {
      this.trigger.next();
      return;
    }
    this.failure.rollbackErrors.push(...this.selfRollbackErrors);
    this.trigger.fail(this.failure);
  }

  /** Undoes the members that completed, in reverse start order. */
  rollback(trigger: RollbackTrigger): void {
    const order = this.startOrder.slice();
    let skipRest = false;
    const step = (): void => {
      for (;;) {
        const k = order.pop();
        if (k === undefined || skipRest) {
          trigger.rollback();
          return;
        }
        const chain = this.chains[k] as FlowChain<Data>;
        let synchronous = true;
        let finished = false;
        (this.runs[k] as ChainRun<Data>).rollbackForParent({
          rollback: () => {
            finished = true;
            if (!synchronous) step();
          },
          skipRestRollbacks: () => {
            skipRest = true;
          },
          signal: trigger.signal,
          error: trigger.error,
          flowName: chain.name,
          index: k,
          idempotencyKey: trigger.idempotencyKey,
        });
        synchronous = false;
        if (!finished) return;
      }
    };
    step();
  }
}
