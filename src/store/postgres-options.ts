import { type FlowChainError, invalidArgument } from '../errors.js';
import type { PgPoolLike } from './postgres-driver.js';

/*
 * Options of PostgresJobStore, and their resolution (validated once, defaults applied)
 * into the form the rest of the store reads.
 */

/**
 * Options shared by both ways of connecting a {@link PostgresJobStore}.
 *
 * @example
 * ```ts
 * import type { PostgresJobStoreBaseOptions } from 'flowchain/postgres';
 * const common: PostgresJobStoreBaseOptions = { schema: 'jobs', onError: (error) => console.warn(error.message) };
 * ```
 */
export interface PostgresJobStoreBaseOptions {
  /**
   * The PostgreSQL schema that holds the store's tables; created and migrated on first use.
   * A plain identifier (letters, digits, `_`; at most 48 characters), used as written.
   * Stores on different schemas of one database are fully separate.
   * @default 'flowchain'
   */
  schema?: string;
  /**
   * Interval of the keep-alive query on the LISTEN connection; a keep-alive unanswered
   * within the same time counts as a lost connection, which is then re-established.
   * @default 10000
   */
  listenKeepAliveMs?: number;
  /**
   * Called with errors the store recovers from by itself in the background: a lost or
   * refused LISTEN connection (retried with backoff), an idle pooled connection that died.
   * @default errors are ignored (the manager polls regardless)
   */
  onError?: (error: FlowChainError) => void;
}

/**
 * Connect with a connection string: the store loads `pg` on first use and owns its pool.
 *
 * @example
 * ```ts
 * import { PostgresJobStore, type PostgresJobStoreConnectionOptions } from 'flowchain/postgres';
 * const options: PostgresJobStoreConnectionOptions = {
 *   connectionString: 'postgres://app@db.internal:5432/app',
 *   poolSize: 5,
 *   applicationName: 'billing-jobs',
 * };
 * const store = new PostgresJobStore(options);
 * ```
 */
export interface PostgresJobStoreConnectionOptions extends PostgresJobStoreBaseOptions {
  /** A libpq-style URL, e.g. `postgres://user:password@host:5432/database`. */
  connectionString: string;
  pool?: never;
  /** Most connections the store's pool opens (plus one for LISTEN while subscribed). @default 10 */
  poolSize?: number;
  /** `application_name` of the store's connections; the LISTEN connection adds ` listener`. @default 'flowchain' */
  applicationName?: string;
  /** How long to wait for a new connection, in milliseconds; 0 waits forever. @default 10000 */
  connectTimeoutMs?: number;
}

/**
 * Use your own pool (a `pg.Pool`, or anything shaped like {@link PgPoolLike}). The store
 * never ends it; while anyone is subscribed it holds one of its connections for LISTEN,
 * so give the pool room for that (at least 2 connections).
 *
 * @example
 * ```ts
 * import pg from 'pg';
 * import { PostgresJobStore } from 'flowchain/postgres';
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
 * const store = new PostgresJobStore({ pool, schema: 'jobs' });
 * await store.close(); // the pool stays open: it is yours
 * await pool.end();
 * ```
 */
export interface PostgresJobStorePoolOptions extends PostgresJobStoreBaseOptions {
  pool: PgPoolLike;
  connectionString?: never;
}

/**
 * Options of {@link PostgresJobStore}: a `connectionString` or a `pool`, not both.
 *
 * @example
 * ```ts
 * import type { PostgresJobStoreOptions } from 'flowchain/postgres';
 * const options: PostgresJobStoreOptions = { connectionString: 'postgres://localhost/app', schema: 'jobs' };
 * ```
 */
export type PostgresJobStoreOptions = PostgresJobStoreConnectionOptions | PostgresJobStorePoolOptions;

/** Options with every default applied. @internal */
export interface ResolvedPostgresJobStoreOptions {
  schema: string;
  listenKeepAliveMs: number;
  onError: (error: FlowChainError) => void;
  source:
    | { kind: 'url'; connectionString: string; poolSize: number; applicationName: string; connectTimeoutMs: number }
    | { kind: 'pool'; pool: PgPoolLike };
}

const SCHEMA_RE = /^[A-Za-z_][A-Za-z0-9_]{0,47}$/;

/** Validates options at the public boundary and applies the defaults. @internal */
export function resolveOptions(options: PostgresJobStoreOptions): ResolvedPostgresJobStoreOptions {
  if (options === null || typeof options !== 'object') {
    throw invalidArgument('options', 'an object with `connectionString` or `pool`', options);
  }
  const schema = options.schema ?? 'flowchain';
  if (typeof schema !== 'string' || !SCHEMA_RE.test(schema)) {
    throw invalidArgument('schema', 'a plain identifier (letters, digits and _, not starting with a digit, at most 48 characters)', schema);
  }
  const listenKeepAliveMs = options.listenKeepAliveMs ?? 10_000;
  if (!Number.isInteger(listenKeepAliveMs) || listenKeepAliveMs < 1 || listenKeepAliveMs > 2_147_483_647) {
    throw invalidArgument('listenKeepAliveMs', 'an integer number of milliseconds from 1 up', listenKeepAliveMs);
  }
  if (options.onError !== undefined && typeof options.onError !== 'function') {
    throw invalidArgument('onError', 'a function', options.onError);
  }
  const onError = options.onError ?? ignore;
  const hasPool = options.pool !== undefined;
  const hasUrl = options.connectionString !== undefined;
  if (hasPool === hasUrl) {
    throw invalidArgument('options', 'exactly one of `connectionString` and `pool`', hasPool ? 'both' : 'neither');
  }
  if (hasPool) {
    const pool = options.pool as Partial<PgPoolLike> | null;
    if (pool === null || typeof pool !== 'object' || typeof pool.query !== 'function' || typeof pool.connect !== 'function') {
      throw invalidArgument('pool', 'a pg.Pool (an object with query() and connect())', pool);
    }
    return { schema, listenKeepAliveMs, onError, source: { kind: 'pool', pool: pool as PgPoolLike } };
  }
  const url = options as PostgresJobStoreConnectionOptions;
  if (typeof url.connectionString !== 'string' || url.connectionString === '') {
    throw invalidArgument('connectionString', 'a non-empty connection string', url.connectionString);
  }
  const poolSize = url.poolSize ?? 10;
  if (!Number.isInteger(poolSize) || poolSize < 1) throw invalidArgument('poolSize', 'an integer from 1 up', poolSize);
  const applicationName = url.applicationName ?? 'flowchain';
  if (typeof applicationName !== 'string') throw invalidArgument('applicationName', 'a string', applicationName);
  const connectTimeoutMs = url.connectTimeoutMs ?? 10_000;
  if (!Number.isInteger(connectTimeoutMs) || connectTimeoutMs < 0) {
    throw invalidArgument('connectTimeoutMs', 'an integer number of milliseconds from 0 up', connectTimeoutMs);
  }
  return {
    schema,
    listenKeepAliveMs,
    onError,
    source: { kind: 'url', connectionString: url.connectionString, poolSize, applicationName, connectTimeoutMs },
  };
}

function ignore(): void {
  // The default onError: background errors are retried by the store itself.
}
