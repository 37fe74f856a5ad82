import { invalidArgument } from '../errors.js';
import { JOB_COLUMNS } from './columns.js';
import { FINAL_LONG_JOB_STATES } from '../job/states.js';
import type { JobChanges, JobGroupField, JobQuery, JobSortField, StoredJob } from './contract.js';
import { DATE_FIELDS, EQUALITY_FIELDS, checkGroupField } from './query.js';

/*
 * SQL text and row mapping of PostgresJobStore: the one place where a job's fields meet
 * column names. Values always travel as bind parameters; identifiers come only from the
 * fixed maps below or from the validated schema name.
 */

export { JOB_COLUMNS };

type JobField = keyof typeof JOB_COLUMNS;

const FIELDS = Object.keys(JOB_COLUMNS) as JobField[];
const BIGINT_FIELDS = new Set<JobField>(['executeTime', 'version', 'epoch', 'takeovers']);
const SORT_FIELDS = new Set<string>(['createDate', 'lastOpDate', 'name', 'jobName', 'state', 'uuid', 'executeTime'] satisfies JobSortField[]);

/** Every job column, for SELECT and RETURNING lists (the checkpoint is read on its own). @internal */
export const JOB_SELECT = FIELDS.map((field) => JOB_COLUMNS[field]).join(', ');

/** SQL list of the final states, for "unfinished" conditions. @internal */
export const FINAL_STATES_SQL = FINAL_LONG_JOB_STATES.map((state) => `'${state}'`).join(', ');

