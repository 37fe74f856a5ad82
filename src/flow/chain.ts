import { EventEmitter } from 'eventemitter3';
import { FlowChainError, FlowChainErrorCode, describeThrown, describeValue, invalidArgument } from '../errors.js';
import type { FlowChainEvents } from '../events.js';
import type { Flow, FlowData, FlowTrigger, RollbackTrigger } from './flow.js';
import { ParallelFlow, type ParallelOptions } from './parallel.js';
import { COMPOSITE, ChainRun, type RunHooks, type RunResume } from './run.js';
import { buildTrace, type FlowTraceEntry } from './trace.js';

/**
 * Options for a {@link FlowChain}.
 *
 * @example
 * ```ts
 * import { FlowChain } from 'flowchain';
 * const chain = new FlowChain({ name: 'migrate-volume', data: { volumeUuid: 'v1' }, timeoutMs: 60_000 });
 * ```
 */
export interface FlowChainOptions<Data> {
  /** Shown in errors and events. @default "anonymous-chain" */
  name?: string;
  /** Initial data; shallow-copied, and the copy is the live object every flow shares. @default {} */
  data?: Data;
  /**
   * The flows, in order. A list made by {@link defineFlows} is shared, not copied or checked
   * again: build it once, and each chain built from it costs nothing per flow.
   */
  flows?: readonly Flow<Data>[];
  /** Default timeout of every flow's `run`, in milliseconds; `0` means none. @default 0 */
  timeoutMs?: number;
  /** Timeout of every rollback, in milliseconds; `0` means none. @default 0 */
  rollbackTimeoutMs?: number;
  /** Never roll back: on failure go straight to the error handler. @default false */
  noRollback?: boolean;
  /** Let a chain without flows succeed at once instead of throwing `EMPTY_CHAIN`. @default false */
  allowEmptyFlow?: boolean;
  /**
   * Read the clock at every step boundary for the trace. By default the clock is read at most
   * once per event-loop turn, which is exact for flows that do I/O and cheap for those that
   * don't (see docs/flowchain.md). @default false
   */
  preciseTiming?: boolean;
}

/** Options once validated. @internal */
export interface ResolvedFlowChainOptions {
  readonly timeoutMs: number | undefined;
  readonly rollbackTimeoutMs: number | undefined;
  readonly noRollback: boolean;
  readonly allowEmptyFlow: boolean;
  readonly preciseTiming: boolean;
}

/** A chain's handlers and hooks. @internal */
export interface ChainExtensions<Data> {
  done: ((data: Data) => unknown) | undefined;
  error: ((error: FlowChainError, data: Data) => unknown) | undefined;
  finally: (() => unknown) | undefined;
  preCheck: PreCheck<Data> | undefined;
  marshaller: FlowMarshaller<Data> | undefined;
  processors: FlowChainProcessor<Data>[] | undefined;
  canceledBeforeStart: { reason: unknown } | undefined;
}

/** Every chain without timing options shares these (one object less per chain). */
const DEFAULT_OPTIONS: ResolvedFlowChainOptions = Object.freeze({
  timeoutMs: undefined,
  rollbackTimeoutMs: undefined,
  noRollback: false,
  allowEmptyFlow: false,
  preciseTiming: false,
});

/** Lists made by defineFlows(): validated once, frozen, shared by every chain built from them. */
const DEFINED_FLOWS = new WeakSet<readonly unknown[]>();

/**
 * Validates a list of flows once and freezes it, for building many chains from it:
 * `new FlowChain({ flows })` then shares the list instead of copying and checking it, so a
 * chain costs nothing per flow to build (ZStack's FlowChainBuilder, which builds its flow
 * list once and a chain per operation).
 *
 * @example
 * ```ts
 * import { FlowChain, defineFlows } from 'flowchain';
 * type Data = { volumeUuid: string; copied?: boolean };
 * const MIGRATE = defineFlows<Data>([
 *   { name: 'allocate', run: (t) => t.next() },
 *   { name: 'copy', async run(_t, data) { data.copied = true; } },
 * ]);
 * const data = await new FlowChain<Data>({ data: { volumeUuid: 'v1' }, flows: MIGRATE }).start();
 * console.log(data.copied); // true
 * ```
 */
