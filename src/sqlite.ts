/**
 * `flowchain/sqlite`: the SQLite job store (better-sqlite3 12, an optional peer dependency,
 * loaded on first use — never at import).
 */
export {
  SqliteJobStore,
  type SqliteDatabaseLike,
  type SqliteJobStoreOptions,
  type SqliteStatementLike,
} from './store/sqlite.js';
