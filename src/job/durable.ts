import { FlowChainError, FlowChainErrorCode, isFlowChainError, serializeError, type SerializedError } from '../errors.js';
import { FlowChain } from '../flow/chain.js';
import { type ChainRun, type RunHooks, type RunResume, Status, isCompositeFlow } from '../flow/run.js';
import type { StoredJob } from '../store/contract.js';
import type { ManagerCore } from './core.js';
import { type Execution, nowIso, writeOwned } from './execution.js';
import { toJsonText } from './json.js';
import type { ChainJobKind, JobContext } from './kind.js';

/*
 * Durable chains (J10, R1). A chain kind's FlowChain runs with engine hooks that write a
 * checkpoint after every forward outcome and every rollback step, in the same write as the
 * job's version bump (fenced by this node's ownership). On resume the chain is built again,
 * checked against the checkpoint's flow list, and restarted from the checkpoint: flows
 * already done are not run again, a rollback goes on where it stopped, and the flow that
 * was running when the process died runs again (at least once), with the same idempotency
 * key as before.
 */

const CHECKPOINT_VERSION = 1;

/** What a checkpoint holds. @internal */
export interface Checkpoint {
  v: number;
  /** Which run of the job this is: 1, then +1 for every rerun. Part of idempotency keys. */
  attempt: number;
  /** The chain's flow names, in order, to refuse resuming a different chain. */
  flows?: string[];
  status?: number[];
  phase?: 'forward' | 'rollback';
  /** Forward: the next flow to run. Rollback: the next flow to roll back. */
  index?: number;
  error?: SerializedChainError;
  /** The first setError() of the run, if any (the chain then fails without rollback). */
  setError?: { index: number; error: SerializedError };
  /** skipRestRollbacks() was called: unwinding stops. */
  skipRest?: boolean;
  data?: unknown;
}

interface SerializedChainError {
  code: string;
  message: string;
  flowName?: string;
  flowIndex?: number;
  cause?: SerializedError;
  rollbackErrors?: SerializedChainError[];
}

/**
 * Named points where a test can kill the process (`onFaultPoint` in `flowchain/testing`).
 * Without a handler installed they cost one property read and do nothing.
 * @internal
 */
export function faultPoint(point: string): void {
  const handler = (globalThis as Record<symbol, ((point: string) => void) | undefined>)[FAULT_HANDLER];
  if (handler !== undefined) handler(point);
}

/** Where the fault handler lives: global, so every copy of the module (ESM, CJS) sees it. @internal */
export const FAULT_HANDLER: unique symbol = Symbol.for('flowchain.faultHandler') as never;

/** Runs a chain kind's FlowChain durably for a job; resolves with the chain's final data. @internal */
export async function runDurable(
  core: ManagerCore,
  execution: Execution,
  job: StoredJob,
  context: JobContext<unknown> & { runChain: <Data>(chain: FlowChain<Data>, hooks?: RunHooks, resume?: RunResume) => Promise<Data> },
): Promise<unknown> {
  const kind = execution.kind.chainKind;
  if (kind === undefined) throw new TypeError('runDurable needs a chain kind');
  try {
    return await runCheckpointed(core, execution, job, context, kind);
  } catch (error) {
    // A canceled chain has rolled back (or could not: its flows changed); the kind's clean
    // removes what rollback cannot.
    const reason: unknown = context.signal.aborted ? context.signal.reason : undefined;
    if (kind.clean !== undefined && isFlowChainError(reason, FlowChainErrorCode.JOB_CANCELED)) {
      await kind.clean(context.job, context);
    }
    throw error;
  }
}