export function defineFlows<Data = FlowData>(flows: readonly Flow<Data>[]): readonly Flow<Data>[] {
  if (!Array.isArray(flows)) throw invalidArgument('flows', 'an array of flows', flows);
  const checker = new FlowChain<Data>({ name: 'defineFlows' });
  const checked = flows.map((flow, i) => {
    if (flow instanceof FlowChain) {
      throw invalidArgument(`flows[${i}]`, 'a flow object (a nested chain runs once, so add it with flow())', flow);
    }
    return checker.checkFlow(flow, `flows[${i}]`);
  });
  const list = Object.freeze(checked);
  DEFINED_FLOWS.add(list);
  return list;
}

function resolveOptions<Data>(options: FlowChainOptions<Data>): ResolvedFlowChainOptions {
  const { timeoutMs, rollbackTimeoutMs, noRollback, allowEmptyFlow, preciseTiming } = options;
  if (
    timeoutMs === undefined &&
    rollbackTimeoutMs === undefined &&
    noRollback === undefined &&
    allowEmptyFlow === undefined &&
    preciseTiming === undefined
  ) {
    return DEFAULT_OPTIONS;
  }
  return {
    timeoutMs: checkTimeout('timeoutMs', timeoutMs),
    rollbackTimeoutMs: checkTimeout('rollbackTimeoutMs', rollbackTimeoutMs),
    noRollback: checkBoolean('noRollback', noRollback),
    allowEmptyFlow: checkBoolean('allowEmptyFlow', allowEmptyFlow),
    preciseTiming: checkBoolean('preciseTiming', preciseTiming),
  };
}

/** Options of {@link FlowChain.start}. */
export interface StartOptions {
  /** Aborting it cancels the chain, as {@link FlowChain.cancel} does. */
  signal?: AbortSignal;
}

/** Replaces a flow just before it runs (before its skip check), as ZStack's FlowMarshaller. */
export type FlowMarshaller<Data> = (
  flow: Flow<Data>,
  context: { index: number; previous: Flow<Data> | undefined; data: Data },
) => Flow<Data> | undefined | null | void;

/** Edits a chain at the start of `start()`, before the empty-chain check, as ZStack's FlowChainProcessor. */
export type FlowChainProcessor<Data> = (chain: FlowChain<Data>) => void;

/** Runs before every flow; returning an error (anything but null/undefined) fails the chain before that flow. */
export type PreCheck<Data> = (data: Data) => unknown;

/** Where a chain is in its life. */
export type FlowChainState = 'idle' | 'running' | 'rollingBack' | 'succeeded' | 'failed';

/**
 * An ordered list of flows run one at a time; when one fails, the work done so far is
 * rolled back in reverse order (the failing flow first). Start it once.
 *
 * @example
 * ```ts
 * import { FlowChain } from 'flowchain';
 * type Data = { volumeUuid: string; copied?: boolean };
 * const data = await new FlowChain<Data>({ name: 'migrate-volume', data: { volumeUuid: 'v1' } })
 *   .flow({
 *     name: 'allocate',
 *     run(trigger) { trigger.next(); },
 *     rollback(trigger) { trigger.rollback(); },
 *   })
 *   .flow({
 *     name: 'copy',
 *     async run(_trigger, data) { data.copied = true; },
 *     async rollback(_trigger, data) { data.copied = false; },
 *   })
 *   .start();
 * console.log(data.copied); // true
 * ```
 */
export class FlowChain<Data = FlowData> extends EventEmitter<FlowChainEvents<Data>> {
  /** @internal */ options: ResolvedFlowChainOptions;
  /** Handlers and hooks, made when the first is set (most chains have none or few). @internal */
  ext: ChainExtensions<Data> | undefined;
  private chainName: string;
  private list: Flow<Data>[];
  /** `list` is a frozen array from defineFlows(), shared with other chains: copy before editing. */
  private listShared: boolean;
  private liveData: Data;
  private readonly ownData: boolean;
  private started: boolean;
  private run: ChainRun<Data> | undefined;

