import { FlowChainError, FlowChainErrorCode, describeThrown, isFlowChainError } from '../errors.js';
import type { SqliteDatabaseLike, SqliteStatementLike } from './sqlite.js';
import { loadBetterSqlite3 } from './sqlite-driver.js';
import { isoSql } from './sqlite-query.js';
import { configureConnection, migrate } from './sqlite-schema.js';

/** Where the connection comes from: a file the store opens (and closes), or the user's handle. @internal */
export interface SqliteConnectionSource {
  filename: string | undefined;
  database: SqliteDatabaseLike | undefined;
  busyTimeoutMs: number | undefined;
}

const DEFAULT_BUSY_TIMEOUT_MS = 5_000;
const STATEMENT_CACHE_SIZE = 256;

/** The SQLite clock in integer milliseconds; SQLite keeps 'now' fixed within one statement. @internal */
export const NOW_MS_SQL = "CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER)";
/** The SQLite clock, in milliseconds and as `toISOString()` text of the same instant. */
const NOW_SQL = `SELECT ms, ${isoSql('ms')} AS iso FROM (SELECT ${NOW_MS_SQL} AS ms)`;

/**
 * The store's one connection: opened on first use (never at import or construction),
 * configured and migrated once, its statements cached, its errors mapped to
 * `STORE_FAILURE`. A failed open is retried by the next call, so the store recovers when
 * the file comes back (R3).
 * @internal
 */
export class SqliteConnection {
  private db: SqliteDatabaseLike | undefined = undefined;
  private opening: Promise<SqliteDatabaseLike> | undefined = undefined;
  private closing: Promise<void> | undefined = undefined;
  private closed = false;
  private readonly statements = new Map<string, SqliteStatementLike>();

  constructor(private readonly source: SqliteConnectionSource) {}

  /**
   * Runs one synchronous operation on the open database. Nothing else can run on this
   * connection while `body` runs (the driver is synchronous), and a throw inside an
   * `immediate` transaction rolls it back; driver errors become `STORE_FAILURE`.
   */
  async run<Result>(method: string, body: () => Result): Promise<Result> {
    await this.ready(method);
    try {
      return body();
    } catch (error) {
      throw storeFailure(method, error);
    }
  }

  /**
   * Runs `fn` in a `BEGIN IMMEDIATE` transaction: the write lock is taken up front, so a
   * read-then-write waits (up to the busy timeout) instead of failing at once with
   * SQLITE_BUSY when it upgrades. `fn` must be synchronous.
   */
  immediate<Result>(fn: () => Result): Result {
    return this.handle().transaction(fn).immediate();
  }

  /** A prepared statement, cached per SQL text (query shapes are few; the cache is capped anyway). */
  statement(sql: string): SqliteStatementLike {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      if (this.statements.size >= STATEMENT_CACHE_SIZE) this.statements.clear();
      statement = this.handle().prepare(sql);
      // A user's connection may return BigInts by default; versions and epochs are numbers.
      statement.safeIntegers?.(false);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /** The SQLite clock: leases and claim times never come from the caller's clock. */
  now(): { ms: number; iso: string } {
    return this.statement(NOW_SQL).get() as { ms: number; iso: string };
  }

  /** Opens, configures and migrates the database unless done already. */
  async ready(method: string): Promise<void> {
    if (this.closed) throw closedError(method);
    if (this.db !== undefined) return;
    if (this.opening === undefined) {
      const opening = this.open();
      this.opening = opening;
      opening.catch(() => {
        // A failed open is retried by the next call (the file may come back).
        if (this.opening === opening) this.opening = undefined;
      });
    }
    const db = await this.opening;
    if (this.closed) throw closedError(method);
    this.db = db;
  }

  /** Closes the database if the store opened it; idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private handle(): SqliteDatabaseLike {
    if (this.db === undefined) throw closedError('statement');
    return this.db;
  }

  private async open(): Promise<SqliteDatabaseLike> {
    const { filename, database, busyTimeoutMs } = this.source;
    let db: SqliteDatabaseLike;
    if (database !== undefined) {
      db = database;
    } else {
      const Database = await loadBetterSqlite3();
      try {
        db = new Database(filename as string, { timeout: busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
      } catch (error) {
        throw storeFailure('open', error);
      }
    }
    try {
      configureConnection(db, {
        // A user's connection keeps its own busy timeout unless one was asked for.
        busyTimeoutMs: database === undefined ? (busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS) : busyTimeoutMs,
        foreignKeys: database === undefined,
      });
      migrate(db);
    } catch (error) {
      if (database === undefined) {
        try {
          db.close();
        } catch {
          // The open failed already; that error is the one to report.
        }
      }
      throw storeFailure('open', error);
    }
    return db;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    let db = this.db;
    if (db === undefined && this.opening !== undefined) db = await this.opening.catch(() => undefined);
    this.db = undefined;
    this.opening = undefined;
    this.statements.clear();
    if (db === undefined || this.source.database !== undefined) return;
    try {
      db.close();
    } catch (error) {
      throw storeFailure('close', error);
    }
  }
}

/** Passes flowchain's own errors through; anything from the driver becomes `STORE_FAILURE`. */
function storeFailure(method: string, error: unknown): FlowChainError {
  if (isFlowChainError(error)) return error;
  const sqliteCode = (error as { code?: unknown } | null)?.code;
  const busy = typeof sqliteCode === 'string' && sqliteCode.startsWith('SQLITE_BUSY');
  return new FlowChainError(
    FlowChainErrorCode.STORE_FAILURE,
    `SqliteJobStore.${method} failed: ${describeThrown(error)}. ${
      busy
        ? 'Another connection held the write lock longer than busyTimeoutMs; retry, or raise busyTimeoutMs.'
        : 'Nothing was written; check the database file and retry.'
    }`,
    { cause: error, details: { method, ...(typeof sqliteCode === 'string' ? { sqliteCode } : {}) } },
  );
}

function closedError(method: string): FlowChainError {
  return new FlowChainError(FlowChainErrorCode.STORE_FAILURE, `SqliteJobStore.${method}: the store is closed.`, {
    details: { method },
  });
}
