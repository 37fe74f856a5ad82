import { FlowChainError, FlowChainErrorCode, invalidArgument } from '../errors.js';
import type {
  ClaimRequest,
  JobChange,
  JobChanges,
  JobCount,
  JobGroupField,
  JobQuery,
  JobStore,
  JobWriteCondition,
  NodeRecord,
  NodeRegistry,
  ProgressEntry,
  StoredJob,
} from './contract.js';
import { notFound, ownershipLost, versionConflict } from './memory.js';
import { checkGroupField, checkJobQuery, compareValues } from './query.js';
import { NOW_MS_SQL, SqliteConnection, type SqliteConnectionSource } from './sqlite-connection.js';
import {
  FINAL_STATES_SQL,
  JOB_COLUMNS,
  JOB_COLUMN_LIST,
  NODE_SELECT,
  type JobRow,
  buildJobFilter,
  buildOrderAndPage,
  toNodeRecord,
  toStoredJob,
} from './sqlite-query.js';
import { SQLITE_SCHEMA_VERSION } from './sqlite-schema.js';

/**
 * A prepared statement, as far as {@link SqliteJobStore} uses one: better-sqlite3's
 * `Statement` fits it.
 *
 * @example
 * ```ts
 * import type { SqliteDatabaseLike, SqliteStatementLike } from 'flowchain/sqlite';
 * const countRows = (db: SqliteDatabaseLike): unknown => {
 *   const statement: SqliteStatementLike = db.prepare('SELECT COUNT(*) AS n FROM flowchain_jobs');
 *   return statement.get();
 * };
 * ```
 */
export interface SqliteStatementLike {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  /** When present, the store turns BigInt results off for its statements (versions are numbers). */
  safeIntegers?(toggle?: boolean): unknown;
}

/**
 * A SQLite connection, as far as {@link SqliteJobStore} uses one: a better-sqlite3 (v12)
 * `Database` fits it. Typed structurally so that flowchain never depends on the driver's
 * types; the handle stays yours (the store never closes it).
 *
 * @example
 * ```ts
 * import Database from 'better-sqlite3';
 * import { SqliteJobStore, type SqliteDatabaseLike } from 'flowchain/sqlite';
 * const db: SqliteDatabaseLike = new Database('app.db');
 * const store = new SqliteJobStore({ database: db });
 * ```
 */
export interface SqliteDatabaseLike {
  prepare(source: string): SqliteStatementLike;
  exec(source: string): unknown;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  /** Wraps `fn` in a transaction; the store only ever runs `.immediate()` (`BEGIN IMMEDIATE`). */
  transaction<Result>(fn: () => Result): { immediate(): Result };
  close(): unknown;
}

/**
 * Options of {@link SqliteJobStore}: a file for the store to open (and close), or a
 * connection you own.
 *
 * @example
 * ```ts
 * import type { SqliteJobStoreOptions } from 'flowchain/sqlite';
 * const options: SqliteJobStoreOptions = { filename: '/var/lib/app/jobs.db', busyTimeoutMs: 2_000 };
 * ```
 */
export type SqliteJobStoreOptions =
  | {
      /**
       * The database file, created if missing (its directory must exist), or `':memory:'`
       * for a private in-memory database. better-sqlite3 is loaded when the store is
       * first used.
       */
      filename: string;
      database?: never;
      /**
       * How long a statement waits for another connection's write lock before failing
       * with `STORE_FAILURE`. Busy waits block the event loop: keep it well below the
       * manager's `leaseTtlMs`.
       * @default 5000
       */
      busyTimeoutMs?: number;
    }
  | {
      /**
       * A connection you opened (better-sqlite3 12). The store sets `journal_mode=WAL` and
       * `synchronous=FULL` on it, creates its `flowchain_*` tables, and never closes it.
       */
      database: SqliteDatabaseLike;
      filename?: never;
      /** Sets the connection's `busy_timeout`; when omitted, the connection's own setting stays. */
      busyTimeoutMs?: number;
    };