  constructor(options: FlowChainOptions<Data> = {}) {
    super();
    if (options === null || typeof options !== 'object') {
      throw invalidArgument('options', 'an object', options);
    }
    const { name, data, flows } = options;
    if (name !== undefined && typeof name !== 'string') throw invalidArgument('name', 'a string', name);
    if (data !== undefined && (data === null || typeof data !== 'object')) {
      throw invalidArgument('data', 'an object', data);
    }
    this.chainName = name ?? 'anonymous-chain';
    this.ownData = data !== undefined;
    this.liveData = (data === undefined ? {} : { ...data }) as Data;
    this.options = resolveOptions(options);
    this.ext = undefined;
    this.started = false;
    this.run = undefined;
    if (flows === undefined) {
      this.list = [];
      this.listShared = false;
    } else if (DEFINED_FLOWS.has(flows)) {
      this.list = flows as Flow<Data>[];
      this.listShared = true;
    } else {
      if (!Array.isArray(flows)) throw invalidArgument('flows', 'an array of flows', flows);
      this.list = flows.map((flow, i) => this.toFlow(flow, `flows[${i}]`));
      this.listShared = false;
    }
  }

  /** The chain's name. */
  get name(): string {
    return this.chainName;
  }

  /** The live data object every flow and handler shares. */
  get data(): Data {
    return this.liveData;
  }

  /** The flow list itself, not a copy: once the chain starts, its run's (see ChainRun.flows). @internal */
  get runFlows(): Flow<Data>[] {
    return this.list;
  }

  /** The flows, in order (a copy). */
  get flows(): readonly Flow<Data>[] {
    return this.run === undefined ? this.list.slice() : this.run.flows.slice();
  }

  /** Where the chain is: idle, running, rolling back, or ended. */
  get state(): FlowChainState {
    const run = this.run;
    if (run === undefined) return 'idle';
    if (!run.ended) return run.rollingBack ? 'rollingBack' : 'running';
    return run.error === undefined ? 'succeeded' : 'failed';
  }

  /** The chain's error once it has failed, else `undefined`. */
  get failure(): FlowChainError | undefined {
    return this.run?.ended ? this.run.error : undefined;
  }

  /**
   * Every flow with its outcome, start time and duration (and its rollback's). Complete
   * once the chain has ended; before that it shows progress so far.
   */
  get trace(): FlowTraceEntry[] {
    return this.run === undefined ? buildTrace(undefined, this.list) : buildTrace(this.run, this.run.flows);
  }

  /**
   * Appends a flow, a nested chain (run in place, sharing this chain's data) or a parallel group.
   */
  flow(flow: Flow<Data> | FlowChain<Data>): this {
    this.assertBuilding('flow');
    this.editableList().push(this.toFlow(flow, 'flow'));
    return this;
  }

  /** Prepends a flow, or inserts it at `index` (0 = first, `flows.length` = last). */
  insert(flow: Flow<Data> | FlowChain<Data>): this;
  insert(index: number, flow: Flow<Data> | FlowChain<Data>): this;
  insert(indexOrFlow: number | Flow<Data> | FlowChain<Data>, maybeFlow?: Flow<Data> | FlowChain<Data>): this {
    this.assertBuilding('insert');
    if (typeof indexOrFlow !== 'number') {
      this.editableList().unshift(this.toFlow(indexOrFlow, 'flow'));
      return this;
    }
    const length = this.list.length;
    if (!Number.isInteger(indexOrFlow) || indexOrFlow < 0 || indexOrFlow > length) {
      throw invalidArgument('index', `an integer from 0 to ${length} (the number of flows)`, indexOrFlow);
    }
    this.editableList().splice(indexOrFlow, 0, this.toFlow(maybeFlow, 'flow'));
    return this;
  }

  /**
   * Appends a group of flows run concurrently (at most `concurrency` at a time). When one
   * fails, the others' signals abort and every member that started is rolled back.
   */
  parallel(flows: readonly Flow<Data>[], options: ParallelOptions = {}): this {
    this.assertBuilding('parallel');
    if (!Array.isArray(flows)) throw invalidArgument('flows', 'an array of flows', flows);
    this.editableList().push(new ParallelFlow<Data>(flows.map((f, i) => this.toFlow(f, `flows[${i}]`)), options));
    return this;
  }

