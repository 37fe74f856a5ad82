import { FlowChainError, FlowChainErrorCode, describeThrown, isFlowChainError } from '../errors.js';
import type {
  ClaimRequest,
  JobChange,
  JobChanges,
  JobCount,
  JobGroupField,
  JobQuery,
  JobStore,
  JobWriteCondition,
  NodeRegistry,
  ProgressEntry,
  StoredJob,
} from './contract.js';
import { notFound, ownershipLost, versionConflict } from './memory.js';
import { loadPg, type OwnedPgPool, type PgModuleLike, type PgPoolLike } from './postgres-driver.js';
import { ChangeListener, type ListenConnection } from './postgres-listen.js';
import { PostgresNodeRegistry } from './postgres-nodes.js';
import { resolveOptions, type PostgresJobStoreOptions, type ResolvedPostgresJobStoreOptions } from './postgres-options.js';
import { ensureSchema } from './postgres-schema.js';
import {
  DB_NOW_ISO,
  FINAL_STATES_SQL,
  JOB_SELECT,
  NOTIFY_ITEM,
  Params,
  groupColumn,
  insertJob,
  orderAndPage,
  quoteIdent,
  rowToStoredJob,
  setList,
  whereClause,
} from './postgres-sql.js';
import { compareValues } from './query.js';

/**
 * The PostgreSQL job store (S2): for many processes on many hosts. Every write is one short
 * statement (one transaction), fenced by `version` and, for an owner, by `incarnation` and
 * `epoch`; claims use `FOR UPDATE SKIP LOCKED`; node leases run on the database's clock;
 * every write sends a `NOTIFY` as a wake-up hint to subscribers on any host. The schema is
 * created and migrated on first use. The constructor does no I/O, and `pg` is loaded only
 * when the store first connects.
 *
 * @example
 * ```ts
 * import { JobManager } from 'flowchain';
 * import { PostgresJobStore } from 'flowchain/postgres';
 *
 * const store = new PostgresJobStore({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
 * const jobs = new JobManager({ store, nodeId: 'mn-1' });
 * await jobs.start();
 * // ...
 * await jobs.stop();
 * await store.close();
 * ```
 */
export class PostgresJobStore implements JobStore {
  /** Node heartbeats, leases and reaping, on the database's clock (J8). */
  readonly nodes: NodeRegistry;
  /** The PostgreSQL schema that holds this store's tables. */
  readonly schema: string;
  private readonly options: ResolvedPostgresJobStoreOptions;
  private readonly jobsTable: string;
  private readonly progressTable: string;
  private readonly nodesTable: string;
  private readonly channel: string;
  private readonly listeners = new Set<(change: JobChange) => void>();
  private readonly listener: ChangeListener;
  private pool: PgPoolLike | undefined;
  private ownedPool: OwnedPgPool | undefined;
  private opening: Promise<PgPoolLike> | undefined;
  private migrating: Promise<void> | undefined;
  private migrated = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(options: PostgresJobStoreOptions) {
    this.options = resolveOptions(options);
    this.schema = this.options.schema;
    const s = quoteIdent(this.schema);
    this.jobsTable = `${s}.jobs`;
    this.progressTable = `${s}.progress`;
    this.nodesTable = `${s}.nodes`;
    this.channel = `flowchain:${this.schema}`;
    if (this.options.source.kind === 'pool') this.pool = this.options.source.pool;
    this.listener = new ChangeListener({
      channel: this.channel,
      keepAliveMs: this.options.listenKeepAliveMs,
      connect: () => this.openListenConnection(),
      onPayload: (payload) => this.deliver(payload),
      onError: (error, context) => this.report(error, context),
    });
    this.nodes = new PostgresNodeRegistry(
      { run: (method, body) => this.run(method, body), write: (method, body) => this.write(method, body) },
      { jobs: this.jobsTable, nodes: this.nodesTable },
      this.channel,
    );
  }

  // ---- jobs -------------------------------------------------------------------------

  async createJob(job: StoredJob): Promise<StoredJob> {
    return this.write('createJob', async (pool) => {
      const params = new Params(this.channel);
      try {
        const result = await pool.query(insertJob(this.jobsTable, job, params), params.values);
        return rowToStoredJob(firstRow(result.rows));
      } catch (error) {
        if (sqlState(error) === UNIQUE_VIOLATION) {
          throw new FlowChainError(FlowChainErrorCode.STORE_CONFLICT, `A job with uuid ${job.uuid} already exists.`, {
            cause: error,
            details: { uuid: job.uuid },
          });
        }
        throw error;
      }
    });
  }

