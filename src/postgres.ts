/** `flowchain/postgres`: the PostgreSQL job store (pg 8, an optional peer dependency, loaded on first use). */
export { PostgresJobStore } from './store/postgres.js';
export type {
  PostgresJobStoreBaseOptions,
  PostgresJobStoreConnectionOptions,
  PostgresJobStoreOptions,
  PostgresJobStorePoolOptions,
} from './store/postgres-options.js';
export type { PgClientLike, PgNotificationLike, PgPoolLike, PgQueryResultLike } from './store/postgres-driver.js';
