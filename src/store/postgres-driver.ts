import { FlowChainError, FlowChainErrorCode } from '../errors.js';

/*
 * What PostgresJobStore needs from a PostgreSQL driver, as structural types the user's own
 * `pg` objects satisfy (pg's own types never appear in the public API: `pg` is an optional
 * peer dependency), and the lazy loader of `pg` for the `connectionString` form.
 */

/**
 * The result of a query, as `pg` returns it.
 *
 * @example
 * ```ts
 * import type { PgQueryResultLike } from 'flowchain/postgres';
 * const first = (result: PgQueryResultLike) => result.rows[0];
 * ```
 */
export interface PgQueryResultLike {
  rows: Record<string, unknown>[];
  rowCount: number | null;
}

/**
 * A `LISTEN` notification, as `pg` delivers it.
 *
 * @example
 * ```ts
 * import type { PgNotificationLike } from 'flowchain/postgres';
 * const log = (message: PgNotificationLike) => console.log(message.channel, message.payload);
 * ```
 */
export interface PgNotificationLike {
  channel: string;
  payload?: string | undefined;
}

/**
 * A client checked out of a pool (`pg.PoolClient` satisfies it). The store checks one out
 * for a migration, and holds one for `LISTEN` while anyone is subscribed.
 *
 * @example
 * ```ts
 * import type { PgClientLike } from 'flowchain/postgres';
 * async function inTransaction(client: PgClientLike) {
 *   await client.query('BEGIN');
 *   await client.query('COMMIT');
 *   client.release();
 * }
 * ```
 */
export interface PgClientLike extends ListenClient {
  query(text: string, values?: unknown[]): Promise<PgQueryResultLike>;
  /** Returns the client to its pool; `true` or an error destroys its connection instead. */
  release(destroy?: Error | boolean): void;
}

/**
 * A connection pool the user owns (`pg.Pool` satisfies it). The store never ends it.
 *
 * @example
 * ```ts
 * import type { PgPoolLike } from 'flowchain/postgres';
 * const ping = async (pool: PgPoolLike) => (await pool.query('SELECT 1 AS one')).rows[0]?.one === 1;
 * ```
 */
export interface PgPoolLike {
  query(text: string, values?: unknown[]): Promise<PgQueryResultLike>;
  connect(): Promise<PgClientLike>;
}

/** A pool the store created itself (and ends on close). @internal */
export interface OwnedPgPool extends PgPoolLike {
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** A stand-alone client: the store's dedicated LISTEN connection. @internal */
export interface StandalonePgClient extends ListenClient {
  connect(): Promise<unknown>;
  query(text: string, values?: unknown[]): Promise<PgQueryResultLike>;
  end(): Promise<void>;
}

/** The events and queries the listener uses; pg's `Client` and `PoolClient` both have them. @internal */
export interface ListenClient {
  query(text: string): Promise<PgQueryResultLike>;
  on(event: 'notification', listener: (message: PgNotificationLike) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  removeListener(event: 'notification', listener: (message: PgNotificationLike) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'end', listener: () => void): unknown;
}

/** The part of the `pg` module the store uses. @internal */
export interface PgModuleLike {
  Pool: new (config: Record<string, unknown>) => OwnedPgPool;
  Client: new (config: Record<string, unknown>) => StandalonePgClient;
}

let loading: Promise<PgModuleLike> | undefined;

/**
 * Loads `pg` on first use, never at import time, so that it stays an optional peer
 * dependency. The CommonJS build requires it (a dynamic `import()` from CommonJS fails in
 * some test runners' module sandboxes); the ESM build imports it.
 * @internal
 */
export function loadPg(): Promise<PgModuleLike> {
  loading ??= requirePg().then(
    (mod: unknown) => {
      const pg = ((mod as { default?: unknown }).default ?? mod) as Partial<PgModuleLike>;
      if (typeof pg.Pool !== 'function' || typeof pg.Client !== 'function') {
        throw new TypeError('the module "pg" exports no Pool and Client');
      }
      return pg as PgModuleLike;
    },
    (error: unknown) => {
      loading = undefined;
      throw new FlowChainError(
        FlowChainErrorCode.STORE_FAILURE,
        'PostgresJobStore could not load the `pg` package, which `connectionString` needs: install pg 8 (`npm install pg`), or pass your own `pool`.',
        { cause: error, details: { module: 'pg' } },
      );
    },
  );
  return loading;
}

async function requirePg(): Promise<unknown> {
  // In the CommonJS build `module` is the module's own object; in ESM it is not defined.
  // (A bare `require` would be rewritten by the bundler into a shim that throws in ESM.)
  if (typeof module === 'object' && module !== null && typeof module.require === 'function') return module.require('pg');
  return import('pg');
}
