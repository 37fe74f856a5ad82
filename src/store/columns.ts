import type { StoredJob } from './contract.js';

/**
 * The SQL column of each stored-job field, shared by the SQLite and PostgreSQL stores (their
 * schemas use the same names). @internal
 */
export const JOB_COLUMNS = {
  uuid: 'uuid',
  name: 'name',
  description: 'description',
  jobName: 'job_name',
  jobData: 'job_data',
  jobResult: 'job_result',
  managementNodeUuid: 'management_node_uuid',
  apiId: 'api_id',
  targetResourceUuid: 'target_resource_uuid',
  state: 'state',
  createDate: 'create_date',
  lastOpDate: 'last_op_date',
  executeTime: 'execute_time',
  version: 'version',
  incarnation: 'incarnation',
  epoch: 'epoch',
  takeovers: 'takeovers',
} as const satisfies Record<keyof StoredJob, string>;
