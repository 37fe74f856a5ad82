/**
 * Every error code flowchain raises. Compare `error.code` rather than using
 * `instanceof`, which can fail when the ESM and CJS builds are both loaded.
 *
 * @example
 * ```ts
 * import { FlowChainErrorCode } from 'flowchain';
 * const retryable = (code: string) => code === FlowChainErrorCode.STORE_CONFLICT;
 * ```
 */
export const FlowChainErrorCode = {
  /** A flow called `fail()`, threw, or rejected; `cause` is what it failed with. */
  FLOW_FAILED: 'FLOW_FAILED',
  /** A flow or rollback did not finish within its `timeoutMs`. */
  FLOW_TIMEOUT: 'FLOW_TIMEOUT',
  /** The chain was canceled (`cancel()` or the `signal` given to `start()`). */
  CHAIN_CANCELED: 'CHAIN_CANCELED',
  /** A rollback threw, rejected or timed out; found in `rollbackErrors`. */
  ROLLBACK_FAILED: 'ROLLBACK_FAILED',
  /** A flow's `next`/`fail`/`rollback` was called after the flow had already completed. */
  FLOW_ALREADY_COMPLETED: 'FLOW_ALREADY_COMPLETED',
  /** The chain's `preCheck` returned an error before a flow ran. */
  PRECHECK_FAILED: 'PRECHECK_FAILED',
  /** A `done`, `error` or `finally` handler threw or rejected. */
  HANDLER_FAILED: 'HANDLER_FAILED',
  /** `start()` was called on a chain that had already been started. */
  CHAIN_ALREADY_STARTED: 'CHAIN_ALREADY_STARTED',
  /** `start()` was called on a chain without flows and without `allowEmptyFlow()`. */
  EMPTY_CHAIN: 'EMPTY_CHAIN',
  /** A job operation is not allowed in the job's current state. */
  INVALID_TRANSITION: 'INVALID_TRANSITION',
  /** No job has the given uuid. */
  JOB_NOT_FOUND: 'JOB_NOT_FOUND',
  /** No job kind is registered under the given jobName. */
  JOB_KIND_UNKNOWN: 'JOB_KIND_UNKNOWN',
  /** The job kind does not implement the requested operation (cancel, resume, clean). */
  NOT_SUPPORTED: 'NOT_SUPPORTED',
  /** A public API received a value that breaks its rules; the message names both. */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** A compare-and-set write lost to a concurrent writer (another operation or node). */
  STORE_CONFLICT: 'STORE_CONFLICT',
  /** The store failed to read or write; nothing was half-written. */
  STORE_FAILURE: 'STORE_FAILURE',
  /** The database holds a schema newer than this version of flowchain understands. */
  SCHEMA_VERSION_UNSUPPORTED: 'SCHEMA_VERSION_UNSUPPORTED',
  /** A record read from a store is corrupt or foreign; the message names the record and field. */
  CORRUPT_RECORD: 'CORRUPT_RECORD',
  /** The manager is not running (`submit` before `start()` or after `stop()`). */
  MANAGER_NOT_RUNNING: 'MANAGER_NOT_RUNNING',
  /** This node lost ownership of a job (lease expired, job taken over); its writes are fenced off. */
  OWNERSHIP_LOST: 'OWNERSHIP_LOST',
  /** A durable chain's flow list no longer matches the checkpoint it must resume from. */
  INCOMPATIBLE_CHAIN: 'INCOMPATIBLE_CHAIN',
  /** The job was canceled; stored as a canceled job's result. */
  JOB_CANCELED: 'JOB_CANCELED',
  /** The job kind's `cancel` failed; the job stays Canceling and may still finish. */
  CANCEL_FAILED: 'CANCEL_FAILED',
  /** `waitFor` gave up before the job reached a final state. */
  WAIT_TIMEOUT: 'WAIT_TIMEOUT',
  /** A job was interrupted (node stopped or died); it can be resumed. */
  JOB_INTERRUPTED: 'JOB_INTERRUPTED',
  /** A job exceeded its takeover limit: it crashed its node too many times. */
  TAKEOVER_LIMIT_EXCEEDED: 'TAKEOVER_LIMIT_EXCEEDED',
} as const;

/** The union of every {@link FlowChainErrorCode} value. */
export type FlowChainErrorCode = (typeof FlowChainErrorCode)[keyof typeof FlowChainErrorCode];

/** Structured fields a {@link FlowChainError} may carry. */
export interface FlowChainErrorOptions {
  /** What caused this error: the flow's own error, the store's error, … */
  cause?: unknown;
  /** Name of the flow the error belongs to. */
  flowName?: string;
  /** Zero-based position of that flow in its chain. */
  flowIndex?: number;
  /** Number of flows in the chain. */
  flowCount?: number;
  /** Every rollback that failed while unwinding, in the order they ran. */
  rollbackErrors?: FlowChainError[];
  /** Free-form structured details (job uuid, option name, …). */
  details?: Record<string, unknown>;
}