  /** Sets the handler called with the data when every flow has completed. */
  done(handler: (data: Data) => unknown): this {
    this.assertBuilding('done');
    const ext = this.extensions();
    ext.done = this.checkHandler('done', handler, ext.done);
    return this;
  }

  /** Sets the handler called after the rollbacks have settled, with the chain's error. */
  error(handler: (error: FlowChainError, data: Data) => unknown): this {
    this.assertBuilding('error');
    const ext = this.extensions();
    ext.error = this.checkHandler('error', handler, ext.error);
    return this;
  }

  /** Sets the handler called last, after done or error, whatever happened. */
  finally(handler: () => unknown): this {
    this.assertBuilding('finally');
    const ext = this.extensions();
    ext.finally = this.checkHandler('finally', handler, ext.finally);
    return this;
  }

  /** Sets a check run before every flow; returning an error fails the chain before that flow. */
  preCheck(check: PreCheck<Data>): this {
    this.assertBuilding('preCheck');
    if (typeof check !== 'function') throw invalidArgument('preCheck', 'a function', check);
    this.extensions().preCheck = check;
    return this;
  }

  /** Sets a marshaller that may replace each flow just before it runs. */
  marshaller(marshaller: FlowMarshaller<Data>): this {
    this.assertBuilding('marshaller');
    if (typeof marshaller !== 'function') throw invalidArgument('marshaller', 'a function', marshaller);
    this.extensions().marshaller = marshaller;
    return this;
  }

  /** Adds a processor that edits the chain at the start of `start()`. */
  processor(processor: FlowChainProcessor<Data>): this {
    this.assertBuilding('processor');
    if (typeof processor !== 'function') throw invalidArgument('processor', 'a function', processor);
    (this.extensions().processors ??= []).push(processor);
    return this;
  }

  /** Lets the chain start without flows (it then succeeds at once). */
  allowEmptyFlow(): this {
    this.assertBuilding('allowEmptyFlow');
    this.options = { ...this.options, allowEmptyFlow: true };
    return this;
  }

  /** Disables rollback: a failure goes straight to the error handler. */
  noRollback(noRollback = true): this {
    this.assertBuilding('noRollback');
    this.options = { ...this.options, noRollback: checkBoolean('noRollback', noRollback) };
    return this;
  }

  /**
   * Runs the chain. Resolves with the data when every flow completed; rejects with a
   * {@link FlowChainError} after the rollbacks have settled. With an error handler set, the
   * rejection is pre-handled, so a fire-and-forget `start()` never raises an unhandled rejection.
   * Throws `CHAIN_ALREADY_STARTED` or `EMPTY_CHAIN` synchronously: they are programming errors.
   */
  start(options: StartOptions = {}): Promise<Data> {
    return this.launch(options, undefined, undefined);
  }

  /**
   * Cancels the chain: the running flow's signal aborts and, once it settles, the chain fails
   * with `CHAIN_CANCELED` and rolls back. Returns false when there is nothing to cancel.
   */
  cancel(reason?: unknown): boolean {
    if (this.run === undefined) {
      const ext = this.extensions();
      if (ext.canceledBeforeStart !== undefined) return false;
      ext.canceledBeforeStart = { reason };
      return true;
    }
    return this.run.cancel(reason);
  }

  /** Stops a durable run where it stands, without rollback. @internal */
  halt(reason: unknown): boolean {
    return this.run?.halt(reason) ?? false;
  }

  /** Replaces the data before the chain starts (a durable chain resuming from its checkpoint). @internal */
  replaceData(data: Data): void {
    this.assertBuilding('replaceData');
    this.liveData = data;
  }

  /** Emits an event; a throwing listener becomes a process warning, never a chain failure. @internal */
  emitSafe<Event extends keyof FlowChainEvents<Data>>(
    event: Event,
    ...args: FlowChainEvents<Data>[Event]
  ): void {
    try {
      (this.emit as (event: string, ...args: unknown[]) => boolean)(event, ...args);
    } catch (error) {
      process.emitWarning(
        `A listener for ${JSON.stringify(event)} on chain ${JSON.stringify(this.chainName)} threw: ${describeThrown(error)}`,
        { code: 'FLOWCHAIN_LISTENER_ERROR', detail: error instanceof Error ? (error.stack ?? '') : '' },
      );
    }
  }

