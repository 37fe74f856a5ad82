import { invalidArgument } from '../errors.js';
import { LONG_JOB_FIELDS } from '../job/record.js';
import { LONG_JOB_STATES } from '../job/states.js';
import type { JobGroupField, JobQuery, JobSortField, StoredJob } from './contract.js';

/** Fields a query may filter by equality (a value or an array of values): every inventory field but the dates and the version. @internal */
export const EQUALITY_FIELDS = LONG_JOB_FIELDS.filter(
  (field): field is Exclude<(typeof LONG_JOB_FIELDS)[number], 'createDate' | 'lastOpDate' | 'version'> =>
    field !== 'createDate' && field !== 'lastOpDate' && field !== 'version',
);

/** Fields a query may filter by date range. @internal */
export const DATE_FIELDS = ['createDate', 'lastOpDate'] as const;

const SORT_FIELDS: readonly JobSortField[] = ['createDate', 'lastOpDate', 'name', 'jobName', 'state', 'uuid', 'executeTime'];
const GROUP_FIELDS: readonly JobGroupField[] = ['state', 'jobName', 'name', 'managementNodeUuid', 'targetResourceUuid', 'apiId'];
const KNOWN_KEYS = new Set<string>([...EQUALITY_FIELDS, ...DATE_FIELDS, 'sortBy', 'sortDirection', 'limit', 'offset']);

/** Validates a query at the public boundary. @internal */
export function checkJobQuery(query: unknown): JobQuery {
  if (query === undefined) return {};
  if (query === null || typeof query !== 'object' || Array.isArray(query)) throw invalidArgument('query', 'an object', query);
  const q = query as Record<string, unknown>;
  for (const key of Object.keys(q)) {
    if (!KNOWN_KEYS.has(key)) {
      throw invalidArgument(`query.${key}`, `one of the known query keys (${[...KNOWN_KEYS].join(', ')})`, key);
    }
  }
  for (const field of EQUALITY_FIELDS) {
    const value = q[field];
    if (value === undefined) continue;
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      const ok =
        field === 'executeTime' ? v === null || Number.isInteger(v) : v === null ? NULLABLE.has(field) : typeof v === 'string';
      if (!ok) throw invalidArgument(`query.${field}`, 'a value of the field (or an array of them)', v);
      if (field === 'state' && !LONG_JOB_STATES.includes(v as never)) {
        throw invalidArgument('query.state', `one of ${LONG_JOB_STATES.join(', ')}`, v);
      }
    }
  }
  for (const field of DATE_FIELDS) {
    const range = q[field];
    if (range === undefined) continue;
    if (range === null || typeof range !== 'object') throw invalidArgument(`query.${field}`, 'a { from?, to? } range', range);
    for (const bound of ['from', 'to'] as const) {
      const v = (range as Record<string, unknown>)[bound];
      if (v !== undefined && (typeof v !== 'string' || Number.isNaN(Date.parse(v)))) {
        throw invalidArgument(`query.${field}.${bound}`, 'an ISO-8601 date string', v);
      }
    }
  }
  if (q.sortBy !== undefined && !SORT_FIELDS.includes(q.sortBy as JobSortField)) {
    throw invalidArgument('query.sortBy', `one of ${SORT_FIELDS.join(', ')}`, q.sortBy);
  }
  if (q.sortDirection !== undefined && q.sortDirection !== 'asc' && q.sortDirection !== 'desc') {
    throw invalidArgument('query.sortDirection', '"asc" or "desc"', q.sortDirection);
  }
  for (const key of ['limit', 'offset'] as const) {
    const v = q[key];
    if (v !== undefined && (!Number.isInteger(v) || (v as number) < 0)) {
      throw invalidArgument(`query.${key}`, 'an integer from 0 up', v);
    }
  }
  return q as JobQuery;
}

/** Validates a group-by field. @internal */
export function checkGroupField(field: unknown): JobGroupField {
  if (!GROUP_FIELDS.includes(field as JobGroupField)) {
    throw invalidArgument('groupBy', `one of ${GROUP_FIELDS.join(', ')}`, field);
  }
  return field as JobGroupField;
}

const NULLABLE = new Set(['description', 'jobResult', 'managementNodeUuid', 'targetResourceUuid', 'executeTime']);

/** Whether a job matches a query's filters (the in-memory reference semantics). @internal */
export function matchesQuery(job: StoredJob, query: JobQuery): boolean {
  for (const field of EQUALITY_FIELDS) {
    const wanted = query[field];
    if (wanted === undefined) continue;
    const actual = job[field] as unknown;
    if (Array.isArray(wanted)) {
      if (!(wanted as unknown[]).includes(actual)) return false;
    } else if (wanted !== actual) {
      return false;
    }
  }
  for (const field of DATE_FIELDS) {
    const range = query[field];
    if (range === undefined) continue;
    const t = Date.parse(job[field]);
    if (range.from !== undefined && t < Date.parse(range.from)) return false;
    if (range.to !== undefined && t > Date.parse(range.to)) return false;
  }
  return true;
}

/** Sorts and pages jobs as a query asks (the in-memory reference semantics). @internal */
export function sortAndPage(jobs: StoredJob[], query: JobQuery): StoredJob[] {
  const field = query.sortBy ?? 'createDate';
  const direction = query.sortDirection === 'desc' ? -1 : 1;
  jobs.sort((a, b) => direction * (compareValues(a[field], b[field]) || compareValues(a.uuid, b.uuid)));
  const offset = query.offset ?? 0;
  return query.limit === undefined ? jobs.slice(offset) : jobs.slice(offset, offset + query.limit);
}

/** Nulls first, then numbers or strings in natural (code point) order. @internal */
export function compareValues(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const sa = String(a);
  const sb = String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}