/** The options, checked: exactly one of `filename` and `database`. */
type ResolvedSqliteJobStoreOptions = SqliteConnectionSource;

/**
 * The job store on SQLite (better-sqlite3 12): one file shared by every process on one
 * host, in WAL mode with `synchronous=FULL` and a busy timeout. The schema is created and
 * migrated by the store and versioned; a database written by a newer flowchain is refused
 * with `SCHEMA_VERSION_UNSUPPORTED`.
 *
 * Every read-then-write runs in one `BEGIN IMMEDIATE` transaction and every write is a
 * compare-and-set, so several managers in several processes can share the file (J7, J8).
 * Lease times come from SQLite's clock. Nothing happens at import or in the constructor:
 * the driver is loaded and the file opened on first use (or by {@link SqliteJobStore.open}).
 *
 * `subscribe` reports the writes made through this instance only; changes made by other
 * processes are found by the manager's polling.
 *
 * @example
 * ```ts
 * import { JobManager } from 'flowchain';
 * import { SqliteJobStore } from 'flowchain/sqlite';
 *
 * await using store = new SqliteJobStore({ filename: 'jobs.db' });
 * const jobs = new JobManager({ store, nodeId: 'mn-1' });
 * await jobs.start();
 * await jobs.stop();
 * ```
 */
export class SqliteJobStore implements JobStore {
  /** The schema version this version of flowchain writes (recorded in `flowchain_meta`). */
  static readonly schemaVersion: number = SQLITE_SCHEMA_VERSION;

  /** Node heartbeats and leases on the SQLite clock (J8). */
  readonly nodes: NodeRegistry;
  private readonly connection: SqliteConnection;
  private readonly listeners = new Set<(change: JobChange) => void>();

  constructor(options: SqliteJobStoreOptions) {
    this.connection = new SqliteConnection(resolveOptions(options));
    this.nodes = {
      register: (node) => this.register(node),
      heartbeat: (incarnation, leaseTtlMs) => this.heartbeat(incarnation, leaseTtlMs),
      leave: (incarnation) => this.leave(incarnation),
      list: () => this.listNodes(),
      reap: (graceMs, retainDeadMs) => this.reap(graceMs, retainDeadMs),
    };
  }

  /**
   * Opens the database, applies the pragmas and creates or migrates the schema. Optional:
   * every method does it on first use; call it to surface a bad file or schema at startup.
   */
  async open(): Promise<void> {
    await this.connection.ready('open');
  }

  // ---- jobs -------------------------------------------------------------------------

  async createJob(job: StoredJob): Promise<StoredJob> {
    return this.connection.run('createJob', () => {
      const fields = Object.keys(JOB_COLUMNS) as (keyof StoredJob)[];
      const rows = this.sql(
        `INSERT INTO flowchain_jobs (${JOB_COLUMN_LIST}) VALUES (${fields.map(() => '?').join(', ')})
         ON CONFLICT (uuid) DO NOTHING RETURNING ${JOB_COLUMN_LIST}`,
      ).all(...fields.map((field) => job[field])) as JobRow[];
      if (rows.length !== 1) {
        throw new FlowChainError(FlowChainErrorCode.STORE_CONFLICT, `A job with uuid ${job.uuid} already exists.`, {
          details: { uuid: job.uuid },
        });
      }
      const stored = toStoredJob(rows[0] as JobRow);
      this.changed([stored]);
      return stored;
    });
  }

  async getJob(uuid: string): Promise<StoredJob | undefined> {
    return this.connection.run('getJob', () => {
      const row = this.sql(`SELECT ${JOB_COLUMN_LIST} FROM flowchain_jobs WHERE uuid = ?`).get(uuid) as JobRow | undefined;
      return row === undefined ? undefined : toStoredJob(row);
    });
  }