async function runCheckpointed(
  core: ManagerCore,
  execution: Execution,
  job: StoredJob,
  context: Parameters<typeof runDurable>[3],
  kind: ChainJobKind<unknown, unknown>,
): Promise<unknown> {
  const chain = kind.chain(context.job, context.jobData);
  if (!(chain instanceof FlowChain)) {
    throw new FlowChainError(
      FlowChainErrorCode.INVALID_ARGUMENT,
      `The chain() of job kind ${JSON.stringify(job.jobName)} must return a FlowChain.`,
      { details: { option: 'chain', jobName: job.jobName } },
    );
  }
  const names = durableFlowNames(chain, job.jobName);
  const raw = await core.store.getCheckpoint(job.uuid);
  const saved = raw === undefined ? undefined : parseCheckpoint(raw, job.uuid);
  const attempt = saved?.attempt ?? 1;
  let resume: RunResume | undefined;
  if (saved?.flows !== undefined) {
    if (saved.flows.length !== names.length || saved.flows.some((name, i) => name !== names[i])) {
      throw new FlowChainError(
        FlowChainErrorCode.INCOMPATIBLE_CHAIN,
        `Job ${job.uuid} was checkpointed by a chain with flows [${saved.flows.join(', ')}], but kind ${JSON.stringify(
          job.jobName,
        )} now builds [${names.join(', ')}]. It was suspended rather than run with the wrong flows: deploy a compatible chain and resume it, or cancel it.`,
        { details: { uuid: job.uuid, checkpointed: saved.flows, current: names } },
      );
    }
    chain.replaceData(saved.data as never);
    const status = (saved.status ?? []).slice();
    const phase = saved.phase ?? 'forward';
    const index = saved.index ?? 0;
    // Canceled while a flow was in doubt (it ran, its outcome was never recorded): that flow
    // may have done half its work, so its rollback runs first, as a failing flow's would.
    if (job.state === 'Canceling' && phase === 'forward' && index < status.length) status[index] = Status.FAILED;
    resume = {
      status,
      phase,
      index,
      skipRest: saved.skipRest === true,
      ...(saved.error === undefined ? {} : { error: reviveError(saved.error, names.length) }),
      ...(saved.setError === undefined
        ? {}
        : { setError: { index: saved.setError.index, error: saved.setError.error as unknown } }),
    };
  }
  // Data that cannot be checkpointed is refused before any flow runs.
  let dataText = toJsonText(chain.data, 'data');

  const hooks: RunHooks = {
    idempotencyKey: (flowName) => `${job.uuid}:${flowName}:${attempt}`,
    beforeStep: (run, index) => faultPoint(`${run.rollingBack ? 'rollback' : 'flow'}:before:${names[index]}`),
    checkData: (data) => {
      toJsonText(data, 'data');
    },
    afterStep: async (run, index) => {
      const name = names[index] as string;
      const status = run.statusOf(index);
      const phase = status === Status.ROLLED_BACK || status === Status.ROLLBACK_FAILED ? 'rollback' : 'flow';
      faultPoint(`${phase}:after:${name}`);
      // Data a failing flow (or a rollback) left unserialisable: the last snapshot that was
      // JSON stands, and unwinding goes on (a completed flow that does this fails instead).
      try {
        dataText = toJsonText(run.data, 'data');
      } catch {
        // keep the last good snapshot
      }
      const text = checkpointText(run, names, attempt, dataText);
      // Written through every outage; a lost job (or a refusal) stops the chain with its error.
      await writeOwned(core, execution, job.uuid, { retry: true, rethrow: true }, () => ({
        checkpoint: text,
        lastOpDate: nowIso(),
      }));
      if (execution.abandoned) {
        throw new FlowChainError(
          FlowChainErrorCode.OWNERSHIP_LOST,
          `Job ${job.uuid} could not record its checkpoint: this node no longer owns it, so the chain stopped.`,
          { details: { uuid: job.uuid } },
        );
      }
      faultPoint(`checkpoint:after:${name}`);
    },
  };
  const data = await context.runChain(chain, hooks, resume);
  faultPoint('job:before-final');
  return data;
}

/** The flow names of a chain that can run durably, or INVALID_ARGUMENT saying why not. @internal */
export function durableFlowNames(chain: FlowChain<unknown>, jobName: string): string[] {
  const names: string[] = [];
  const seen = new Set<string>();
  chain.flows.forEach((flow, i) => {
    const problem =
      flow.name === undefined
        ? `flow #${i + 1} has no name`
        : seen.has(flow.name)
          ? `the name ${JSON.stringify(flow.name)} is used twice`
          : isCompositeFlow(flow)
            ? `flow ${JSON.stringify(flow.name)} is a nested chain or parallel group, which cannot be checkpointed flow by flow yet`
            : undefined;
    const ext = chain.ext;
    if (i === 0 && ext !== undefined && (ext.marshaller !== undefined || ext.processors !== undefined)) {
      throw new FlowChainError(
        FlowChainErrorCode.INVALID_ARGUMENT,
        `The chain of job kind ${JSON.stringify(jobName)} cannot run durably: it has a marshaller or processors, which could change its flows after they were checked.`,
        { details: { option: 'chain', jobName } },
      );
    }
    if (problem !== undefined) {
      throw new FlowChainError(
        FlowChainErrorCode.INVALID_ARGUMENT,
        `The chain of job kind ${JSON.stringify(jobName)} cannot run durably: ${problem}. A durable chain needs a unique name on every flow (the checkpoint records progress by name).`,
        { details: { option: 'chain', jobName } },
      );
    }
    seen.add(flow.name as string);
    names.push(flow.name as string);
  });
  return names;
}

