import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, it } from 'vitest';
import { SqliteJobStore } from '../../src/sqlite.js';
import { JOB_COLUMNS } from '../../src/store/sqlite-query.js';
import { describeJobStoreContract } from '../../src/testing.js';

// S3 on a real SQLite file: a fresh file per test, deleted after it (with its WAL).
const dir = mkdtempSync(join(tmpdir(), 'flowchain-sqlite-contract-'));
const files = new WeakMap<SqliteJobStore, string>();
let counter = 0;

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeJobStoreContract(
  'SqliteJobStore',
  () => {
    const filename = join(dir, `contract-${++counter}.db`);
    const store = new SqliteJobStore({ filename });
    files.set(store, filename);
    return store;
  },
  {
    runner: { describe, it },
    // Raw SQL through a second connection, as a foreign writer would corrupt a row.
    corrupt: async (store, uuid, field, rawValue) => {
      const column = JOB_COLUMNS[field as keyof typeof JOB_COLUMNS];
      const db = new Database(files.get(store) as string, { timeout: 5_000 });
      try {
        if (rawValue === null) relaxNotNull(db, column);
        const { changes } = db.prepare(`UPDATE flowchain_jobs SET ${column} = ? WHERE uuid = ?`).run(rawValue, uuid);
        if (changes !== 1) throw new Error(`no job ${uuid} to corrupt`);
      } finally {
        db.close();
      }
    },
    destroy: async (store) => {
      await store.close();
      const filename = files.get(store) as string;
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${filename}${suffix}`, { force: true });
    },
  },
);

/** Rebuilds the jobs table (this test database only) without NOT NULL on one column. */
function relaxNotNull(db: Database.Database, column: string): void {
  const objects = db
    .prepare("SELECT type, name, sql FROM sqlite_schema WHERE tbl_name = 'flowchain_jobs' AND sql IS NOT NULL")
    .all() as { type: string; name: string; sql: string }[];
  const table = objects.find((o) => o.type === 'table') as { sql: string };
  const relaxed = table.sql
    .replace('CREATE TABLE flowchain_jobs', 'CREATE TABLE flowchain_jobs_relaxed')
    .replace(new RegExp(`(\\n\\s*${column}\\s+TEXT) NOT NULL`), '$1');
  db.transaction(() => {
    db.exec(relaxed);
    db.exec('INSERT INTO flowchain_jobs_relaxed SELECT * FROM flowchain_jobs');
    db.exec('DROP TABLE flowchain_jobs');
    db.exec('ALTER TABLE flowchain_jobs_relaxed RENAME TO flowchain_jobs');
    for (const index of objects.filter((o) => o.type === 'index')) db.exec(index.sql);
  }).immediate();
}
