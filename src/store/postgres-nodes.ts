import type { NodeRecord, NodeRegistry } from './contract.js';
import type { PgPoolLike } from './postgres-driver.js';
import { FINAL_STATES_SQL, orphanJobs } from './postgres-sql.js';

/*
 * Node incarnations of PostgresJobStore (J8): heartbeats, leases, graceful leave and
 * reaping. Every time is the database's: leases are timestamptz computed with
 * clock_timestamp() and compared with it, never with the caller's clock (reliability.md
 * §1.10 lesson 4), so nodes with skewed clocks agree on who is dead.
 */

/** How the registry runs its statements: the store's error mapping and lifecycle. @internal */
export interface NodeStatements {
  /** Runs a statement that sends no change notification. */
  run<Result>(method: string, body: (pool: PgPoolLike) => Promise<Result>): Promise<Result>;
  /** Runs a statement that may notify (it orphans jobs): waits for a LISTEN being opened. */
  write<Result>(method: string, body: (pool: PgPoolLike) => Promise<Result>): Promise<Result>;
}

/** The node registry of a PostgresJobStore, on its `nodes` table. @internal */
export class PostgresNodeRegistry implements NodeRegistry {
  constructor(
    private readonly store: NodeStatements,
    private readonly tables: { jobs: string; nodes: string },
    private readonly channel: string,
  ) {}

  async register(node: { nodeId: string; incarnation: string; leaseTtlMs: number }): Promise<void> {
    await this.store.run('register', async (pool) => {
      // Any other alive incarnation of this nodeId is a previous run: it is marked dead, so
      // its next heartbeat fails and it fences itself off (its jobs are orphaned by reap).
      await pool.query(
        `WITH t AS (SELECT clock_timestamp() AS ts),
              superseded AS (
                UPDATE ${this.tables.nodes} SET state = 'dead'
                 WHERE node_id = $1 AND state = 'alive' AND incarnation <> $2)
         INSERT INTO ${this.tables.nodes} (incarnation, node_id, started_at, heartbeat_at, lease_until, state)
         SELECT $2, $1, t.ts, t.ts, t.ts + $3::double precision * interval '1 millisecond', 'alive' FROM t
         ON CONFLICT (incarnation) DO UPDATE
            SET node_id = EXCLUDED.node_id, started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at,
                lease_until = EXCLUDED.lease_until, state = 'alive'`,
        [node.nodeId, node.incarnation, node.leaseTtlMs],
      );
    });
  }

  async heartbeat(incarnation: string, leaseTtlMs: number): Promise<boolean> {
    return this.store.run('heartbeat', async (pool) => {
      const result = await pool.query(
        `UPDATE ${this.tables.nodes}
            SET heartbeat_at = t.ts, lease_until = t.ts + $2::double precision * interval '1 millisecond'
           FROM (SELECT clock_timestamp() AS ts) t
          WHERE incarnation = $1 AND state = 'alive'
         RETURNING incarnation`,
        [incarnation, leaseTtlMs],
      );
      return result.rows.length === 1;
    });
  }

  async leave(incarnation: string): Promise<void> {
    await this.store.write('leave', async (pool) => {
      await pool.query(
        `WITH gone AS (DELETE FROM ${this.tables.nodes} WHERE incarnation = $2),
              orphaned AS (${orphanJobs(this.tables.jobs, 'incarnation = $2')})
         SELECT count(*) AS orphaned FROM orphaned`,
        [this.channel, incarnation],
      );
    });
  }

  async list(): Promise<NodeRecord[]> {
    return this.store.run('listNodes', async (pool) => {
      const result = await pool.query(
        `SELECT node_id, incarnation, ${isoOf('started_at')} AS started_at, ${isoOf('heartbeat_at')} AS heartbeat_at,
                ${isoOf('lease_until')} AS lease_until, state
           FROM ${this.tables.nodes} ORDER BY started_at, incarnation`,
      );
      return result.rows.map((row) => ({
        nodeId: row.node_id as string,
        incarnation: row.incarnation as string,
        startedAt: row.started_at as string,
        heartbeatAt: row.heartbeat_at as string,
        leaseUntil: row.lease_until as string,
        state: row.state as NodeRecord['state'],
      }));
    });
  }

  async reap(graceMs: number, retainDeadMs?: number): Promise<string[]> {
    return this.store.write('reap', async (pool) => {
      // One statement sees one snapshot: the incarnations it marks dead still read as alive
      // there, so they are taken out of the alive ones by hand. Jobs of any incarnation not
      // alive (dead, superseded by a restart, or unknown to the registry) become orphans.
      // They are picked with their version and orphaned only at that version: under READ
      // COMMITTED, a job claimed meanwhile by an incarnation registered after this snapshot
      // (so "not alive" in it) is re-checked on its new row, and must not match again.
      // The DELETE sees the rows dead before the statement; the UPDATE, the alive ones.
      const result = await pool.query(
        `WITH dead AS (
           UPDATE ${this.tables.nodes} SET state = 'dead'
            WHERE state = 'alive' AND lease_until + $2::double precision * interval '1 millisecond' < clock_timestamp()
           RETURNING incarnation, started_at),
         stranded AS (
           SELECT uuid, version FROM ${this.tables.jobs}
            WHERE incarnation IS NOT NULL AND state NOT IN (${FINAL_STATES_SQL})
              AND incarnation NOT IN (SELECT incarnation FROM ${this.tables.nodes} WHERE state = 'alive'
                                      EXCEPT SELECT incarnation FROM dead)),
         orphaned AS (${orphanJobs(this.tables.jobs, '(uuid, version) IN (SELECT uuid, version FROM stranded)')}),
         pruned AS (
           DELETE FROM ${this.tables.nodes}
            WHERE $3::double precision IS NOT NULL AND state = 'dead'
              AND lease_until + $3::double precision * interval '1 millisecond' < clock_timestamp()
           RETURNING incarnation)
         SELECT incarnation, (SELECT count(*) FROM orphaned) AS orphaned, (SELECT count(*) FROM pruned) AS pruned
           FROM dead ORDER BY started_at, incarnation`,
        [this.channel, graceMs, retainDeadMs ?? null],
      );
      return result.rows.map((row) => row.incarnation as string);
    });
  }
}

/** A timestamptz column as `toISOString()` text, in UTC. */
function isoOf(column: string): string {
  return `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
}

