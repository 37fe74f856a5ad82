export { FlowChain, type FlowChainOptions, type FlowChainProcessor, type FlowChainState, type FlowMarshaller, type PreCheck, type StartOptions } from './flow/chain.js';
export type { Flow, FlowData, FlowTrigger, RollbackTrigger } from './flow/flow.js';
export type { ParallelOptions } from './flow/parallel.js';
export type { FlowOutcome, FlowTraceEntry } from './flow/trace.js';
export { FlowChainError, FlowChainErrorCode, isFlowChainError, type FlowChainErrorOptions, type SerializedError } from './errors.js';
export type { FlowChainEvents } from './events.js';