  async updateJob(uuid: string, condition: JobWriteCondition, changes: JobChanges): Promise<StoredJob> {
    return this.connection.run('updateJob', () => {
      const assignments: string[] = [];
      const params: unknown[] = [];
      for (const [key, value] of Object.entries(changes)) {
        // `uuid` and `version` are the store's to set, as in the memory store.
        if (value === undefined || key === 'uuid' || key === 'version') continue;
        const column = key === 'checkpoint' ? 'checkpoint' : columnOf(key);
        if (column === undefined) throw invalidArgument(`changes.${key}`, 'a field of a stored job', value);
        assignments.push(`${column} = ?`);
        params.push(value);
      }
      assignments.push('version = version + 1');
      const owner = condition.owner;
      const fence = owner === undefined ? '' : ' AND incarnation = ? AND epoch = ?';
      const updated = this.connection.immediate(() => {
        this.checkCondition(uuid, condition);
        // The WHERE repeats the condition (a fenced compare-and-set): belt and braces
        // under the write lock the transaction already holds.
        const rows = this.sql(
          `UPDATE flowchain_jobs SET ${assignments.join(', ')} WHERE uuid = ? AND version = ?${fence} RETURNING ${JOB_COLUMN_LIST}`,
        ).all(...params, uuid, condition.version, ...(owner === undefined ? [] : [owner.incarnation, owner.epoch])) as JobRow[];
        if (rows.length !== 1) throw versionConflict(uuid, condition.version, undefined);
        return toStoredJob(rows[0] as JobRow);
      });
      this.changed([updated]);
      return updated;
    });
  }

  async deleteJob(uuid: string, condition: JobWriteCondition): Promise<void> {
    return this.connection.run('deleteJob', () => {
      const deleted = this.connection.immediate(() => {
        this.checkCondition(uuid, condition);
        const rows = this.sql(`DELETE FROM flowchain_jobs WHERE uuid = ? AND version = ? RETURNING ${JOB_COLUMN_LIST}`).all(
          uuid,
          condition.version,
        ) as JobRow[];
        if (rows.length !== 1) throw versionConflict(uuid, condition.version, undefined);
        const job = toStoredJob(rows[0] as JobRow);
        this.sql('DELETE FROM flowchain_progress WHERE job_uuid = ?').run(job.uuid);
        return job;
      });
      this.changed([deleted]);
    });
  }

  async queryJobs(query: JobQuery): Promise<StoredJob[]> {
    const checked = checkJobQuery(query);
    return this.connection.run('queryJobs', () => {
      const filter = buildJobFilter(checked);
      const order = buildOrderAndPage(checked);
      const rows = this.sql(`SELECT ${JOB_COLUMN_LIST} FROM flowchain_jobs${filter.where}${order.where}`).all(
        ...filter.params,
        ...order.params,
      ) as JobRow[];
      return rows.map(toStoredJob);
    });
  }

  async countJobs(query: JobQuery): Promise<number> {
    const checked = checkJobQuery(query);
    return this.connection.run('countJobs', () => {
      const filter = buildJobFilter(checked);
      const row = this.sql(`SELECT COUNT(*) AS count FROM flowchain_jobs${filter.where}`).get(...filter.params) as {
        count: number;
      };
      return row.count;
    });
  }

  async countJobsBy(query: JobQuery, field: JobGroupField): Promise<JobCount[]> {
    const checked = checkJobQuery(query);
    const column = JOB_COLUMNS[checkGroupField(field)];
    return this.connection.run('countJobsBy', () => {
      const filter = buildJobFilter(checked);
      // NULL sorts first, then the values in binary (code point) order, as in memory.
      const rows = this.sql(
        `SELECT ${column} AS value, COUNT(*) AS count FROM flowchain_jobs${filter.where} GROUP BY ${column} ORDER BY ${column}`,
      ).all(...filter.params) as JobCount[];
      return rows.map((row) => ({ value: row.value, count: row.count }));
    });
  }