  /** Starts the chain with engine hooks (durable jobs) or as part of a parent. @internal */
  launch(
    options: StartOptions,
    hooks: RunHooks | undefined,
    resume: RunResume | undefined,
  ): Promise<Data> {
    if (this.started) {
      throw new FlowChainError(
        FlowChainErrorCode.CHAIN_ALREADY_STARTED,
        `Chain ${JSON.stringify(this.chainName)} was already started; a chain runs once. Build a new chain for each run.`,
      );
    }
    if (options === null || typeof options !== 'object') throw invalidArgument('options', 'an object', options);
    const signal = options.signal;
    if (signal !== undefined && !isAbortSignal(signal)) throw invalidArgument('signal', 'an AbortSignal', signal);
    this.prepare();
    const promise = new Promise<Data>(capture);
    const resolve = captured.resolve as (value: Data | PromiseLike<Data>) => void;
    captured.resolve = undefined;
    const ext = this.ext;
    if (ext?.error !== undefined) promise.then(undefined, noop);
    const run = new ChainRun<Data>(this, resolve, undefined, hooks);
    this.run = run;
    if (ext?.canceledBeforeStart !== undefined) run.cancel(ext.canceledBeforeStart.reason);
    run.begin(signal, resume);
    return promise;
  }

  /**
   * Prepares this chain to run as a flow of a parent chain, on the parent's data; the caller
   * begins the run once it has recorded it (a synchronous parent rollback may need it).
   * @internal
   */
  startNested(data: Data, trigger: FlowTrigger, parent: ChainRun<Data>): ChainRun<Data> {
    if (this.started) {
      // Checked before anything changes: the run this chain already has stays intact.
      throw new FlowChainError(
        FlowChainErrorCode.CHAIN_ALREADY_STARTED,
        `Chain ${JSON.stringify(this.chainName)} was already started; a chain runs once, so it can be a flow of only one chain, in one place. Build a new chain for each place it runs.`,
      );
    }
    this.prepare();
    this.liveData = data;
    const run = new ChainRun<Data>(
      this,
      trigger,
      parent.timeouts,
      parent.hooks?.idempotencyKey === undefined ? undefined : { idempotencyKey: parent.hooks.idempotencyKey },
    );
    this.run = run;
    return run;
  }

  /** Validates a flow object. @internal */
  checkFlow(flow: unknown, what: string): Flow<Data> {
    if (flow === null || typeof flow !== 'object') {
      throw invalidArgument(what, 'a flow object with a `run` function, or a FlowChain', flow);
    }
    const candidate = flow as Partial<Flow<Data>>;
    if (typeof candidate.run !== 'function') {
      throw invalidArgument(`${what}.run`, 'a function', candidate.run);
    }
    if (candidate.name !== undefined && typeof candidate.name !== 'string') {
      throw invalidArgument(`${what}.name`, 'a string', candidate.name);
    }
    if (candidate.rollback !== undefined && typeof candidate.rollback !== 'function') {
      throw invalidArgument(`${what}.rollback`, 'a function', candidate.rollback);
    }
    if (candidate.skip !== undefined && typeof candidate.skip !== 'function') {
      throw invalidArgument(`${what}.skip`, 'a function', candidate.skip);
    }
    // Checked only when set: building the option name costs more than the rest of flow().
    if (candidate.timeoutMs !== undefined) checkTimeout(`${what}.timeoutMs`, candidate.timeoutMs);
    return flow as Flow<Data>;
  }

  private toFlow(flow: unknown, what: string): Flow<Data> {
    if (flow instanceof FlowChain) {
      if (flow === this) throw invalidArgument(what, 'a flow or another chain (not the chain itself)', flow);
      if (flow.started) throw invalidArgument(what, 'a chain that has not been started', flow);
      if (flow.ownData) {
        throw invalidArgument(
          what,
          'a chain built without `data` (a nested chain shares its parent\'s data)',
          flow,
        );
      }
      return new NestedChainFlow<Data>(flow as FlowChain<Data>);
    }
    return this.checkFlow(flow, what);
  }

