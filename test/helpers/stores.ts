import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobStore } from '../../src/index.js';
import { PostgresJobStore } from '../../src/postgres.js';
import { SqliteJobStore } from '../../src/sqlite.js';

/** How a child process opens the same store as its parent. */
export type StoreSpec = { kind: 'sqlite'; filename: string } | { kind: 'postgres'; connectionString: string; schema: string };

/** Opens a store from its spec. */
export function openStore(spec: StoreSpec): JobStore {
  return spec.kind === 'sqlite'
    ? new SqliteJobStore({ filename: spec.filename })
    : new PostgresJobStore({ connectionString: spec.connectionString, schema: spec.schema });
}

/** A fresh, isolated store spec (a temp SQLite file, or a new PostgreSQL schema) and its disposer. */
export function freshSpec(kind: 'sqlite' | 'postgres', pgUrl: string): { spec: StoreSpec; dispose: () => Promise<void> } {
  if (kind === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'flowchain-'));
    return { spec: { kind, filename: join(dir, 'jobs.db') }, dispose: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const schema = `fc_test_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
  return {
    spec: { kind, connectionString: pgUrl, schema },
    dispose: async () => {
      const pg = await import('pg');
      const client = new pg.default.Client({ connectionString: pgUrl });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