  async claimJobs(request: ClaimRequest): Promise<StoredJob[]> {
    const limit = request.limit;
    if (typeof limit !== 'number' || !(limit >= 0)) throw invalidArgument('request.limit', 'a number from 0 up', limit);
    return this.connection.run('claimJobs', () => {
      const rows = this.connection.immediate(() => {
        const now = this.connection.now();
        // One statement picks and takes the jobs, and SQLite has one writer at a time:
        // no two claimers can take the same row (no SKIP LOCKED needed).
        return this.sql(
          `UPDATE flowchain_jobs
              SET incarnation = @incarnation, management_node_uuid = @nodeId,
                  epoch = epoch + 1, version = version + 1,
                  takeovers = takeovers + (CASE WHEN state IN ('Running', 'Canceling') THEN 1 ELSE 0 END),
                  last_op_date = @iso
            WHERE uuid IN (
              SELECT uuid FROM flowchain_jobs
               WHERE state NOT IN ${FINAL_STATES_SQL}
                 AND job_name IN (SELECT value FROM json_each(@kinds))
                 AND CASE WHEN @scope = 'orphans' THEN incarnation IS NULL
                          ELSE incarnation IS NOT NULL AND management_node_uuid = @nodeId AND incarnation <> @incarnation
                               AND NOT EXISTS (SELECT 1 FROM flowchain_nodes n
                                                WHERE n.incarnation = flowchain_jobs.incarnation AND n.state = 'alive')
                     END
               ORDER BY create_date, uuid
               LIMIT @limit)
            RETURNING ${JOB_COLUMN_LIST}`,
        ).all({
          incarnation: request.incarnation,
          nodeId: request.nodeId,
          scope: request.scope,
          iso: now.iso,
          kinds: JSON.stringify([...request.jobNames]),
          limit: Number.isFinite(limit) ? Math.floor(limit) : -1,
        }) as JobRow[];
      });
      // RETURNING has no order; the memory store's is oldest first.
      const claimed = rows
        .map(toStoredJob)
        .sort((a, b) => compareValues(a.createDate, b.createDate) || compareValues(a.uuid, b.uuid));
      this.changed(claimed);
      return claimed;
    });
  }

  async getCheckpoint(uuid: string): Promise<string | undefined> {
    return this.connection.run('getCheckpoint', () => {
      const row = this.sql('SELECT checkpoint FROM flowchain_jobs WHERE uuid = ?').get(uuid) as
        | { checkpoint: string | null }
        | undefined;
      return row?.checkpoint ?? undefined;
    });
  }

  async appendProgress(entry: ProgressEntry): Promise<void> {
    return this.connection.run('appendProgress', () => {
      this.sql('INSERT INTO flowchain_progress (api_id, job_uuid, percent, detail, time) VALUES (?, ?, ?, ?, ?)').run(
        entry.apiId,
        entry.jobUuid,
        entry.percent,
        entry.detail,
        entry.time,
      );
    });
  }

  async listProgress(apiId: string): Promise<ProgressEntry[]> {
    return this.connection.run('listProgress', () => {
      const rows = this.sql(
        'SELECT api_id, job_uuid, percent, detail, time FROM flowchain_progress WHERE api_id = ? ORDER BY seq',
      ).all(apiId) as Record<string, unknown>[];
      return rows.map((row) => ({
        apiId: row.api_id as string,
        jobUuid: row.job_uuid as string,
        percent: row.percent as number,
        detail: row.detail as string | null,
        time: row.time as string,
      }));
    });
  }

