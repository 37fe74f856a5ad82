export {
  FlowChain,
  defineFlows,
  type FlowChainOptions,
  type FlowChainProcessor,
  type FlowChainState,
  type FlowMarshaller,
  type PreCheck,
  type StartOptions,
} from './flow/chain.js';
export type { Flow, FlowData, FlowTrigger, RollbackTrigger } from './flow/flow.js';
export type { ParallelOptions } from './flow/parallel.js';
export type { FlowOutcome, FlowTraceEntry } from './flow/trace.js';
export {
  FlowChainError,
  FlowChainErrorCode,
  isFlowChainError,
  type FlowChainErrorOptions,
  type SerializedError,
} from './errors.js';
export type { FlowChainEvents } from './events.js';
export {
  FINAL_LONG_JOB_STATES,
  LONG_JOB_STATES,
  LONG_JOB_STATE_EVENTS,
  LONG_JOB_TRANSITIONS,
  LongJobState,
  LongJobStateEvent,
  isFinalState,
  nextLongJobState,
} from './job/states.js';
export { LONG_JOB_FIELDS, isUuid, newUuid, type LongJob } from './job/record.js';
export type { ChainJobKind, JobContext, JobKind } from './job/kind.js';
export type { JobManagerEvents, JobManagerOptions } from './job/core.js';
export { JobManager, type StopOptions, type SubmitRequest, type WaitForOptions } from './job/manager.js';
export type {
  ClaimRequest,
  DateRange,
  JobChange,
  JobChanges,
  JobCount,
  JobGroupField,
  JobQuery,
  JobSortField,
  JobStore,
  JobWriteCondition,
  NodeRecord,
  NodeRegistry,
  ProgressEntry,
  StoredJob,
} from './store/contract.js';
export {
  MemoryJobStore,
  type MemoryJobStoreFault,
  type MemoryJobStoreMethod,
  type MemoryJobStoreOptions,
} from './store/memory.js';