  private prepare(): void {
    const processors = this.ext?.processors;
    if (processors !== undefined) for (const processor of processors) processor(this);
    // A marshaller replaces flows in the run's list: it must not edit a shared one.
    if (this.listShared && this.ext?.marshaller !== undefined) this.editableList();
    // An array grown by push() keeps spare capacity; the run keeps an exact copy.
    else if (!this.listShared && this.list.length < 64) this.list = this.list.slice();
    this.started = true;
    if (this.list.length === 0 && !this.options.allowEmptyFlow) {
      throw new FlowChainError(
        FlowChainErrorCode.EMPTY_CHAIN,
        `Chain ${JSON.stringify(this.chainName)} has no flows. Add flows with flow(), or call allowEmptyFlow() if an empty chain should succeed.`,
      );
    }
  }

  private editableList(): Flow<Data>[] {
    if (this.listShared) {
      this.list = this.list.slice();
      this.listShared = false;
    }
    return this.list;
  }

  private extensions(): ChainExtensions<Data> {
    return (this.ext ??= {
      done: undefined,
      error: undefined,
      finally: undefined,
      preCheck: undefined,
      marshaller: undefined,
      processors: undefined,
      canceledBeforeStart: undefined,
    });
  }

  private assertBuilding(method: string): void {
    if (this.started) {
      throw new FlowChainError(
        FlowChainErrorCode.INVALID_ARGUMENT,
        `Cannot call ${method}() on chain ${JSON.stringify(this.chainName)}: it has already started. Build the chain completely before start().`,
        { details: { option: method } },
      );
    }
  }

  private checkHandler<Handler>(name: string, handler: Handler, existing: Handler | undefined): Handler {
    if (typeof handler !== 'function') throw invalidArgument(name, 'a function', handler);
    if (existing !== undefined) {
      throw new FlowChainError(
        FlowChainErrorCode.INVALID_ARGUMENT,
        `The ${name} handler of chain ${JSON.stringify(this.chainName)} is already set; a chain has one ${name} handler (got a second one: ${describeValue(handler)}). Do the work of both in one handler.`,
        { details: { option: name } },
      );
    }
    return handler;
  }
}

/** A FlowChain used as a flow of another chain. @internal */
export class NestedChainFlow<Data> implements Flow<Data> {
  readonly name: string;
  /** The nested chain runs with its own flows' timeouts, not one for the whole chain. */
  readonly timeoutMs = 0;
  readonly [COMPOSITE] = true;
  /** The run this flow started; undefined when starting it failed (nothing to undo then). */
  private child: ChainRun<Data> | undefined = undefined;

  constructor(readonly chain: FlowChain<Data>) {
    this.name = chain.name;
  }

  run(trigger: FlowTrigger, data: Data): void {
    const parent = (trigger as unknown as { run: ChainRun<Data> }).run;
    const child = this.chain.startNested(data, trigger, parent);
    this.child = child;
    parent.setChildren(trigger.index, [child]);
    child.begin(trigger.signal, undefined);
  }

  rollback(trigger: RollbackTrigger): void {
    if (this.child === undefined) trigger.rollback();
    else this.child.rollbackForParent(trigger);
  }
}

function checkTimeout(option: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_TIMEOUT_MS) {
    throw invalidArgument(option, `a finite number of milliseconds from 0 (no timeout) to ${MAX_TIMEOUT_MS}`, value);
  }
  return value;
}

function checkBoolean(option: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw invalidArgument(option, 'a boolean', value);
  return value;
}

function isAbortSignal(value: unknown): value is AbortSignal {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as AbortSignal).aborted === 'boolean' &&
    typeof (value as AbortSignal).addEventListener === 'function'
  );
}

/**
 * The resolving functions of the promise being made. A module-level executor instead of a
 * closure per start(): the Promise constructor calls it synchronously, so the slot is
 * read right after and never shared.
 */
const captured: { resolve: ((value: never) => void) | undefined } = { resolve: undefined };

function capture(resolve: (value: never) => void): void {
  // Only resolve is kept: a failure resolves with a rejecting thenable (see ChainRun).
  captured.resolve = resolve;
}

/** setTimeout's limit; a larger delay would fire at once. */
const MAX_TIMEOUT_MS = 2_147_483_647;

function noop(): void {}