/**
 * The one error type flowchain throws or rejects with.
 *
 * @example
 * ```ts
 * import { FlowChain, FlowChainError } from 'flowchain';
 * try {
 *   await new FlowChain().flow({ name: 'boom', run: () => { throw new Error('disk full'); } }).start();
 * } catch (error) {
 *   if (error instanceof FlowChainError && error.code === 'FLOW_FAILED') {
 *     console.log(error.location, (error.cause as Error).message); // "boom (1/1)" "disk full"
 *   }
 * }
 * ```
 */
export class FlowChainError extends Error {
  override readonly name = 'FlowChainError' as const;
  /** Machine-readable reason; stable across versions. */
  readonly code: FlowChainErrorCode;
  /** Name of the flow the error belongs to, when it belongs to one. */
  readonly flowName: string | undefined;
  /** Zero-based position of that flow. */
  readonly flowIndex: number | undefined;
  /** Number of flows in the chain. */
  readonly flowCount: number | undefined;
  /** Rollback failures recorded while unwinding (empty when every rollback succeeded). */
  readonly rollbackErrors: FlowChainError[];
  /** Structured details. */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: FlowChainErrorCode, message: string, options: FlowChainErrorOptions = {}) {
    super(message, 'cause' in options ? { cause: options.cause } : undefined);
    this.code = code;
    this.flowName = options.flowName;
    this.flowIndex = options.flowIndex;
    this.flowCount = options.flowCount;
    this.rollbackErrors = options.rollbackErrors ?? [];
    this.details = options.details;
  }

  /** `name (i/N)`, as ZStack's error location, or `undefined` when no flow is involved. */
  get location(): string | undefined {
    if (this.flowName === undefined || this.flowIndex === undefined) return undefined;
    return flowLocation(this.flowName, this.flowIndex, this.flowCount ?? this.flowIndex + 1);
  }

  /** A JSON-safe summary: `{ code, message, details?, cause? }` (used for job results). */
  toJSON(): SerializedError {
    return serializeError(this);
  }
}

/** JSON form of an error, as stored in a failed job's `jobResult`. */
export interface SerializedError {
  code: string;
  message: string;
  details?: Record<string, unknown>;
  cause?: SerializedError;
}

/**
 * Whether `value` is a {@link FlowChainError}, by `name` and `code` so that it also holds
 * across the ESM/CJS boundary.
 *
 * @example
 * ```ts
 * import { isFlowChainError } from 'flowchain';
 * const code = (e: unknown) => (isFlowChainError(e) ? e.code : 'UNKNOWN');
 * ```
 */
export function isFlowChainError(value: unknown, code?: FlowChainErrorCode): value is FlowChainError {
  if (value === null || typeof value !== 'object') return false;
  const candidate = value as { name?: unknown; code?: unknown };
  if (candidate.name !== 'FlowChainError' || typeof candidate.code !== 'string') return false;
  return code === undefined || candidate.code === code;
}

/** Formats a flow's position as `name (i/N)` with a one-based `i`. */
export function flowLocation(name: string, index: number, count: number): string {
  return `${name} (${index + 1}/${count})`;
}

/**
 * An `INVALID_ARGUMENT` error naming the option, the rule it breaks and the value received.
 * @internal
 */
export function invalidArgument(option: string, rule: string, received: unknown): FlowChainError {
  return new FlowChainError(
    FlowChainErrorCode.INVALID_ARGUMENT,
    `Expected \`${option}\` to be ${rule}, got ${describeValue(received)}.`,
    { details: { option } },
  );
}

/** A short, safe description of a value for error messages. @internal */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
    case 'number':
    case 'boolean':
      return String(value);
    case 'bigint':
      return `${value}n (bigint)`;
    case 'symbol':
      return value.toString();
    case 'function':
      return `a function${value.name ? ` (${value.name})` : ''}`;
    default: {
      if (Array.isArray(value)) return `an array of length ${value.length}`;
      const ctor = (value as { constructor?: { name?: unknown } }).constructor;
      const ctorName = typeof ctor?.name === 'string' ? ctor.name : '';
      return ctorName && ctorName !== 'Object' ? `an instance of ${ctorName}` : 'an object';
    }
  }
}

/** Converts anything thrown into a JSON-safe {@link SerializedError}. @internal */
export function serializeError(error: unknown, depth = 0): SerializedError {
  if (isFlowChainError(error)) {
    const out: SerializedError = { code: error.code, message: error.message };
    if (error.details !== undefined) out.details = { ...error.details };
    if (error.cause !== undefined && depth < 8) out.cause = serializeError(error.cause, depth + 1);
    return out;
  }
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const out: SerializedError = {
      code: typeof code === 'string' && code !== '' ? code : error.name || 'Error',
      message: error.message,
    };
    if (error.cause !== undefined && depth < 8) out.cause = serializeError(error.cause, depth + 1);
    return out;
  }
  if (error !== null && typeof error === 'object') {
    const { code, message } = error as { code?: unknown; message?: unknown };
    if (typeof message === 'string') {
      return { code: typeof code === 'string' ? code : 'Error', message };
    }
  }
  return { code: 'Error', message: error === undefined ? 'undefined' : String(describeThrown(error)) };
}

/** The message of anything thrown, for composing messages. @internal */
export function describeThrown(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'string') return error;
  if (error === undefined || error === null) return String(error);
  if (typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message;
  }
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return describeValue(error);
  }
}
