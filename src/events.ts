import type { FlowChainError } from './errors.js';

/**
 * Events of a {@link FlowChain} (an eventemitter3 emitter). Listeners that throw are
 * reported as a process warning (`FLOWCHAIN_LISTENER_ERROR`) and never affect the chain.
 * Nothing is built for an event when nobody listens.
 *
 * @example
 * ```ts
 * import { FlowChain } from 'flowchain';
 * const chain = new FlowChain().flow({ name: 'a', run: (t) => t.next() });
 * chain.on('flow:done', (name, index) => console.log(`${name} #${index} done`));
 * await chain.start();
 * ```
 */
export interface FlowChainEvents<Data> {
  'chain:start': [name: string];
  'flow:start': [name: string, index: number];
  'flow:done': [name: string, index: number];
  'flow:skip': [name: string, index: number];
  'flow:fail': [name: string, index: number, error: unknown];
  /** A flow completed again after completing or timing out; the call was ignored. */
  'flow:late': [name: string, index: number, error: FlowChainError];
  'rollback:start': [name: string, index: number];
  'rollback:done': [name: string, index: number];
  'rollback:fail': [name: string, index: number, error: FlowChainError];
  'chain:cancel': [reason: unknown];
  'chain:done': [data: Data];
  'chain:fail': [error: FlowChainError];
  /** A done, error or finally handler threw or rejected. */
  'handler:fail': [handler: 'done' | 'error' | 'finally', error: unknown];
}