  async getJob(uuid: string): Promise<StoredJob | undefined> {
    return this.run('getJob', async (pool) => {
      const result = await pool.query(`SELECT ${JOB_SELECT} FROM ${this.jobsTable} WHERE uuid = $1`, [uuid]);
      const row = result.rows[0];
      return row === undefined ? undefined : rowToStoredJob(row);
    });
  }

  async updateJob(uuid: string, condition: JobWriteCondition, changes: JobChanges): Promise<StoredJob> {
    return this.write('updateJob', async (pool) => {
      const params = new Params(this.channel, uuid, condition.version);
      const fence = this.fence(condition, params);
      const result = await pool.query(
        `UPDATE ${this.jobsTable} SET ${setList(changes, params)} WHERE ${fence} RETURNING ${JOB_SELECT}, ${NOTIFY_ITEM}`,
        params.values,
      );
      const row = result.rows[0];
      if (row === undefined) throw await this.classify(pool, uuid, condition);
      return rowToStoredJob(row);
    });
  }

  async deleteJob(uuid: string, condition: JobWriteCondition): Promise<void> {
    await this.write('deleteJob', async (pool) => {
      const params = new Params(this.channel, uuid, condition.version);
      const fence = this.fence(condition, params);
      // One statement: the job (with its checkpoint column) and its progress go together.
      const result = await pool.query(
        `WITH deleted AS (DELETE FROM ${this.jobsTable} WHERE ${fence} RETURNING ${JOB_SELECT}),
              progress AS (DELETE FROM ${this.progressTable} WHERE job_uuid IN (SELECT uuid FROM deleted))
         SELECT uuid, ${NOTIFY_ITEM} FROM deleted`,
        params.values,
      );
      if (result.rows.length === 0) throw await this.classify(pool, uuid, condition);
    });
  }

  async queryJobs(query: JobQuery): Promise<StoredJob[]> {
    return this.run('queryJobs', async (pool) => {
      const params = new Params();
      const where = whereClause(query, params);
      const result = await pool.query(
        `SELECT ${JOB_SELECT} FROM ${this.jobsTable} ${where} ${orderAndPage(query, params)}`,
        params.values,
      );
      return result.rows.map(rowToStoredJob);
    });
  }

  async countJobs(query: JobQuery): Promise<number> {
    return this.run('countJobs', async (pool) => {
      const params = new Params();
      const result = await pool.query(
        `SELECT count(*) AS count FROM ${this.jobsTable} ${whereClause(query, params)}`,
        params.values,
      );
      return Number(firstRow(result.rows).count);
    });
  }

  async countJobsBy(query: JobQuery, field: JobGroupField): Promise<JobCount[]> {
    return this.run('countJobsBy', async (pool) => {
      const column = groupColumn(field);
      const params = new Params();
      const result = await pool.query(
        `SELECT ${column} AS value, count(*) AS count FROM ${this.jobsTable} ${whereClause(query, params)}
         GROUP BY ${column} ORDER BY ${column} ASC NULLS FIRST`,
        params.values,
      );
      return result.rows.map((row) => ({ value: row.value as string | null, count: Number(row.count) }));
    });
  }

  async claimJobs(request: ClaimRequest): Promise<StoredJob[]> {
    return this.write('claimJobs', async (pool) => {
      if (!(request.limit > 0) || request.jobNames.length === 0) return [];
      const limit = Number.isFinite(request.limit) ? Math.ceil(request.limit) : null;
      // The CTE is MATERIALIZED so that the planner cannot turn the LIMIT-ed, SKIP LOCKED
      // subquery into a join that locks or updates more rows than the limit (Oban's note).
      const result = await pool.query(
        `WITH claimable AS MATERIALIZED (
           SELECT uuid AS claimed FROM ${this.jobsTable}
            WHERE job_name = ANY($2::text[]) AND state NOT IN (${FINAL_STATES_SQL})
              AND CASE WHEN $6 = 'orphans' THEN incarnation IS NULL
                       ELSE incarnation IS NOT NULL AND management_node_uuid = $3 AND incarnation <> $4
                            AND NOT EXISTS (SELECT 1 FROM ${this.nodesTable} n
                                             WHERE n.incarnation = ${this.jobsTable}.incarnation AND n.state = 'alive')
                  END
            ORDER BY create_date, uuid
            LIMIT $5
            FOR UPDATE SKIP LOCKED)
         UPDATE ${this.jobsTable}
            SET incarnation = $4, management_node_uuid = $3, epoch = epoch + 1, version = version + 1,
                takeovers = takeovers + CASE WHEN state IN ('Running', 'Canceling') THEN 1 ELSE 0 END,
                last_op_date = ${DB_NOW_ISO}
           FROM claimable WHERE uuid = claimable.claimed
         RETURNING ${JOB_SELECT}, ${NOTIFY_ITEM}`,
        [this.channel, [...request.jobNames], request.nodeId, request.incarnation, limit, request.scope],
      );
      return result.rows
        .map(rowToStoredJob)
        .sort((a, b) => compareValues(a.createDate, b.createDate) || compareValues(a.uuid, b.uuid));
    });
  }