/** The checkpoint as JSON text; the data goes in as the JSON it was already checked as. */
function checkpointText(run: ChainRun<unknown>, names: string[], attempt: number, dataText: string): string {
  const snapshot = run.snapshot();
  const checkpoint: Omit<Checkpoint, 'data'> = {
    v: CHECKPOINT_VERSION,
    attempt,
    flows: names,
    status: snapshot.status,
    phase: snapshot.phase,
    index: snapshot.index,
  };
  if (snapshot.skipRest) checkpoint.skipRest = true;
  if (snapshot.setError !== undefined) {
    checkpoint.setError = { index: snapshot.setError.index, error: serializeError(snapshot.setError.error) };
  }
  if (run.error !== undefined) checkpoint.error = serializeChainError(run.error);
  return `${JSON.stringify(checkpoint).slice(0, -1)},"data":${dataText}}`;
}

/** The checkpoint a rerun starts from: no progress, the next attempt. @internal */
export function rerunCheckpoint(previous: string | undefined, uuid: string): string {
  let attempt: number;
  try {
    attempt = previous === undefined ? 1 : parseCheckpoint(previous, uuid).attempt;
  } catch {
    // Unreadable: start over with an attempt number no earlier run can have used.
    attempt = Math.floor(Date.now() / 1000);
  }
  return JSON.stringify({ v: CHECKPOINT_VERSION, attempt: attempt + 1 } satisfies Checkpoint);
}

function parseCheckpoint(text: string, uuid: string): Checkpoint {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  const cp = value as Partial<Checkpoint> | undefined;
  const ok =
    cp !== undefined &&
    cp !== null &&
    typeof cp === 'object' &&
    cp.v === CHECKPOINT_VERSION &&
    Number.isInteger(cp.attempt) &&
    (cp.flows === undefined ||
      (Array.isArray(cp.flows) &&
        Array.isArray(cp.status) &&
        cp.status.length === cp.flows.length &&
        cp.status.every((s) => Number.isInteger(s) && s >= Status.NOT_RUN && s <= Status.ROLLBACK_FAILED) &&
        (cp.phase === 'forward' || cp.phase === 'rollback') &&
        Number.isInteger(cp.index)));
  if (!ok) {
    throw new FlowChainError(
      FlowChainErrorCode.CORRUPT_RECORD,
      `The checkpoint of job ${uuid} is corrupt (field \`checkpoint\`); the job cannot resume from it. Rerun it (it starts over) or delete it.`,
      { details: { uuid, field: 'checkpoint' } },
    );
  }
  return cp as Checkpoint;
}

function serializeChainError(error: FlowChainError): SerializedChainError {
  const out: SerializedChainError = { code: error.code, message: error.message };
  if (error.flowName !== undefined) out.flowName = error.flowName;
  if (error.flowIndex !== undefined) out.flowIndex = error.flowIndex;
  if (error.cause !== undefined) out.cause = serializeError(error.cause);
  if (error.rollbackErrors.length > 0) out.rollbackErrors = error.rollbackErrors.map(serializeChainError);
  return out;
}

function reviveError(saved: SerializedChainError, flowCount: number): FlowChainError {
  const code = (Object.values(FlowChainErrorCode) as string[]).includes(saved.code)
    ? (saved.code as FlowChainErrorCode)
    : FlowChainErrorCode.FLOW_FAILED;
  const options: ConstructorParameters<typeof FlowChainError>[2] = {
    flowCount,
    rollbackErrors: (saved.rollbackErrors ?? []).map((e) => reviveError(e, flowCount)),
  };
  if (saved.flowName !== undefined) options.flowName = saved.flowName;
  if (saved.flowIndex !== undefined) options.flowIndex = saved.flowIndex;
  if (saved.cause !== undefined) options.cause = saved.cause;
  return new FlowChainError(code, saved.message, options);
}
