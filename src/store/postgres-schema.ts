import { FlowChainError, FlowChainErrorCode } from '../errors.js';
import type { PgClientLike, PgPoolLike } from './postgres-driver.js';
import { FINAL_STATES_SQL, quoteIdent } from './postgres-sql.js';

/*
 * The PostgreSQL schema of PostgresJobStore and its migrations. The store creates and
 * migrates it on first use, under an advisory lock so that many processes starting at once
 * migrate it exactly once, and records the version it reached in `meta`.
 *
 * Text columns collate "C": equality is byte-wise anyway, and ordering by code point is
 * what the memory store (the reference) does, whatever the database's default collation.
 * Dates of jobs and progress are TEXT, exactly as the manager wrote them (ISO-8601 from
 * `toISOString()`), so that any value, even a corrupt one, round-trips (S4). Node leases
 * are timestamptz written with the database's `clock_timestamp()` only.
 */

/** The schema version this code writes and understands. @internal */
export const SCHEMA_VERSION = 1;

/** Statements of each migration, by the version it reaches. */
const MIGRATIONS: ReadonlyArray<(schema: string) => string[]> = [
  // 1: jobs (with the checkpoint), progress, nodes.
  (s) => [
    `CREATE TABLE ${s}.jobs (
      uuid                 text COLLATE "C" PRIMARY KEY,
      name                 text COLLATE "C" NOT NULL,
      description          text COLLATE "C",
      job_name             text COLLATE "C" NOT NULL,
      job_data             text COLLATE "C" NOT NULL,
      job_result           text COLLATE "C",
      management_node_uuid text COLLATE "C",
      api_id               text COLLATE "C" NOT NULL,
      target_resource_uuid text COLLATE "C",
      state                text COLLATE "C" NOT NULL,
      create_date          text COLLATE "C" NOT NULL,
      last_op_date         text COLLATE "C" NOT NULL,
      execute_time         bigint,
      version              bigint NOT NULL,
      incarnation          text COLLATE "C",
      epoch                bigint NOT NULL,
      takeovers            integer NOT NULL,
      checkpoint           text
    )`,
    `CREATE INDEX jobs_create_date ON ${s}.jobs (create_date, uuid)`,
    // claimJobs: unfinished jobs of some kinds, oldest first.
    `CREATE INDEX jobs_claimable ON ${s}.jobs (job_name, create_date, uuid) WHERE state NOT IN (${FINAL_STATES_SQL})`,
    // reap/leave: unfinished jobs of an incarnation.
    `CREATE INDEX jobs_incarnation ON ${s}.jobs (incarnation) WHERE incarnation IS NOT NULL AND state NOT IN (${FINAL_STATES_SQL})`,
    // The manager's cancel delivery asks for its node's Canceling jobs; users query by state.
    `CREATE INDEX jobs_state_node ON ${s}.jobs (state, management_node_uuid)`,
    `CREATE INDEX jobs_api_id ON ${s}.jobs (api_id)`,
    `CREATE INDEX jobs_target_resource ON ${s}.jobs (target_resource_uuid)`,
    `CREATE TABLE ${s}.progress (
      id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      api_id      text COLLATE "C" NOT NULL,
      job_uuid    text COLLATE "C" NOT NULL,
      percent     double precision NOT NULL,
      detail      text,
      report_time text COLLATE "C" NOT NULL
    )`,
    `CREATE INDEX progress_api_id ON ${s}.progress (api_id, id)`,
    `CREATE INDEX progress_job_uuid ON ${s}.progress (job_uuid)`,
    `CREATE TABLE ${s}.nodes (
      incarnation  text COLLATE "C" PRIMARY KEY,
      node_id      text COLLATE "C" NOT NULL,
      started_at   timestamptz NOT NULL,
      heartbeat_at timestamptz NOT NULL,
      lease_until  timestamptz NOT NULL,
      state        text COLLATE "C" NOT NULL CHECK (state IN ('alive', 'dead'))
    )`,
    `CREATE INDEX nodes_alive ON ${s}.nodes (node_id, lease_until) WHERE state = 'alive'`,
  ],
];