  async getCheckpoint(uuid: string): Promise<string | undefined> {
    return this.run('getCheckpoint', async (pool) => {
      const result = await pool.query(`SELECT checkpoint FROM ${this.jobsTable} WHERE uuid = $1`, [uuid]);
      const checkpoint = result.rows[0]?.checkpoint;
      return typeof checkpoint === 'string' ? checkpoint : undefined;
    });
  }

  async appendProgress(entry: ProgressEntry): Promise<void> {
    await this.run('appendProgress', async (pool) => {
      await pool.query(
        `INSERT INTO ${this.progressTable} (api_id, job_uuid, percent, detail, report_time) VALUES ($1, $2, $3, $4, $5)`,
        [entry.apiId, entry.jobUuid, entry.percent, entry.detail, entry.time],
      );
    });
  }

  async listProgress(apiId: string): Promise<ProgressEntry[]> {
    return this.run('listProgress', async (pool) => {
      const result = await pool.query(
        `SELECT api_id, job_uuid, percent, detail, report_time FROM ${this.progressTable} WHERE api_id = $1 ORDER BY id`,
        [apiId],
      );
      return result.rows.map((row) => ({
        apiId: row.api_id as string,
        jobUuid: row.job_uuid as string,
        percent: Number(row.percent),
        detail: row.detail as string | null,
        time: row.report_time as string,
      }));
    });
  }

  /**
   * Calls `listener` with every job write committed by any store on this schema (a hint:
   * the ones sent while the LISTEN connection is down are lost). The first subscriber
   * opens a dedicated LISTEN connection and the last unsubscribe closes it. Writes wait
   * for that connection's first attempt, so a write made after `subscribe()` returns is
   * seen.
   */
  subscribe(listener: (change: JobChange) => void): () => void {
    if (this.closed) return () => {};
    this.listeners.add(listener);
    this.listener.start();
    return () => {
      if (!this.listeners.delete(listener) || this.listeners.size > 0) return;
      this.listener.stop().catch((error: unknown) => this.report(error, 'closing the change listener'));
    };
  }

  /** Closes the LISTEN connection and, when the store created it, the pool. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** Same as {@link PostgresJobStore.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- plumbing ---------------------------------------------------------------------

  /** `uuid = $2 AND version = $3`, plus the owner fence when the condition has one. */
  private fence(condition: JobWriteCondition, params: Params): string {
    let sql = 'uuid = $2 AND version = $3';
    const owner = condition.owner;
    if (owner !== undefined) sql += ` AND incarnation = ${params.add(owner.incarnation)} AND epoch = ${params.add(owner.epoch)}`;
    return sql;
  }

  /**
   * Why a fenced write matched no row, from a fresh read, in the memory store's order: a
   * missing job, then the owner fence, then the version.
   */
  private async classify(pool: PgPoolLike, uuid: string, condition: JobWriteCondition): Promise<FlowChainError> {
    const result = await pool.query(`SELECT version, incarnation, epoch FROM ${this.jobsTable} WHERE uuid = $1`, [uuid]);
    const row = result.rows[0];
    if (row === undefined) return notFound(uuid);
    const actual = { incarnation: row.incarnation as string | null, epoch: Number(row.epoch) };
    const owner = condition.owner;
    if (owner !== undefined && (actual.incarnation !== owner.incarnation || actual.epoch !== owner.epoch)) {
      return ownershipLost(uuid, owner, actual);
    }
    return versionConflict(uuid, condition.version, Number(row.version));
  }

  /** A notifying write waits for a LISTEN connection being opened, so that subscribers see it. */
  private write<Result>(method: string, body: (pool: PgPoolLike) => Promise<Result>): Promise<Result> {
    return this.run(method, async (pool) => {
      const listening = this.listener.ready();
      if (listening !== undefined) await listening;
      return body(pool);
    });
  }

  private async run<Result>(method: string, body: (pool: PgPoolLike) => Promise<Result>): Promise<Result> {
    try {
      if (this.closed) {
        throw new FlowChainError(FlowChainErrorCode.STORE_FAILURE, `PostgresJobStore.${method}: the store is closed.`, {
          details: { method },
        });
      }
      return await body(await this.connection());
    } catch (error) {
      throw this.failure(method, error);
    }
  }

