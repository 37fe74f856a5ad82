import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MemoryJobStore, type StoredJob } from '../../src/index.js';
import { SqliteJobStore, type SqliteDatabaseLike } from '../../src/sqlite.js';
import { makeStoredJob } from '../../src/testing.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'flowchain-sqlite-'));
let counter = 0;
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A fresh database file path, deleted (with its WAL) after the test. */
function tempFile(): string {
  const filename = join(dir, `store-${++counter}.db`);
  cleanups.push(() => {
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${filename}${suffix}`, { force: true });
  });
  return filename;
}

function openStore(filename: string, options: { busyTimeoutMs?: number } = {}): SqliteJobStore {
  const store = new SqliteJobStore({ filename, ...options });
  cleanups.push(() => store.close());
  return store;
}

/** A second, raw connection to the same file (closed after the test). */
function rawConnection(filename: string): Database.Database {
  const db = new Database(filename, { timeout: 5_000 });
  cleanups.push(() => db.open && db.close());
  return db;
}

async function codeOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return (error as { code?: unknown }).code;
  }
  return 'resolved';
}

async function failure(promise: Promise<unknown>): Promise<Error & { code?: string; cause?: unknown; details?: unknown }> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail');
}

/** Runs a script in a child Node process (TypeScript through tsx) and returns its stdout. */
function runChild(script: string, env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      { cwd: root, env: { ...process.env, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)),
    );
  });
}

const orphan = (overrides: Partial<StoredJob> = {}): StoredJob =>
  makeStoredJob({ jobName: 'K', state: 'Running', incarnation: null, managementNodeUuid: null, ...overrides });

describe('SqliteJobStore: schema (S2)', () => {
  it('creates its tables and records the schema version in flowchain_meta', async () => {
    const filename = tempFile();
    await openStore(filename).open();
    const db = rawConnection(filename);
    const tables = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map(
      (t) => t.name,
    );
    expect(tables).toEqual(['flowchain_jobs', 'flowchain_meta', 'flowchain_nodes', 'flowchain_progress']);
    const row = db.prepare("SELECT value FROM flowchain_meta WHERE key = 'schema_version'").get() as { value: string };
    expect(Number(row.value)).toBe(SqliteJobStore.schemaVersion);
    expect(SqliteJobStore.schemaVersion).toBeGreaterThanOrEqual(1);
    // The user's own user_version is left alone.
    expect(db.pragma('user_version', { simple: true })).toBe(0);
  });

  it('reopens an existing database without migrating it again, data intact', async () => {
    const filename = tempFile();
    const job = makeStoredJob();
    const first = openStore(filename);
    await first.createJob(job);
    await first.close();
    const second = openStore(filename);
    expect(await second.getJob(job.uuid)).toEqual(job);
  });

  it('refuses a database with a newer schema version (SCHEMA_VERSION_UNSUPPORTED) and changes nothing', async () => {
    const filename = tempFile();
    const job = makeStoredJob();
    const first = openStore(filename);
    await first.createJob(job);
    await first.close();
    const newer = SqliteJobStore.schemaVersion + 1;
    const db = rawConnection(filename);
    db.prepare("UPDATE flowchain_meta SET value = ? WHERE key = 'schema_version'").run(String(newer));

    const store = openStore(filename);
    const error = await failure(store.getJob(job.uuid));
    expect(error.code).toBe('SCHEMA_VERSION_UNSUPPORTED');
    expect(error.name).toBe('FlowChainError');
    expect(error.message).toContain(`version ${newer}`);
    expect(error.message).toContain(`up to ${SqliteJobStore.schemaVersion}`);
    // Still refused on the next call, and the database is untouched.
    expect(await codeOf(store.open())).toBe('SCHEMA_VERSION_UNSUPPORTED');
    expect((db.prepare("SELECT value FROM flowchain_meta WHERE key = 'schema_version'").get() as { value: string }).value).toBe(
      String(newer),
    );
    expect(db.prepare('SELECT COUNT(*) AS n FROM flowchain_jobs').get()).toEqual({ n: 1 });
  });
});

describe('SqliteJobStore: connection settings (reliability §2.6)', () => {
  it('puts the file in WAL mode with synchronous=FULL and the default 5 s busy timeout', async () => {
    const filename = tempFile();
    const store = openStore(filename);
    await store.open();
    // journal_mode=WAL is a property of the file; any connection sees it.
    expect(rawConnection(filename).pragma('journal_mode', { simple: true })).toBe('wal');
    // synchronous and busy_timeout belong to the store's own connection.
    const own = (store as unknown as { connection: { db: SqliteDatabaseLike } }).connection.db;
    expect(own.pragma('synchronous', { simple: true })).toBe(2); // FULL
    expect(own.pragma('busy_timeout', { simple: true })).toBe(5_000);
    expect(own.pragma('foreign_keys', { simple: true })).toBe(1);
  });

  it('applies busyTimeoutMs, and fails a write blocked longer than it with STORE_FAILURE, changing nothing', async () => {
    const filename = tempFile();
    const store = openStore(filename, { busyTimeoutMs: 50 });
    const job = makeStoredJob();
    await store.createJob(job);
    const other = rawConnection(filename);
    other.exec('BEGIN IMMEDIATE'); // another process holds the write lock
    try {
      const started = performance.now();
      const error = await failure(store.updateJob(job.uuid, { version: 1 }, { name: 'blocked' }));
      expect(error.code).toBe('STORE_FAILURE');
      expect((error.details as { sqliteCode?: string }).sqliteCode).toMatch(/^SQLITE_BUSY/);
      expect(error.message).toContain('busyTimeoutMs');
      expect(performance.now() - started).toBeLessThan(4_000);
    } finally {
      other.exec('ROLLBACK');
    }
    expect(await store.getJob(job.uuid)).toEqual(job);
    expect((await store.updateJob(job.uuid, { version: 1 }, { name: 'now' })).version).toBe(2);
  });

  it('works on a private :memory: database', async () => {
    const store = openStore(':memory:');
    const job = makeStoredJob();
    await store.createJob(job);
    expect(await store.getJob(job.uuid)).toEqual(job);
  });
});

describe('SqliteJobStore: a connection the user owns', () => {
  it('uses the handle, configures it, and leaves it open on close()', async () => {
    const filename = tempFile();
    const db = rawConnection(filename);
    const handle: SqliteDatabaseLike = db; // better-sqlite3's Database fits the structural type
    const store = new SqliteJobStore({ database: handle, busyTimeoutMs: 1_234 });
    const job = makeStoredJob();
    await store.createJob(job);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(1_234);
    await store.close();
    await store.close();
    expect(db.open).toBe(true);
    expect(db.prepare('SELECT uuid FROM flowchain_jobs').all()).toEqual([{ uuid: job.uuid }]);
    // The store itself is closed.
    const error = await failure(store.getJob(job.uuid));
    expect(error.code).toBe('STORE_FAILURE');
    expect(error.message).toContain('closed');
  });

  it('works on a user connection that returns BigInts by default', async () => {
    const db = rawConnection(tempFile());
    db.defaultSafeIntegers(true);
    const store = new SqliteJobStore({ database: db });
    const job = makeStoredJob();
    await store.createJob(job);
    expect(await store.getJob(job.uuid)).toEqual(job);
    expect((await store.updateJob(job.uuid, { version: 1 }, { name: 'x' })).version).toBe(2);
    expect(await store.countJobs({})).toBe(1);
  });

  it('leaves the busy timeout of a user connection alone unless busyTimeoutMs is given', async () => {
    const db = new Database(tempFile(), { timeout: 777 });
    cleanups.push(() => db.close());
    await new SqliteJobStore({ database: db }).open();
    expect(db.pragma('busy_timeout', { simple: true })).toBe(777);
  });
});

describe('SqliteJobStore: lifecycle and bad options', () => {
  it('does no I/O in the constructor; a failed open is STORE_FAILURE and is retried by the next call (R3)', async () => {
    const missing = join(dir, `later-${++counter}`);
    const filename = join(missing, 'jobs.db');
    cleanups.push(() => rmSync(missing, { recursive: true, force: true }));
    const store = openStore(filename);
    expect(existsSync(missing)).toBe(false);
    const error = await failure(store.countJobs({}));
    expect(error.code).toBe('STORE_FAILURE');
    expect(error.cause).toBeInstanceOf(Error);
    mkdirSync(missing);
    expect(await store.countJobs({})).toBe(0);
    expect(existsSync(filename)).toBe(true);
  });

  it('close() is idempotent, works before any use, and disposes with await using', async () => {
    const never = new SqliteJobStore({ filename: tempFile() });
    await never.close();
    await never.close();
    const filename = tempFile();
    {
      await using store = new SqliteJobStore({ filename });
      await store.createJob(makeStoredJob());
    }
    // The store's connection is closed: the WAL was checkpointed and removed with it.
    expect(existsSync(`${filename}-wal`)).toBe(false);
  });

  it('refuses bad options with INVALID_ARGUMENT naming the option', () => {
    const stray = new Database(':memory:');
    cleanups.push(() => stray.close());
    const bad: unknown[] = [
      undefined,
      {},
      { filename: '' },
      { filename: 'a.db', database: stray },
      { database: { prepare() {} } },
      { filename: 'a.db', busyTimeoutMs: -1 },
      { filename: 'a.db', busyTimeoutMs: 1.5 },
    ];
    for (const options of bad) {
      expect(() => new SqliteJobStore(options as never), JSON.stringify(options)).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    }
  });

  it('loads better-sqlite3 only on first use, never at import or in the constructor', async () => {
    const out = await runChild(
      `
      import { createRequire } from 'node:module';
      const cache = createRequire(import.meta.url).cache;
      const loaded = () => Object.keys(cache).some((key) => key.includes('better-sqlite3'));
      const { SqliteJobStore } = await import('./src/sqlite.ts');
      const afterImport = loaded();
      const store = new SqliteJobStore({ filename: process.env.DB_FILE });
      const afterConstruct = loaded();
      await store.countJobs({});
      console.log(JSON.stringify({ afterImport, afterConstruct, afterUse: loaded() }));
      await store.close();
      `,
      { DB_FILE: tempFile() },
    );
    expect(JSON.parse(out)).toEqual({ afterImport: false, afterConstruct: false, afterUse: true });
  });
});

describe('SqliteJobStore: driver failures surface as STORE_FAILURE and change nothing (R3)', () => {
  it('a table dropped under the store', async () => {
    const filename = tempFile();
    const store = openStore(filename);
    const job = makeStoredJob({ state: 'Succeeded', incarnation: null });
    await store.createJob(job);
    await store.appendProgress({ apiId: job.apiId, jobUuid: job.uuid, percent: 5, detail: null, time: job.createDate });
    rawConnection(filename).exec('DROP TABLE flowchain_progress');

    // deleteJob deletes the job, then its progress: the second statement fails, so the
    // whole transaction rolls back and the job is still there.
    const error = await failure(store.deleteJob(job.uuid, { version: 1 }));
    expect(error.code).toBe('STORE_FAILURE');
    expect(error.name).toBe('FlowChainError');
    expect((error.cause as Error).message).toContain('no such table');
    expect(await store.getJob(job.uuid)).toEqual(job);
    expect(await codeOf(store.listProgress(job.apiId))).toBe('STORE_FAILURE');
    // The rest of the store keeps serving.
    expect((await store.updateJob(job.uuid, { version: 1 }, { name: 'still here' })).version).toBe(2);
  });

  it('a user-owned connection closed underneath', async () => {
    const db = rawConnection(tempFile());
    const store = new SqliteJobStore({ database: db });
    const job = makeStoredJob();
    await store.createJob(job);
    db.close();
    for (const call of [
      store.getJob(job.uuid),
      store.updateJob(job.uuid, { version: 1 }, { name: 'x' }),
      store.claimJobs({ nodeId: 'n', incarnation: 'i', jobNames: ['K'], limit: 1, scope: 'orphans' }),
      store.nodes.heartbeat('i', 1_000),
    ]) {
      const error = await failure(call);
      expect(error.code).toBe('STORE_FAILURE');
      expect(error.cause).toBeInstanceOf(Error);
    }
    await store.close();
  });
});

describe('SqliteJobStore: several connections on one file (J7, J8)', () => {
  it('two store instances see each other\'s writes, and compare-and-set holds across them', async () => {
    const filename = tempFile();
    const a = openStore(filename);
    const b = openStore(filename);
    const job = makeStoredJob();
    await a.createJob(job);
    expect(await b.getJob(job.uuid)).toEqual(job);
    await b.updateJob(job.uuid, { version: 1 }, { name: 'by b', checkpoint: '{"i":1}' });
    expect((await a.getJob(job.uuid))?.name).toBe('by b');
    expect(await a.getCheckpoint(job.uuid)).toBe('{"i":1}');
    expect(await codeOf(a.updateJob(job.uuid, { version: 1 }, { name: 'lost' }))).toBe('STORE_CONFLICT');
    expect(await codeOf(b.createJob(job))).toBe('STORE_CONFLICT');
  });

  it('racing claims from two instances give each job to exactly one', async () => {
    const filename = tempFile();
    const a = openStore(filename);
    const b = openStore(filename);
    const jobs = Array.from({ length: 60 }, () => orphan());
    for (const job of jobs) await a.createJob(job);
    const claimAll = async (store: SqliteJobStore, incarnation: string): Promise<string[]> => {
      const mine: string[] = [];
      for (;;) {
        const claimed = await store.claimJobs({ nodeId: incarnation, incarnation, jobNames: ['K'], limit: 3, scope: 'orphans' });
        if (claimed.length === 0) return mine;
        mine.push(...claimed.map((j) => j.uuid));
      }
    };
    const results = await Promise.all([claimAll(a, 'a1'), claimAll(b, 'b1'), claimAll(a, 'a2'), claimAll(b, 'b2')]);
    const all = results.flat();
    expect(all).toHaveLength(60);
    expect(new Set(all).size).toBe(60);
    for (const job of await a.queryJobs({ jobName: 'K' })) {
      expect(job.epoch).toBe(2);
      expect(job.takeovers).toBe(1);
    }
  });

  it('a lease is judged on the SQLite clock by every instance', async () => {
    const filename = tempFile();
    const a = openStore(filename);
    const b = openStore(filename);
    await a.nodes.register({ nodeId: 'node-a', incarnation: 'a1', leaseTtlMs: 100 });
    const job = orphan({ managementNodeUuid: 'node-a', incarnation: 'a1' });
    await a.createJob(job);
    expect(await b.nodes.reap(0)).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await b.nodes.reap(0)).toEqual(['a1']);
    expect(await a.nodes.heartbeat('a1', 100)).toBe(false);
    const [claimed] = await b.claimJobs({ nodeId: 'node-b', incarnation: 'b1', jobNames: ['K'], limit: 10, scope: 'orphans' });
    expect(claimed?.uuid).toBe(job.uuid);
    const nodes = await a.nodes.list();
    expect(nodes).toHaveLength(1);
    const node = nodes[0];
    expect(Date.parse(node?.leaseUntil ?? '') - Date.parse(node?.heartbeatAt ?? '')).toBe(100);
    expect(node?.startedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('processes write while another reads and claims: each job goes to exactly one process', async () => {
    const filename = tempFile();
    const parent = openStore(filename);
    await parent.open(); // the schema exists before the children race on it
    const total = 90;
    // A writer child creates orphaned jobs one by one while two claimer children and this
    // process claim them; every claimer stops once the writer is done and nothing is left.
    const child = (role: string) =>
      runChild(
        `
        import { SqliteJobStore } from './src/sqlite.ts';
        import { makeStoredJob } from './src/testing.ts';
        const store = new SqliteJobStore({ filename: process.env.DB_FILE });
        const role = process.env.ROLE;
        const claimed = [];
        if (role === 'writer') {
          for (let i = 0; i < ${total}; i++) {
            await store.createJob(makeStoredJob({ jobName: 'K', state: 'Running', incarnation: null, managementNodeUuid: null, name: 'job-' + i }));
            if (i % 10 === 0) await new Promise((r) => setTimeout(r, 5));
          }
        } else {
          for (;;) {
            const batch = await store.claimJobs({ nodeId: role, incarnation: role, jobNames: ['K'], limit: 4, scope: 'orphans' });
            claimed.push(...batch.map((j) => j.uuid));
            if (batch.length === 0) {
              if ((await store.countJobs({ jobName: 'K' })) >= ${total} && (await store.countJobs({ jobName: 'K', managementNodeUuid: null })) === 0) break;
              await new Promise((r) => setTimeout(r, 2));
            }
          }
        }
        await store.close();
        console.log(JSON.stringify(claimed));
        `,
        { DB_FILE: filename, ROLE: role },
      ).then((out) => JSON.parse(out) as string[]);
    const mine: string[] = [];
    const parentClaims = (async () => {
      for (;;) {
        const batch = await parent.claimJobs({ nodeId: 'parent', incarnation: 'parent', jobNames: ['K'], limit: 4, scope: 'orphans' });
        mine.push(...batch.map((j) => j.uuid));
        if (batch.length === 0) {
          if ((await parent.countJobs({ jobName: 'K' })) >= total && (await parent.countJobs({ jobName: 'K', managementNodeUuid: null })) === 0) return;
          await new Promise((r) => setTimeout(r, 2));
        }
      }
    })();
    const [written, claimedA, claimedB] = await Promise.all([child('writer'), child('claimer-a'), child('claimer-b'), parentClaims]);
    expect(written).toEqual([]);
    const all = [...(claimedA ?? []), ...(claimedB ?? []), ...mine];
    expect(all).toHaveLength(total);
    expect(new Set(all).size).toBe(total);
    expect(await parent.countJobs({ jobName: 'K' })).toBe(total);
    const owners = await parent.countJobsBy({ jobName: 'K' }, 'managementNodeUuid');
    expect(owners.reduce((sum, group) => sum + group.count, 0)).toBe(total);
    expect(owners.find((group) => group.value === null)).toBeUndefined();
  }, 60_000);
});

describe('SqliteJobStore: query semantics match the memory store', () => {
  it('date bounds in any ISO-8601 form compare as instants, as in memory', async () => {
    const sqlite = openStore(tempFile());
    const memory = new MemoryJobStore();
    const jobs = [
      makeStoredJob({ name: 'a', createDate: '2026-01-01T23:59:59.999Z' }),
      makeStoredJob({ name: 'b', createDate: '2026-01-02T00:00:00.000Z' }),
      makeStoredJob({ name: 'c', createDate: '2026-01-02T12:00:00.000Z' }),
    ];
    for (const job of jobs) {
      await sqlite.createJob(job);
      await memory.createJob(job);
    }
    for (const range of [
      { from: '2026-01-02' },
      { to: '2026-01-02' },
      { from: '2026-01-02T01:00:00+02:00', to: '2026-01-02T12:00:00Z' },
    ]) {
      const names = async (store: SqliteJobStore | MemoryJobStore) => (await store.queryJobs({ createDate: range })).map((j) => j.name);
      expect(await names(sqlite), JSON.stringify(range)).toEqual(await names(memory));
    }
  });

  it('rejects an unknown change field with INVALID_ARGUMENT and writes nothing', async () => {
    const store = openStore(tempFile());
    const job = makeStoredJob();
    await store.createJob(job);
    expect(await codeOf(store.updateJob(job.uuid, { version: 1 }, { bogus: 1 } as never))).toBe('INVALID_ARGUMENT');
    expect(await store.getJob(job.uuid)).toEqual(job);
  });

  it('reports claims and reaped orphans to subscribers of this instance only', async () => {
    const filename = tempFile();
    const a = openStore(filename);
    const b = openStore(filename);
    const seenA: string[] = [];
    const seenB: string[] = [];
    a.subscribe((change) => seenA.push(`${change.uuid}:${change.version}`));
    b.subscribe((change) => seenB.push(`${change.uuid}:${change.version}`));
    const job = orphan();
    await a.createJob(job);
    await a.claimJobs({ nodeId: 'n', incarnation: 'i', jobNames: ['K'], limit: 1, scope: 'orphans' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(seenA).toEqual([`${job.uuid}:1`, `${job.uuid}:2`]);
    expect(seenB).toEqual([]);
  });
});