/**
 * Brings `schema` to {@link SCHEMA_VERSION}. A quick read first: a schema already at this
 * version needs no lock and no DDL privilege. Otherwise, in one transaction on a client of
 * its own: take the schema's advisory lock (concurrent first starts wait for one another),
 * create the schema and `meta`, re-read the version, apply the missing migrations and
 * record the version reached. A newer version in the database is
 * `SCHEMA_VERSION_UNSUPPORTED`, and nothing is changed.
 * @internal
 */
export async function ensureSchema(pool: PgPoolLike, schema: string): Promise<void> {
  const found = await readSchemaVersion(pool, schema);
  if (found !== undefined) {
    checkSchemaVersion(schema, found);
    if (found === SCHEMA_VERSION) return;
  }
  const client = await pool.connect();
  // Between statements no query is active, so a dying connection would emit 'error' on
  // the client; unheard, that event would crash the process.
  client.on('error', ignore);
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    await migrate(client, schema);
    await client.query('COMMIT');
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackError) {
      // The connection itself is broken: destroy it rather than return it to the pool.
      broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    }
    throw error;
  } finally {
    client.removeListener('error', ignore);
    client.release(broken);
  }
}

async function readSchemaVersion(client: PgPoolLike | PgClientLike, schema: string): Promise<number | undefined> {
  const exists = await client.query('SELECT to_regclass($1) IS NOT NULL AS present', [`${quoteIdent(schema)}.meta`]);
  if (exists.rows[0]?.present !== true) return undefined;
  const found = await client.query(`SELECT value FROM ${quoteIdent(schema)}.meta WHERE key = 'schema_version'`);
  const value = found.rows[0]?.value;
  return value === undefined ? undefined : Number(value);
}

async function migrate(client: PgClientLike, schema: string): Promise<void> {
  const s = quoteIdent(schema);
  await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, lockKey(schema)]);
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
  await client.query(`CREATE TABLE IF NOT EXISTS ${s}.meta (key text PRIMARY KEY, value text NOT NULL)`);
  const current = (await readSchemaVersion(client, schema)) ?? 0;
  checkSchemaVersion(schema, current);
  for (let version = current + 1; version <= SCHEMA_VERSION; version++) {
    for (const statement of (MIGRATIONS[version - 1] as (schema: string) => string[])(s)) await client.query(statement);
  }
  if (current < SCHEMA_VERSION) {
    await client.query(
      `INSERT INTO ${s}.meta (key, value) VALUES ('schema_version', $1)
       ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
      [String(SCHEMA_VERSION)],
    );
  }
}

/** Throws `SCHEMA_VERSION_UNSUPPORTED` when the database is ahead of this code. @internal */
export function checkSchemaVersion(schema: string, found: number): void {
  if (Number.isInteger(found) && found <= SCHEMA_VERSION) return;
  throw new FlowChainError(
    FlowChainErrorCode.SCHEMA_VERSION_UNSUPPORTED,
    `PostgreSQL schema "${schema}" is at flowchain schema version ${String(found)}, but this version of flowchain supports only up to version ${SCHEMA_VERSION}. Upgrade flowchain, or point the store at another schema.`,
    { details: { schema, foundVersion: found, supportedVersion: SCHEMA_VERSION } },
  );
}

/** First key of the advisory lock: "flow" in ASCII, so the lock is recognisable in pg_locks. */
const LOCK_NAMESPACE = 0x666c6f77;

/** Second key: a stable 32-bit hash (FNV-1a) of the schema name, as a signed int4. */
function lockKey(schema: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(schema, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash | 0;
}

function ignore(): void {
  // Intentionally empty: see ensureSchema().
}
