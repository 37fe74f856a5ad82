import { newUuid } from '../job/record.js';
import { FAULT_HANDLER } from '../job/durable.js';
import type { StoredJob } from '../store/contract.js';

/**
 * A complete, valid stored job for tests, with any fields overridden.
 *
 * @example
 * ```ts
 * import { makeStoredJob } from 'flowchain/testing';
 * const job = makeStoredJob({ state: 'Waiting', jobName: 'Migrate', incarnation: null });
 * ```
 */
export function makeStoredJob(overrides: Partial<StoredJob> = {}): StoredJob {
  const uuid = overrides.uuid ?? newUuid();
  const now = new Date().toISOString();
  return {
    uuid,
    name: 'test-job',
    description: null,
    jobName: 'TestJob',
    jobData: '{}',
    jobResult: null,
    managementNodeUuid: 'node-a',
    apiId: newUuid(),
    targetResourceUuid: null,
    state: 'Running',
    createDate: now,
    lastOpDate: now,
    executeTime: null,
    version: 1,
    incarnation: 'incarnation-a',
    epoch: 1,
    takeovers: 0,
    ...overrides,
  };
}

/**
 * ZStack's sample LongJob inventory (a finished primary-storage volume migration), as a
 * stored record: the seed every store must store and read back exactly.
 *
 * @example
 * ```ts
 * import { sampleInventory } from 'flowchain/testing';
 * console.log(sampleInventory().jobName); // 'APIPrimaryStorageMigrateVolumeMsg'
 * ```
 */
export function sampleInventory(): StoredJob {
  return {
    uuid: 'b7e65467cffe4bcd9d7ca09ec77d35e8',
    name: 'APIPrimaryStorageMigrateVolumeMsg',
    description: null,
    apiId: 'faf95996726e4381aa5226f912857338',
    jobName: 'APIPrimaryStorageMigrateVolumeMsg',
    jobData: JSON.stringify({
      volumeUuid: '8b0f6b1b2a9c4e8f9d3c7a6e5b4a3c21',
      srcPrimaryStorageUuid: '2c6d8e0f1a3b4c5d6e7f8091a2b3c4d5',
      dstPrimaryStorageUuid: '9f8e7d6c5b4a39281706f5e4d3c2b1a0',
      type: 'NFSTONFSVOLUME',
    }),
    jobResult: 'Succeeded',
    managementNodeUuid: 'b44bfa17ef294a75824db6e455b183fa',
    targetResourceUuid: '8b0f6b1b2a9c4e8f9d3c7a6e5b4a3c21',
    state: 'Succeeded',
    createDate: '2026-06-01T08:30:00.000Z',
    lastOpDate: '2026-06-01T08:31:05.000Z',
    executeTime: 65,
    version: 3,
    incarnation: null,
    epoch: 1,
    takeovers: 0,
  };
}

/**
 * Installs a handler called at every named fault point of a durable job
 * (`flow:before:<flow>`, `flow:after:<flow>`, `checkpoint:after:<flow>`,
 * `rollback:before:<flow>`, `rollback:after:<flow>`, `job:before-final`), typically to kill
 * the process there (`process.kill(process.pid, 'SIGKILL')`) and test crash recovery.
 * Without a handler the points do nothing. Returns a function that removes the handler.
 *
 * @example
 * ```ts
 * import { onFaultPoint } from 'flowchain/testing';
 * const off = onFaultPoint((point) => {
 *   if (point === 'checkpoint:after:copy') process.kill(process.pid, 'SIGKILL');
 * });
 * off();
 * ```
 */
export function onFaultPoint(handler: (point: string) => void): () => void {
  const slot = globalThis as Record<symbol, ((point: string) => void) | undefined>;
  slot[FAULT_HANDLER] = handler;
  return () => {
    if (slot[FAULT_HANDLER] === handler) slot[FAULT_HANDLER] = undefined;
  };
}
