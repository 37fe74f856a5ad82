import { v7 as uuidv7 } from 'uuid';
import { FlowChainError, FlowChainErrorCode } from '../errors.js';
import type { StoredJob } from '../store/contract.js';
import { LONG_JOB_STATES, type LongJobState } from './states.js';

/**
 * A long job's inventory record, as ZStack's `LongJobInventory`: plain JSON, safe to store,
 * send and compare. Uuids are 32 hex characters without dashes, dates are ISO-8601 strings,
 * `jobData` and `jobResult` are JSON text.
 *
 * @example
 * ```ts
 * import type { LongJob } from 'flowchain';
 * const describe = (job: LongJob) => `${job.jobName} ${job.uuid} is ${job.state}`;
 * ```
 */
export interface LongJob {
  /** 32 lowercase hex characters. */
  uuid: string;
  /** Display name; defaults to `jobName`. */
  name: string;
  description: string | null;
  /** The registered job kind, e.g. `APIPrimaryStorageMigrateVolumeMsg`. */
  jobName: string;
  /** JSON text of the job's input. */
  jobData: string;
  /** JSON text of the job's result or error; `null` until set. */
  jobResult: string | null;
  /** The node that owns (runs) the job; `null` while orphaned. */
  managementNodeUuid: string | null;
  /** The id progress is reported under (a new one on rerun). */
  apiId: string;
  targetResourceUuid: string | null;
  state: LongJobState;
  createDate: string;
  lastOpDate: string;
  /** Seconds from `createDate` to reaching a final state (at least 1); `null` until then. */
  executeTime: number | null;
  /** Incremented by every write; the compare-and-set token. */
  version: number;
}

/** The 14 fields of a {@link LongJob}, in inventory order. */
export const LONG_JOB_FIELDS = [
  'uuid',
  'name',
  'description',
  'jobName',
  'jobData',
  'jobResult',
  'managementNodeUuid',
  'apiId',
  'targetResourceUuid',
  'state',
  'createDate',
  'lastOpDate',
  'executeTime',
  'version',
] as const satisfies readonly (keyof LongJob)[];

const UUID_RE = /^[0-9a-f]{32}$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * A new uuid in ZStack's format: 32 lowercase hex characters. Time-ordered (UUIDv7), so
 * new jobs land at the end of a database index.
 *
 * @example
 * ```ts
 * import { newUuid } from 'flowchain';
 * newUuid(); // e.g. '0193a5c2d4e87c3b9f1e2d3c4b5a6978'
 * ```
 */
export function newUuid(): string {
  return uuidv7().replace(/-/g, '');
}

/** Whether `value` is a uuid in ZStack's format (32 lowercase hex characters). */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_RE.test(value);
}

/** The public record of a stored job (drops the store's ownership bookkeeping). @internal */
export function toLongJob(stored: StoredJob): LongJob {
  return {
    uuid: stored.uuid,
    name: stored.name,
    description: stored.description,
    jobName: stored.jobName,
    jobData: stored.jobData,
    jobResult: stored.jobResult,
    managementNodeUuid: stored.managementNodeUuid,
    apiId: stored.apiId,
    targetResourceUuid: stored.targetResourceUuid,
    state: stored.state,
    createDate: stored.createDate,
    lastOpDate: stored.lastOpDate,
    executeTime: stored.executeTime,
    version: stored.version,
  };
}

/**
 * Checks a record read from a store; a corrupt or foreign one is a `CORRUPT_RECORD` error
 * naming the record and the field, so one bad row never takes the manager down (S4).
 * @internal
 */
export function checkStoredJob(value: unknown): StoredJob {
  if (value === null || typeof value !== 'object') corrupt(undefined, 'record', 'is not an object');
  const row = value as Record<string, unknown>;
  const uuid = typeof row.uuid === 'string' ? row.uuid : undefined;
  if (!isUuid(row.uuid)) corrupt(uuid, 'uuid', 'is not 32 hex characters');
  const text = (field: string, nullable: boolean) => {
    const v = row[field];
    if (v === null && nullable) return;
    if (typeof v !== 'string') corrupt(uuid, field, nullable ? 'is not a string or null' : 'is missing or not a string');
  };
  text('name', false);
  text('description', true);
  text('jobName', false);
  text('jobData', false);
  text('jobResult', true);
  text('managementNodeUuid', true);
  text('apiId', false);
  text('targetResourceUuid', true);
  if (!LONG_JOB_STATES.includes(row.state as LongJobState)) corrupt(uuid, 'state', `is not a known state (${String(row.state)})`);
  for (const field of ['createDate', 'lastOpDate']) {
    if (typeof row[field] !== 'string' || !ISO_RE.test(row[field] as string)) corrupt(uuid, field, 'is not an ISO-8601 date');
  }
  if (row.executeTime !== null && !(Number.isInteger(row.executeTime) && (row.executeTime as number) >= 0)) {
    corrupt(uuid, 'executeTime', 'is not a non-negative integer or null');
  }
  for (const field of ['version', 'epoch', 'takeovers']) {
    if (!Number.isInteger(row[field]) || (row[field] as number) < 0) corrupt(uuid, field, 'is not a non-negative integer');
  }
  if (row.incarnation !== null && typeof row.incarnation !== 'string') corrupt(uuid, 'incarnation', 'is not a string or null');
  try {
    JSON.parse(row.jobData as string);
  } catch {
    corrupt(uuid, 'jobData', 'is not valid JSON');
  }
  if (row.jobResult !== null) {
    try {
      JSON.parse(row.jobResult as string);
    } catch {
      // ZStack stores the bare word Succeeded; anything else must be JSON.
      if (row.jobResult !== 'Succeeded') corrupt(uuid, 'jobResult', 'is not valid JSON');
    }
  }
  return row as unknown as StoredJob;
}

function corrupt(uuid: string | undefined, field: string, problem: string): never {
  throw new FlowChainError(
    FlowChainErrorCode.CORRUPT_RECORD,
    `Job record ${uuid ?? '(unknown uuid)'} read from the store is corrupt: field \`${field}\` ${problem}. Repair or delete the record; other jobs are unaffected.`,
    { details: { uuid: uuid ?? null, field } },
  );
}