/** The database's clock as ISO-8601 text, in `Date.prototype.toISOString()` form. @internal */
export const DB_NOW_ISO = `to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * A RETURNING item that sends the change notification for the returned row, inside the
 * statement's own transaction (delivered only if it commits). The channel is `$1`.
 * @internal
 */
export const NOTIFY_ITEM = `pg_notify($1, json_build_object('uuid', uuid, 'state', state, 'version', version, 'managementNodeUuid', management_node_uuid)::text) AS notified`;

/** A raw row of the jobs table. @internal */
export type JobRow = Record<string, unknown>;

/**
 * Maps a row to a StoredJob: the one mapping of this store. Values are returned as stored,
 * even when corrupt (S4): the manager's record check names the bad field; a read never
 * throws over one bad row. Integers arrive as strings (int8), numbers or bigints depending
 * on the pool's type parsers, so each is converted here.
 * @internal
 */
export function rowToStoredJob(row: JobRow): StoredJob {
  const job: Record<string, unknown> = {};
  for (const field of FIELDS) {
    const value = row[JOB_COLUMNS[field]];
    job[field] = BIGINT_FIELDS.has(field) && value !== null && value !== undefined ? Number(value) : value;
  }
  return job as unknown as StoredJob;
}

/** A statement and its bind values, numbered from `$1` (or after the given offset). @internal */
export interface Statement {
  text: string;
  values: unknown[];
}

/** Collects bind values and hands out their `$n` placeholders. @internal */
export class Params {
  readonly values: unknown[];
  constructor(...initial: unknown[]) {
    this.values = initial;
  }
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/** The INSERT column list and placeholders of a whole job. @internal */
export function insertJob(table: string, job: StoredJob, params: Params): string {
  const columns = FIELDS.map((field) => JOB_COLUMNS[field]);
  const placeholders = FIELDS.map((field) => params.add(job[field]));
  return `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${placeholders.join(', ')}) RETURNING ${JOB_SELECT}, ${NOTIFY_ITEM}`;
}

/**
 * The SET list of a compare-and-set write: the given fields, the checkpoint when given
 * (`null` clears it), and the version bump. `uuid` and `version` cannot be set, as in the
 * memory store; fields given as `undefined` are left alone.
 * @internal
 */
export function setList(changes: JobChanges, params: Params): string {
  const sets: string[] = [];
  for (const field of FIELDS) {
    if (field === 'uuid' || field === 'version') continue;
    const value = (changes as Record<string, unknown>)[field];
    if (value === undefined) continue;
    sets.push(`${JOB_COLUMNS[field]} = ${params.add(value)}`);
  }
  if (changes.checkpoint !== undefined) sets.push(`checkpoint = ${params.add(changes.checkpoint)}`);
  sets.push('version = version + 1');
  return sets.join(', ');
}

/**
 * An UPDATE (for a CTE) that orphans the unfinished jobs matching `condition`: owner
 * cleared, epoch and version incremented, lastOpDate set on the database's clock, a
 * notification for each. Uses `$1` as the channel.
 * @internal
 */
export function orphanJobs(jobsTable: string, condition: string): string {
  return `UPDATE ${jobsTable}
             SET incarnation = NULL, management_node_uuid = NULL, epoch = epoch + 1, version = version + 1,
                 last_op_date = ${DB_NOW_ISO}
           WHERE ${condition} AND state NOT IN (${FINAL_STATES_SQL})
          RETURNING ${NOTIFY_ITEM}`;
}

/**
 * The WHERE clause of a query, with the memory store's semantics: equality (or any of an
 * array; `null` matches NULL; an empty array matches nothing), and inclusive date ranges.
 * Like the memory store it does not validate values (the manager does, at its boundary),
 * so a query can look for corrupt values too.
 *
 * Dates are stored as the ISO-8601 text they were given and compared as text (the columns
 * collate "C"), which orders `toISOString()` values by time; the bounds are normalised to
 * that form first, and a bound that is no date is ignored, as in the memory store.
 * @internal
 */
export function whereClause(query: JobQuery, params: Params): string {
  const conditions: string[] = [];
  for (const field of EQUALITY_FIELDS) {
    const wanted = query[field] as unknown;
    if (wanted === undefined) continue;
    const column = JOB_COLUMNS[field];
    const values = Array.isArray(wanted) ? (wanted as unknown[]) : [wanted];
    const present = values.filter((v) => v !== null);
    const parts: string[] = [];
    if (present.length < values.length) parts.push(`${column} IS NULL`);
    if (present.length > 0) {
      parts.push(`${column} = ANY(${params.add(present)}::${BIGINT_FIELDS.has(field) ? 'numeric' : 'text'}[])`);
    }
    conditions.push(parts.length === 0 ? 'FALSE' : parts.length === 1 ? (parts[0] as string) : `(${parts.join(' OR ')})`);
  }
  for (const field of DATE_FIELDS) {
    const range = query[field];
    if (range === undefined) continue;
    const column = JOB_COLUMNS[field];
    const from = isoBound(range.from);
    const to = isoBound(range.to);
    if (from !== undefined) conditions.push(`${column} >= ${params.add(from)}`);
    if (to !== undefined) conditions.push(`${column} <= ${params.add(to)}`);
  }
  return conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`;
}

/**
 * ORDER BY and paging of a query: the memory store's order (nulls first ascending, last
 * descending; ties broken by uuid in the same direction; text in code-point order).
 * @internal
 */
export function orderAndPage(query: JobQuery, params: Params): string {
  const field: JobSortField = query.sortBy ?? 'createDate';
  // Identifiers cannot be bind parameters: an unknown one is refused, never spliced in.
  if (!SORT_FIELDS.has(field)) {
    throw invalidArgument('query.sortBy', `one of ${[...SORT_FIELDS].join(', ')}`, field);
  }
  const direction = query.sortDirection === 'desc' ? 'DESC NULLS LAST' : 'ASC NULLS FIRST';
  let sql = `ORDER BY ${JOB_COLUMNS[field]} ${direction}, uuid ${direction}`;
  if (query.limit !== undefined) sql += ` LIMIT ${params.add(query.limit)}`;
  if (query.offset !== undefined && query.offset > 0) sql += ` OFFSET ${params.add(query.offset)}`;
  return sql;
}

/** The column to group a count by (validated). @internal */
export function groupColumn(field: JobGroupField): string {
  return JOB_COLUMNS[checkGroupField(field)];
}

/** Quotes an identifier for SQL. @internal */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function isoBound(value: string | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : new Date(time).toISOString();
}
