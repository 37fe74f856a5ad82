import { invalidArgument } from '../errors.js';
import type { FlowChain } from '../flow/chain.js';
import type { LongJob } from './record.js';

/**
 * What a job's code receives besides its record.
 *
 * @example
 * ```ts
 * import type { JobContext } from 'flowchain';
 * async function copyVolume(ctx: JobContext<{ volumeUuid: string }>) {
 *   await ctx.progress(10, { step: 'copy' });
 *   if (ctx.signal.aborted) throw ctx.signal.reason;
 *   return { copied: ctx.jobData.volumeUuid };
 * }
 * ```
 */
export interface JobContext<JobData = unknown> {
  /** The job's record as it was when this run started. */
  readonly job: LongJob;
  /** `job.jobData`, parsed. */
  readonly jobData: JobData;
  /** Aborts when the job is canceled, the manager stops with `suspend`, or this node loses the job. */
  readonly signal: AbortSignal;
  /** The node running the job. */
  readonly nodeId: string;
  /**
   * Reports progress (0–100, with an optional JSON detail) under the job's `apiId` (J6).
   * Rejects with `OWNERSHIP_LOST`, writing nothing, once this node no longer owns the job.
   */
  progress(percent: number, detail?: unknown): Promise<void>;
  /** Stores the job's result now; the first result written wins (J5). */
  setResult(value: unknown): Promise<void>;
  /**
   * Runs a FlowChain as the job's body: the job's cancel cancels the chain (which rolls
   * back), and each completed flow reports progress. Resolves with the chain's data.
   */
  runChain<Data>(chain: FlowChain<Data>): Promise<Data>;
}

/**
 * A job kind with code for each operation, as ZStack's `LongJob` interface. A kind supports
 * cancel, resume and clean exactly when it defines them (J3).
 *
 * @example
 * ```ts
 * import type { JobKind } from 'flowchain';
 * const migrate: JobKind<{ volumeUuid: string }, { migrated: boolean }> = {
 *   async start(job, ctx) { await ctx.progress(50); return { migrated: true }; },
 *   async cancel() { return false; }, // "flag set; the running job rolls itself back"
 *   validate(jobData) { if (!jobData.volumeUuid) throw new Error('volumeUuid is required'); },
 * };
 * ```
 */
export interface JobKind<JobData = unknown, Result = unknown> {
  /** Runs the job; the value it resolves with becomes `jobResult` (unless one was set). */
  start(job: LongJob, ctx: JobContext<JobData>): Result | Promise<Result>;
  /**
   * Asked to cancel: resolve `true` when the job is already canceled and cleaned up,
   * `false` when the running job will roll itself back (its signal aborts either way).
   */
  cancel?(job: LongJob, ctx: JobContext<JobData>): boolean | Promise<boolean>;
  /** Continues a job after an interruption (a restart or a takeover). */
  resume?(job: LongJob, ctx: JobContext<JobData>): Result | Promise<Result>;
  /** Removes what a canceled or interrupted job left behind. */
  clean?(job: LongJob, ctx: JobContext<JobData>): void | Promise<void>;
  /** Rejects bad jobData before anything is stored: throw to refuse. */
  validate?(jobData: JobData): void | Promise<void>;
}

/**
 * A job kind whose body is a durable FlowChain (J10): the manager builds the chain from
 * the job, checkpoints after every flow and rollback step, and resumes it after a crash.
 *
 * @example
 * ```ts
 * import { FlowChain, type ChainJobKind } from 'flowchain';
 * type Data = { volumeUuid: string; copied?: boolean };
 * const kind: ChainJobKind<{ volumeUuid: string }, Data> = {
 *   chain: (job, jobData) =>
 *     new FlowChain<Data>({ name: 'migrate', data: { volumeUuid: jobData.volumeUuid } })
 *       .flow({ name: 'copy', async run(_t, data) { data.copied = true; } }),
 * };
 * ```
 */
export interface ChainJobKind<JobData = unknown, Data = unknown> {
  /** Builds the chain; on resume its data is replaced by the last checkpoint's. */
  chain(job: LongJob, jobData: JobData): FlowChain<Data>;
  /** Removes what a canceled job left behind (after the chain rolled back). */
  clean?(job: LongJob, ctx: JobContext<JobData>): void | Promise<void>;
  /** Rejects bad jobData before anything is stored: throw to refuse. */
  validate?(jobData: JobData): void | Promise<void>;
}

/** A kind as registered. @internal */
export interface ResolvedKind {
  readonly jobName: string;
  readonly kind: JobKind<unknown, unknown> | undefined;
  readonly chainKind: ChainJobKind<unknown, unknown> | undefined;
  readonly validate: ((jobData: unknown) => void | Promise<void>) | undefined;
  readonly clean: ((job: LongJob, ctx: JobContext<unknown>) => void | Promise<void>) | undefined;
  readonly supportsCancel: boolean;
  readonly supportsResume: boolean;
}

/** Validates a kind definition at `register()`. @internal */
export function resolveKind(jobName: string, definition: unknown): ResolvedKind {
  if (typeof jobName !== 'string' || jobName.length === 0 || jobName.length > 255) {
    throw invalidArgument('jobName', 'a non-empty string of at most 255 characters', jobName);
  }
  if (definition === null || typeof definition !== 'object') {
    throw invalidArgument('kind', 'an object with a `start` function or a `chain` function', definition);
  }
  const d = definition as Record<string, unknown>;
  const hasStart = d.start !== undefined;
  const hasChain = d.chain !== undefined;
  const has = (key: string): boolean => typeof d[key] === 'function';
  if (hasStart === hasChain) {
    throw invalidArgument('kind', 'an object with exactly one of `start` (code) or `chain` (a durable FlowChain)', definition);
  }
  const functions = hasChain ? ['chain', 'clean', 'validate'] : ['start', 'cancel', 'resume', 'clean', 'validate'];
  for (const key of Object.keys(d)) {
    if (d[key] === undefined) continue;
    if (!functions.includes(key)) {
      throw invalidArgument(`kind.${key}`, `not set: a ${hasChain ? 'chain' : 'code'} kind takes ${functions.join(', ')}`, d[key]);
    }
    if (typeof d[key] !== 'function') throw invalidArgument(`kind.${key}`, 'a function', d[key]);
  }
  const kind = hasChain ? undefined : (definition as JobKind<unknown, unknown>);
  const chainKind = hasChain ? (definition as ChainJobKind<unknown, unknown>) : undefined;
  return {
    jobName,
    kind,
    chainKind,
    validate: (d.validate as ResolvedKind['validate']) ?? undefined,
    clean: (d.clean as ResolvedKind['clean']) ?? undefined,
    // A durable chain is canceled through its signal, and resumed from its checkpoint.
    supportsCancel: hasChain || has('cancel'),
    supportsResume: hasChain || has('resume'),
  };
}
