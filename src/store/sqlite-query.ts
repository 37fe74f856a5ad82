import { FINAL_LONG_JOB_STATES } from '../job/states.js';
import { JOB_COLUMNS } from './columns.js';
import type { JobQuery, NodeRecord, StoredJob } from './contract.js';
import { DATE_FIELDS, EQUALITY_FIELDS } from './query.js';

/*
 * SQL for the SQLite store: the job columns, the one place rows become records, and the
 * translation of a JobQuery into WHERE / ORDER BY / LIMIT with the memory store's semantics.
 */

export { JOB_COLUMNS };

/** A job row as SQLite returns it: anything may be in it (S4), so every value is unknown. @internal */
export type JobRow = Record<(typeof JOB_COLUMNS)[keyof StoredJob], unknown>;

/** The job columns (without the checkpoint), for SELECT and RETURNING lists. @internal */
export const JOB_COLUMN_LIST = Object.values(JOB_COLUMNS).join(', ');

/** `('Succeeded', 'Failed', 'Canceled')`, from the state machine's own list. @internal */
export const FINAL_STATES_SQL = `(${FINAL_LONG_JOB_STATES.map((state) => `'${state}'`).join(', ')})`;

/** ISO-8601 text (as `toISOString()` writes it) of a millisecond time, in SQL. @internal */
export const isoSql = (msExpression: string): string => `strftime('%Y-%m-%dT%H:%M:%fZ', (${msExpression}) / 1000.0, 'unixepoch')`;

/**
 * The one place a job row becomes a {@link StoredJob}. Values are passed through exactly
 * as stored, even when corrupt: the manager checks records and reports a bad one by uuid
 * and field (S4); the store must not throw on it or hide the other rows.
 * @internal
 */
export function toStoredJob(row: JobRow): StoredJob {
  const job: Record<string, unknown> = {};
  for (const [field, column] of Object.entries(JOB_COLUMNS)) job[field] = row[column];
  return job as unknown as StoredJob;
}

/** A node row, lease times in milliseconds of the SQLite clock, rendered as ISO text in SQL. @internal */
export const NODE_SELECT = `SELECT incarnation, node_id, state,
  ${isoSql('started_at_ms')} AS started_at,
  ${isoSql('heartbeat_at_ms')} AS heartbeat_at,
  ${isoSql('lease_until_ms')} AS lease_until
  FROM flowchain_nodes`;

/** The one place a node row becomes a {@link NodeRecord}. @internal */
export function toNodeRecord(row: Record<string, unknown>): NodeRecord {
  return {
    nodeId: row.node_id as string,
    incarnation: row.incarnation as string,
    startedAt: row.started_at as string,
    heartbeatAt: row.heartbeat_at as string,
    leaseUntil: row.lease_until as string,
    state: row.state as NodeRecord['state'],
  };
}

/** A WHERE clause (or an empty string) and its positional parameters. @internal */
export interface SqlFilter {
  where: string;
  params: unknown[];
}

/**
 * Translates a query's filters with the memory store's semantics: a value (or `null`)
 * must equal the field, an array means any of its values (`[]` matches nothing), date
 * bounds are inclusive. Arrays travel as one JSON parameter (`json_each`), so the SQL text
 * (and the prepared-statement cache) does not grow with their length.
 * @internal
 */
export function buildJobFilter(query: JobQuery): SqlFilter {
  const conditions: string[] = [];
  const params: unknown[] = [];
  for (const field of EQUALITY_FIELDS) {
    const wanted = query[field] as unknown;
    if (wanted === undefined) continue;
    const column = JOB_COLUMNS[field];
    if (!Array.isArray(wanted)) {
      if (wanted === null) {
        conditions.push(`${column} IS NULL`);
      } else {
        conditions.push(`${column} = ?`);
        params.push(wanted);
      }
      continue;
    }
    const values = wanted as unknown[];
    const nonNull = values.filter((value) => value !== null);
    const alternatives: string[] = [];
    if (nonNull.length > 0) {
      alternatives.push(`${column} IN (SELECT value FROM json_each(?))`);
      params.push(JSON.stringify(nonNull));
    }
    if (nonNull.length < values.length) alternatives.push(`${column} IS NULL`);
    conditions.push(alternatives.length === 0 ? '0' : `(${alternatives.join(' OR ')})`);
  }
  for (const field of DATE_FIELDS) {
    const range = query[field];
    if (range === undefined) continue;
    const column = JOB_COLUMNS[field];
    // Bounds are brought to the form the manager stores (`toISOString()`), so that string
    // comparison orders them as instants. An unparsable bound filters nothing, as in memory.
    const from = canonicalDate(range.from);
    const to = canonicalDate(range.to);
    if (from !== undefined) {
      conditions.push(`${column} >= ?`);
      params.push(from);
    }
    if (to !== undefined) {
      conditions.push(`${column} <= ?`);
      params.push(to);
    }
  }
  return { where: conditions.length === 0 ? '' : ` WHERE ${conditions.join(' AND ')}`, params };
}

/**
 * ORDER BY and paging: `sortBy` (default `createDate`) then `uuid`, both in the given
 * direction, as the memory store sorts. SQLite's NULLs-first-ascending matches too.
 * @internal
 */
export function buildOrderAndPage(query: JobQuery): SqlFilter {
  const column = JOB_COLUMNS[query.sortBy ?? 'createDate'];
  const direction = query.sortDirection === 'desc' ? 'DESC' : 'ASC';
  let sql = ` ORDER BY ${column} ${direction}, uuid ${direction}`;
  const params: unknown[] = [];
  if (query.limit !== undefined || (query.offset !== undefined && query.offset > 0)) {
    sql += ' LIMIT ? OFFSET ?';
    params.push(query.limit ?? -1, query.offset ?? 0);
  }
  return { where: sql, params };
}

function canonicalDate(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : new Date(time).toISOString();
}
