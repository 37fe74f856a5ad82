import { FlowChainError, FlowChainErrorCode } from '../errors.js';
import type { SqliteDatabaseLike } from './sqlite.js';

/*
 * The SQLite schema, its migrations and the connection pragmas.
 *
 * Every table is prefixed `flowchain_` and the schema version lives in our own meta table,
 * not in `PRAGMA user_version`: a user may hand us a database their application also
 * uses (and versions) for its own tables.
 */

/**
 * Migrations in order: `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`.
 * Never edit a released entry; append a new one.
 */
const MIGRATIONS: readonly string[] = [
  // v1. Dates are ISO-8601 TEXT exactly as written (the manager writes `toISOString()`),
  // so range filters and sorting compare strings. No CHECK on `state`: a foreign or
  // corrupt row must still be readable and reported by the manager (S4), not refused here.
  // Node lease times are integer milliseconds of the SQLite clock.
  `
  CREATE TABLE flowchain_jobs (
    uuid                 TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL,
    description          TEXT,
    job_name             TEXT NOT NULL,
    job_data             TEXT NOT NULL,
    job_result           TEXT,
    management_node_uuid TEXT,
    api_id               TEXT NOT NULL,
    target_resource_uuid TEXT,
    state                TEXT NOT NULL,
    create_date          TEXT NOT NULL,
    last_op_date         TEXT NOT NULL,
    execute_time         INTEGER,
    version              INTEGER NOT NULL,
    incarnation          TEXT,
    epoch                INTEGER NOT NULL,
    takeovers            INTEGER NOT NULL,
    checkpoint           TEXT
  );
  CREATE INDEX flowchain_jobs_create_date ON flowchain_jobs (create_date, uuid);
  CREATE INDEX flowchain_jobs_state ON flowchain_jobs (state, create_date);
  CREATE INDEX flowchain_jobs_owner ON flowchain_jobs (management_node_uuid, state);
  CREATE INDEX flowchain_jobs_incarnation ON flowchain_jobs (incarnation);
  CREATE INDEX flowchain_jobs_api_id ON flowchain_jobs (api_id);
  CREATE INDEX flowchain_jobs_target ON flowchain_jobs (target_resource_uuid);

  CREATE TABLE flowchain_progress (
    seq      INTEGER PRIMARY KEY,
    api_id   TEXT NOT NULL,
    job_uuid TEXT NOT NULL,
    percent  REAL NOT NULL,
    detail   TEXT,
    time     TEXT NOT NULL
  );
  CREATE INDEX flowchain_progress_api_id ON flowchain_progress (api_id, seq);
  CREATE INDEX flowchain_progress_job_uuid ON flowchain_progress (job_uuid);

  CREATE TABLE flowchain_nodes (
    incarnation     TEXT PRIMARY KEY NOT NULL,
    node_id         TEXT NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    heartbeat_at_ms INTEGER NOT NULL,
    lease_until_ms  INTEGER NOT NULL,
    state           TEXT NOT NULL
  );
  CREATE INDEX flowchain_nodes_node_id ON flowchain_nodes (node_id, state);
  `,
];

/** The schema version this code writes and understands. @internal */
export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length;

/** The connection settings a store applies. @internal */
export interface ConnectionSettings {
  /** `PRAGMA busy_timeout`, or `undefined` to leave the connection's own setting. */
  busyTimeoutMs: number | undefined;
  /** Whether to set `foreign_keys=ON` (only on connections the store owns). */
  foreignKeys: boolean;
}

/**
 * Applies the pragmas the store's durability and concurrency rest on (reliability.md §2.6).
 * The busy timeout goes first so that switching to WAL waits for other processes.
 * @internal
 */
export function configureConnection(db: SqliteDatabaseLike, settings: ConnectionSettings): void {
  if (settings.busyTimeoutMs !== undefined) db.pragma(`busy_timeout = ${settings.busyTimeoutMs}`);
  // WAL lets readers run beside the one writer, across processes on one host. A
  // `:memory:` database answers "memory", which is fine: nobody else can open it.
  db.pragma('journal_mode = WAL');
  // better-sqlite3 builds with SQLITE_DEFAULT_WAL_SYNCHRONOUS=1 (NORMAL), under which a
  // committed transaction can roll back after a power loss. A job store must not.
  db.pragma('synchronous = FULL');
  if (settings.foreignKeys) db.pragma('foreign_keys = ON');
}

/**
 * Creates or migrates the schema inside one `BEGIN IMMEDIATE` transaction, so several
 * processes opening a new file at once migrate it exactly once. Refuses a schema newer than
 * this code with `SCHEMA_VERSION_UNSUPPORTED`.
 * @internal
 */
export function migrate(db: SqliteDatabaseLike): void {
  db.transaction(() => {
    db.exec('CREATE TABLE IF NOT EXISTS flowchain_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)');
    const row = db.prepare("SELECT value FROM flowchain_meta WHERE key = 'schema_version'").get() as
      | { value: unknown }
      | undefined;
    const found = row === undefined ? 0 : Number(row.value);
    if (!Number.isInteger(found) || found < 0 || found > SQLITE_SCHEMA_VERSION) {
      throw new FlowChainError(
        FlowChainErrorCode.SCHEMA_VERSION_UNSUPPORTED,
        `The SQLite database holds flowchain schema version ${String(row?.value)}, but this version of flowchain understands schema versions up to ${SQLITE_SCHEMA_VERSION}. Upgrade flowchain (or use another database file); the database was not changed.`,
        { details: { foundVersion: row?.value ?? null, supportedVersion: SQLITE_SCHEMA_VERSION } },
      );
    }
    if (found === SQLITE_SCHEMA_VERSION) return;
    for (let version = found; version < SQLITE_SCHEMA_VERSION; version++) db.exec(MIGRATIONS[version] as string);
    db.prepare(
      "INSERT INTO flowchain_meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ).run(String(SQLITE_SCHEMA_VERSION));
  }).immediate();
}