  /**
   * Reports writes made through this store instance, after they commit. Writes by other
   * processes (or other instances) on the same file are not reported: the manager finds
   * them by polling.
   */
  subscribe(listener: (change: JobChange) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Closes the database if the store opened it (a `database` you passed stays open). Idempotent. */
  async close(): Promise<void> {
    this.listeners.clear();
    await this.connection.close();
  }

  /** Same as {@link SqliteJobStore.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- nodes ------------------------------------------------------------------------

  private async register(node: { nodeId: string; incarnation: string; leaseTtlMs: number }): Promise<void> {
    return this.connection.run('register', () => {
      this.connection.immediate(() => {
        const now = this.connection.now();
        // A still-alive incarnation of the same node is a previous run of it: mark it dead
        // so that its next heartbeat fails and it fences itself off.
        this.sql("UPDATE flowchain_nodes SET state = 'dead' WHERE node_id = ? AND state = 'alive'").run(node.nodeId);
        this.sql(
          `INSERT INTO flowchain_nodes (incarnation, node_id, started_at_ms, heartbeat_at_ms, lease_until_ms, state)
           VALUES (@incarnation, @nodeId, @now, @now, @now + @ttl, 'alive')
           ON CONFLICT (incarnation) DO UPDATE SET node_id = excluded.node_id, started_at_ms = excluded.started_at_ms,
             heartbeat_at_ms = excluded.heartbeat_at_ms, lease_until_ms = excluded.lease_until_ms, state = 'alive'`,
        ).run({ incarnation: node.incarnation, nodeId: node.nodeId, now: now.ms, ttl: node.leaseTtlMs });
      });
    });
  }

  private async heartbeat(incarnation: string, leaseTtlMs: number): Promise<boolean> {
    return this.connection.run('heartbeat', () => {
      // One statement, so both times are the same SQLite instant.
      const result = this.sql(
        `UPDATE flowchain_nodes SET heartbeat_at_ms = ${NOW_MS_SQL}, lease_until_ms = ${NOW_MS_SQL} + ?
          WHERE incarnation = ? AND state = 'alive'`,
      ).run(leaseTtlMs, incarnation);
      return result.changes === 1;
    });
  }

  private async leave(incarnation: string): Promise<void> {
    return this.connection.run('leave', () => {
      const orphaned = this.connection.immediate(() => {
        this.sql('DELETE FROM flowchain_nodes WHERE incarnation = ?').run(incarnation);
        return this.orphanJobs('incarnation = @incarnation', { incarnation, iso: this.connection.now().iso });
      });
      this.changed(orphaned);
    });
  }

  private async listNodes(): Promise<NodeRecord[]> {
    return this.connection.run('listNodes', () =>
      (this.sql(`${NODE_SELECT} ORDER BY rowid`).all() as Record<string, unknown>[]).map(toNodeRecord),
    );
  }

  private async reap(graceMs: number, retainDeadMs: number | undefined): Promise<string[]> {
    return this.connection.run('reap', () => {
      const { dead, orphaned } = this.connection.immediate(() => {
        const now = this.connection.now();
        const rows = this.sql(
          `UPDATE flowchain_nodes SET state = 'dead'
            WHERE state = 'alive' AND lease_until_ms + ? < ? RETURNING rowid, incarnation`,
        ).all(graceMs, now.ms) as { rowid: number; incarnation: string }[];
        // Jobs of any dead incarnation (also one superseded by a restart), or of one the
        // registry does not know, become orphans.
        const jobs = this.orphanJobs(
          `incarnation IS NOT NULL AND incarnation NOT IN (SELECT incarnation FROM flowchain_nodes WHERE state = 'alive')`,
          { iso: now.iso },
        );
        if (retainDeadMs !== undefined) {
          this.sql(`DELETE FROM flowchain_nodes WHERE state = 'dead' AND lease_until_ms + ? < ?`).run(retainDeadMs, now.ms);
        }
        return { dead: rows.sort((a, b) => a.rowid - b.rowid).map((row) => row.incarnation), orphaned: jobs };
      });
      this.changed(orphaned);
      return dead;
    });
  }

  /** Clears the owner of every unfinished job matching `where`, at `params.iso`; inside a transaction. */
  private orphanJobs(where: string, params: { iso: string } & Record<string, unknown>): JobChange[] {
    const rows = this.sql(
      `UPDATE flowchain_jobs
          SET incarnation = NULL, management_node_uuid = NULL, epoch = epoch + 1, version = version + 1,
              last_op_date = @iso
        WHERE ${where} AND state NOT IN ${FINAL_STATES_SQL}
        RETURNING uuid, state, version, management_node_uuid`,
    ).all(params) as Record<string, unknown>[];
    return rows.map(toChange);
  }

  // ---- plumbing ---------------------------------------------------------------------

  private sql(text: string): SqliteStatementLike {
    return this.connection.statement(text);
  }

  /** Reads the job's owner and version and throws as the memory store does (owner first). */
  private checkCondition(uuid: string, condition: JobWriteCondition): void {
    const current = this.sql('SELECT incarnation, epoch, version FROM flowchain_jobs WHERE uuid = ?').get(uuid) as
      | { incarnation: string | null; epoch: number; version: number }
      | undefined;
    if (current === undefined) throw notFound(uuid);
    const owner = condition.owner;
    if (owner !== undefined && (current.incarnation !== owner.incarnation || current.epoch !== owner.epoch)) {
      throw ownershipLost(uuid, owner, current);
    }
    if (current.version !== condition.version) throw versionConflict(uuid, condition.version, current.version);
  }

  /** Tells subscribers about committed writes, after the current call returns. */
  private changed(jobs: readonly (StoredJob | JobChange)[]): void {
    if (this.listeners.size === 0 || jobs.length === 0) return;
    const changes: JobChange[] = jobs.map((job) => ({
      uuid: job.uuid,
      state: job.state,
      version: job.version,
      managementNodeUuid: job.managementNodeUuid,
    }));
    queueMicrotask(() => {
      for (const change of changes) {
        for (const listener of this.listeners) {
          try {
            listener(change);
          } catch {
            // A listener's failure is its own; notifications are hints.
          }
        }
      }
    });
  }
}

function resolveOptions(options: SqliteJobStoreOptions): ResolvedSqliteJobStoreOptions {
  if (options === null || typeof options !== 'object') {
    throw invalidArgument('options', 'an object with `filename` or `database`', options);
  }
  const { filename, database, busyTimeoutMs } = options as {
    filename?: unknown;
    database?: unknown;
    busyTimeoutMs?: unknown;
  };
  if ((filename === undefined) === (database === undefined)) {
    throw invalidArgument('options', 'an object with exactly one of `filename` or `database`', options);
  }
  if (filename !== undefined && (typeof filename !== 'string' || filename === '')) {
    throw invalidArgument('filename', "a non-empty path or ':memory:'", filename);
  }
  if (database !== undefined && !isDatabaseLike(database)) {
    throw invalidArgument('database', 'a better-sqlite3 Database (with prepare, exec, pragma, transaction and close)', database);
  }
  if (
    busyTimeoutMs !== undefined &&
    (typeof busyTimeoutMs !== 'number' || !Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > 2 ** 31 - 1)
  ) {
    throw invalidArgument('busyTimeoutMs', 'an integer number of milliseconds from 0 up', busyTimeoutMs);
  }
  return {
    filename: filename as string | undefined,
    database: database as SqliteDatabaseLike | undefined,
    busyTimeoutMs: busyTimeoutMs as number | undefined,
  };
}

function isDatabaseLike(value: unknown): value is SqliteDatabaseLike {
  if (value === null || typeof value !== 'object') return false;
  const db = value as Record<string, unknown>;
  return ['prepare', 'exec', 'pragma', 'transaction', 'close'].every((name) => typeof db[name] === 'function');
}

function columnOf(field: string): string | undefined {
  return Object.hasOwn(JOB_COLUMNS, field) ? JOB_COLUMNS[field as keyof typeof JOB_COLUMNS] : undefined;
}

function toChange(row: Record<string, unknown>): JobChange {
  return {
    uuid: row.uuid as string,
    state: row.state as JobChange['state'],
    version: row.version as number,
    managementNodeUuid: row.management_node_uuid as string | null,
  };
}