  /** The pool, with the schema migrated; both retried on the next call after a failure. */
  private async connection(): Promise<PgPoolLike> {
    const pool = this.pool ?? (await this.openPool());
    if (!this.migrated) {
      this.migrating ??= ensureSchema(pool, this.schema).then(
        () => {
          this.migrated = true;
          this.migrating = undefined;
        },
        (error: unknown) => {
          this.migrating = undefined;
          throw error;
        },
      );
      await this.migrating;
    }
    return pool;
  }

  private openPool(): Promise<PgPoolLike> {
    this.opening ??= loadPg().then(
      (pg) => {
        if (this.closed) throw new Error('the store was closed while it was connecting');
        const source = this.options.source as Extract<ResolvedPostgresJobStoreOptions['source'], { kind: 'url' }>;
        const pool = new pg.Pool({
          connectionString: source.connectionString,
          max: source.poolSize,
          application_name: source.applicationName,
          connectionTimeoutMillis: source.connectTimeoutMs,
        });
        // An idle connection that dies (server restart, terminated backend) is dropped by
        // the pool; without a listener its 'error' event would crash the process.
        pool.on('error', (error) => this.report(error, 'an idle pooled connection failed'));
        this.ownedPool = pool;
        this.pool = pool;
        return pool;
      },
      (error: unknown) => {
        this.opening = undefined;
        throw error;
      },
    );
    return this.opening;
  }

  private async openListenConnection(): Promise<ListenConnection> {
    const source = this.options.source;
    if (source.kind === 'pool') {
      // Held exclusively while anyone listens, and destroyed on release: a pooled
      // connection must never go back to queries with a LISTEN on it.
      const client = await source.pool.connect();
      client.on('error', ignore); // never an unheard 'error' event, whatever happens next
      return {
        client,
        close: async () => {
          try {
            client.release(true);
          } catch {
            // Already released or broken: nothing left to free.
          }
        },
      };
    }
    const pg: PgModuleLike = await loadPg();
    const client = new pg.Client({
      connectionString: source.connectionString,
      application_name: `${source.applicationName} listener`,
      connectionTimeoutMillis: source.connectTimeoutMs,
      keepAlive: true,
    });
    client.on('error', ignore); // a connection error also rejects connect(), handled below
    try {
      await client.connect();
    } catch (error) {
      await endQuietly(client);
      throw error;
    }
    return { client, close: () => endQuietly(client) };
  }

  private deliver(payload: string): void {
    const change = parseChange(payload);
    if (change === undefined || this.closed) return;
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch {
        // A listener's failure is its own; notifications are hints.
      }
    }
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    await this.listener.stop();
    await this.opening?.catch(ignore);
    await this.migrating?.catch(ignore);
    const pool = this.ownedPool;
    this.ownedPool = undefined;
    if (pool !== undefined) {
      try {
        await pool.end();
      } catch (error) {
        throw this.failure('close', error);
      }
    }
  }

  private failure(method: string, error: unknown): FlowChainError {
    if (isFlowChainError(error)) return error;
    const state = sqlState(error);
    return new FlowChainError(
      FlowChainErrorCode.STORE_FAILURE,
      `PostgresJobStore.${method} failed: ${describeThrown(error)}. The operation was not confirmed (a write commits whole or not at all); check the database and retry.`,
      { cause: error, details: { method, schema: this.schema, ...(state === undefined ? {} : { sqlState: state }) } },
    );
  }

  private report(error: unknown, context: string): void {
    const wrapped = isFlowChainError(error)
      ? error
      : new FlowChainError(FlowChainErrorCode.STORE_FAILURE, `PostgresJobStore: ${context}: ${describeThrown(error)}.`, {
          cause: error,
          details: { schema: this.schema, context },
        });
    try {
      this.options.onError(wrapped);
    } catch {
      // The error callback's own failure must not break the store's background work.
    }
  }
}

const UNIQUE_VIOLATION = '23505';

/** A change notification's payload; anything malformed is dropped (it is only a hint). */
function parseChange(payload: string): JobChange | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object') return undefined;
  const { uuid, state, version, managementNodeUuid } = value as Record<string, unknown>;
  if (typeof uuid !== 'string' || typeof state !== 'string' || typeof version !== 'number') return undefined;
  if (managementNodeUuid !== null && typeof managementNodeUuid !== 'string') return undefined;
  return { uuid, state: state as JobChange['state'], version, managementNodeUuid };
}

function firstRow(rows: Record<string, unknown>[]): Record<string, unknown> {
  const row = rows[0];
  if (row === undefined) throw new Error('the statement returned no row');
  return row;
}

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

async function endQuietly(client: { end(): Promise<void> }): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  // end() can wait on a socket that is already gone; never let closing hang.
  await Promise.race([
    client.end().catch(ignore),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 2_000);
      timer.unref?.();
    }),
  ]);
  clearTimeout(timer);
}

function ignore(): void {
  // Intentionally empty.
}
