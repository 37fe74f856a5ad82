import fc from 'fast-check';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  JobManager,
  MemoryJobStore,
  type FlowChainError,
  type JobChange,
  type JobGroupField,
  type JobQuery,
  type LongJobState,
} from '../../src/index.js';
import {
  PostgresJobStore,
  type PgPoolLike,
  type PostgresJobStoreConnectionOptions,
  type PostgresJobStoreOptions,
} from '../../src/postgres.js';
import { makeStoredJob } from '../../src/testing.js';
import {
  PG_URL,
  TEST_PREFIX,
  adminPool,
  connectionsOf,
  describePg,
  dropSchema,
  eventually,
  sleep,
  startProxy,
  terminate,
  testName,
} from '../helpers/pg.js';

// Behaviour of PostgresJobStore beyond the conformance suite (postgres-contract.test.ts):
// schema versioning, user-owned pools, several instances on one schema, LISTEN/NOTIFY
// across instances and across a lost connection, database failures (R3), and DB-time leases.
describePg('PostgresJobStore on PostgreSQL', () => {
  let admin: pg.Pool;
  const schemas = new Set<string>();
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(() => {
    admin = adminPool();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    for (const schema of schemas) await dropSchema(admin, schema);
    schemas.clear();
    expect(await connectionsOf(admin, TEST_PREFIX), 'connections left open').toBe(0);
  });
  afterAll(async () => {
    // Nothing of ours may stay connected, whatever failed above.
    expect(await connectionsOf(admin, TEST_PREFIX)).toBe(0);
    await admin.end();
  });

  /**
   * A store on a fresh schema (or the given one), closed after the test. Its connections
   * are named after the schema unless `applicationName` says otherwise (the listener's
   * get " listener" appended).
   */
  const open = (options: Partial<PostgresJobStoreConnectionOptions> = {}): PostgresJobStore => {
    const schema = options.schema ?? testName();
    schemas.add(schema);
    const store = new PostgresJobStore({
      connectionString: PG_URL,
      applicationName: schema,
      poolSize: 4,
      ...options,
      schema,
    });
    cleanups.push(() => store.close());
    return store;
  };
  const rawJob = async (schema: string, uuid: string): Promise<Record<string, unknown> | undefined> =>
    (await admin.query(`SELECT * FROM "${schema}".jobs WHERE uuid = $1`, [uuid])).rows[0];
  const codeOf = (error: unknown): unknown => (error as { code?: unknown }).code;

  describe('constructor and options', () => {
    it('does no I/O: a store on a closed port is built and closed without connecting', async () => {
      const store = new PostgresJobStore({ connectionString: 'postgres://nobody@127.0.0.1:1/none', schema: testName() });
      await store.close();
      await store.close();
    });

    it('refuses bad options with INVALID_ARGUMENT naming the option', () => {
      const bad: unknown[] = [
        {},
        { connectionString: PG_URL, pool: adminPool },
        { connectionString: '' },
        { connectionString: PG_URL, schema: 'has space' },
        { connectionString: PG_URL, schema: 'x'.repeat(49) },
        { connectionString: PG_URL, poolSize: 0 },
        { pool: { query: 1 } },
      ];
      for (const options of bad) {
        expect(() => new PostgresJobStore(options as PostgresJobStoreOptions)).toThrow(
          expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
        );
      }
    });
  });

  describe('schema (S2)', () => {
    it('creates the schema on first use and records its version', async () => {
      const store = open();
      await store.getJob('0'.repeat(32));
      const { rows } = await admin.query(`SELECT value FROM "${store.schema}".meta WHERE key = 'schema_version'`);
      expect(rows).toEqual([{ value: '1' }]);
      const tables = await admin.query(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
        [store.schema],
      );
      expect(tables.rows.map((r) => r.table_name)).toEqual(['jobs', 'meta', 'nodes', 'progress']);
      // Code-point order for every text the store sorts or compares, whatever the database's locale.
      const collations = await admin.query(
        `SELECT DISTINCT collation_name FROM information_schema.columns
          WHERE table_schema = $1 AND table_name = 'jobs' AND data_type = 'text' AND column_name <> 'checkpoint'`,
        [store.schema],
      );
      expect(collations.rows).toEqual([{ collation_name: 'C' }]);
    });

    it('migrates exactly once when many stores start on a new schema at the same time', async () => {
      const schema = testName();
      const stores = Array.from({ length: 6 }, () => open({ schema }));
      await Promise.all(stores.map((store, i) => store.createJob(makeStoredJob({ name: `job-${i}` }))));
      expect(await stores[0]?.countJobs({})).toBe(6);
    });

    it('refuses a schema newer than it supports with SCHEMA_VERSION_UNSUPPORTED naming both versions, and changes nothing', async () => {
      const first = open();
      const job = makeStoredJob();
      await first.createJob(job);
      await admin.query(`UPDATE "${first.schema}".meta SET value = '7' WHERE key = 'schema_version'`);
      const second = open({ schema: first.schema });
      const error = (await second.getJob(job.uuid).catch((e: unknown) => e)) as FlowChainError;
      expect(error.code).toBe('SCHEMA_VERSION_UNSUPPORTED');
      expect(error.message).toContain('version 7');
      expect(error.message).toContain('up to version 1');
      expect(error.details).toMatchObject({ foundVersion: 7, supportedVersion: 1 });
      await expect(second.createJob(makeStoredJob())).rejects.toMatchObject({ code: 'SCHEMA_VERSION_UNSUPPORTED' });
      expect((await admin.query(`SELECT value FROM "${first.schema}".meta`)).rows).toEqual([{ value: '7' }]);
      expect((await admin.query(`SELECT count(*)::int AS n FROM "${first.schema}".jobs`)).rows[0].n).toBe(1);
    });

    it('keeps stores on different schemas apart, notifications included', async () => {
      const a = open();
      const b = open();
      const seen: JobChange[] = [];
      const unsubscribe = b.subscribe((change) => seen.push(change));
      const job = makeStoredJob();
      await a.createJob(job);
      expect(await b.getJob(job.uuid)).toBeUndefined();
      await b.createJob(makeStoredJob({ name: 'in-b' }));
      await eventually(() => seen.length === 1);
      await sleep(200);
      expect(seen.map((c) => c.uuid)).not.toContain(job.uuid);
      unsubscribe();
    });
  });

  describe('a user-owned pool', () => {
    it('is used, lends one connection for LISTEN only while subscribed, and is never ended', async () => {
      const schema = testName();
      schemas.add(schema);
      const pool = new pg.Pool({ connectionString: PG_URL, max: 3, application_name: schema });
      pool.on('error', () => {});
      cleanups.push(() => pool.end());
      const userPool: PgPoolLike = pool; // pg.Pool satisfies the structural type
      const store = new PostgresJobStore({ pool: userPool, schema });
      const job = makeStoredJob();
      await store.createJob(job);
      expect(await store.getJob(job.uuid)).toEqual(job);

      const seen: JobChange[] = [];
      const unsubscribe = store.subscribe((change) => seen.push(change));
      await store.updateJob(job.uuid, { version: 1 }, { state: 'Canceling' });
      await eventually(() => seen.some((c) => c.uuid === job.uuid && c.version === 2), 5_000, 'the notification');
      const listening = async (): Promise<number> =>
        Number(
          (
            await admin.query(
              `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND query ILIKE 'LISTEN%'`,
              [schema],
            )
          ).rows[0].n,
        );
      expect(await listening()).toBe(1);
      unsubscribe();
      await eventually(async () => (await listening()) === 0, 5_000, 'the LISTEN connection to close');

      await store.close();
      expect(pool.ended).toBe(false);
      expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await expect(store.getJob(job.uuid)).rejects.toMatchObject({ code: 'STORE_FAILURE' });
    });
  });

  describe('queries (S3)', () => {
    it('filter, sort, page and count exactly as the memory store does (property-based)', async () => {
      const store = open();
      const memory = new MemoryJobStore();
      // Small domains so that filters hit; mixed case, accents and digits so that a
      // locale collation (instead of code-point order) would show.
      const texts = ['a', 'B', 'b', 'é', 'Z', '_x', 'a b', '10', '9'];
      const states: LongJobState[] = ['Waiting', 'Running', 'Suspended', 'Succeeded', 'Failed', 'Canceling', 'Canceled'];
      const dates = Array.from({ length: 8 }, (_, i) => new Date(Date.UTC(2026, 0, 1 + (i % 4), i)).toISOString());
      const pick = <Value>(values: readonly Value[], i: number): Value => values[i % values.length] as Value;
      for (let i = 0; i < 40; i++) {
        const job = makeStoredJob({
          name: pick(texts, i * 7),
          jobName: pick(['Migrate', 'AddImage', 'delete'], i),
          description: i % 3 === 0 ? null : pick(texts, i),
          targetResourceUuid: i % 4 === 0 ? null : pick(['vol-1', 'vol-2', 'Vol-1'], i),
          managementNodeUuid: i % 5 === 0 ? null : pick(['node-a', 'node-b'], i),
          state: pick(states, i * 3),
          createDate: pick(dates, i * 5),
          lastOpDate: pick(dates, i * 3),
          executeTime: i % 2 === 0 ? null : i % 7,
        });
        await store.createJob(job);
        await memory.createJob(job);
      }
      const oneOrMany = <Value>(arb: fc.Arbitrary<Value>): fc.Arbitrary<Value | Value[]> =>
        fc.oneof(arb, fc.array(arb, { maxLength: 3 }));
      // Each filter is absent most of the time, so that most queries return something.
      const sometimes = <Value>(arb: fc.Arbitrary<Value>): fc.Arbitrary<Value | undefined> =>
        fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });
      const range = fc.record({ from: sometimes(fc.constantFrom(...dates)), to: sometimes(fc.constantFrom(...dates)) });
      const query = fc
        .record({
          name: sometimes(oneOrMany(fc.constantFrom(...texts))),
          jobName: sometimes(oneOrMany(fc.constantFrom('Migrate', 'AddImage', 'delete', 'none'))),
          description: sometimes(oneOrMany(fc.constantFrom<string | null>(null, ...texts))),
          targetResourceUuid: sometimes(oneOrMany(fc.constantFrom<string | null>(null, 'vol-1', 'Vol-1'))),
          managementNodeUuid: sometimes(oneOrMany(fc.constantFrom<string | null>(null, 'node-a', 'node-b'))),
          state: sometimes(oneOrMany(fc.constantFrom(...states))),
          executeTime: sometimes(oneOrMany(fc.constantFrom<number | null>(null, 0, 1, 3, 5))),
          createDate: sometimes(range),
          lastOpDate: sometimes(range),
          sortBy: fc.constantFrom(undefined, 'createDate', 'lastOpDate', 'name', 'jobName', 'state', 'uuid', 'executeTime' as const),
          sortDirection: fc.constantFrom(undefined, 'asc', 'desc' as const),
          limit: sometimes(fc.integer({ min: 0, max: 12 })),
          offset: sometimes(fc.integer({ min: 0, max: 12 })),
        })
        .map((q) => JSON.parse(JSON.stringify(q)) as JobQuery); // drops the absent keys
      const groupBy = fc.constantFrom<JobGroupField>('state', 'jobName', 'name', 'managementNodeUuid', 'targetResourceUuid', 'apiId');
      await fc.assert(
        fc.asyncProperty(query, groupBy, async (q, field) => {
          expect(await store.queryJobs(q)).toEqual(await memory.queryJobs(q));
          expect(await store.countJobs(q)).toBe(await memory.countJobs(q));
          expect(await store.countJobsBy(q, field)).toEqual(await memory.countJobsBy(q, field));
        }),
        { numRuns: 150 },
      );
    });
  });

  describe('several instances on one schema (J7, J8)', () => {
    it('gives every job to exactly one of two stores claiming in a race', async () => {
      const schema = testName();
      const a = open({ schema });
      const b = open({ schema });
      const jobs = Array.from({ length: 120 }, (_, i) =>
        makeStoredJob({ jobName: 'K', state: i % 2 ? 'Waiting' : 'Running', incarnation: null, managementNodeUuid: null, epoch: 0 }),
      );
      for (const job of jobs) await a.createJob(job);
      const claimAll = async (store: PostgresJobStore, node: string): Promise<string[]> => {
        const got: string[] = [];
        for (;;) {
          const batch = await store.claimJobs({ nodeId: node, incarnation: `${node}-1`, jobNames: ['K'], limit: 7, scope: 'orphans' });
          if (batch.length === 0) return got;
          for (const job of batch) {
            expect(job.incarnation).toBe(`${node}-1`);
            expect(job.epoch).toBe(1);
            expect(job.version).toBe(2);
          }
          got.push(...batch.map((job) => job.uuid));
        }
      };
      // Two claimers per store, so that claims race within each pool as well as across them.
      const claimed = (await Promise.all([claimAll(a, 'a'), claimAll(b, 'b'), claimAll(a, 'a'), claimAll(b, 'b')])).flat();
      expect(claimed.length).toBe(120);
      expect(new Set(claimed).size).toBe(120);
      const versions = await admin.query(`SELECT DISTINCT version, epoch FROM "${schema}".jobs`);
      expect(versions.rows).toEqual([{ version: '2', epoch: '1' }]);
    });

    it('lets exactly one fenced write win when two instances write the same version', async () => {
      const schema = testName();
      const a = open({ schema });
      const b = open({ schema });
      const job = makeStoredJob({ incarnation: 'i1', epoch: 3 });
      await a.createJob(job);
      const owner = { incarnation: 'i1', epoch: 3 };
      const results = await Promise.allSettled([
        a.updateJob(job.uuid, { version: 1, owner }, { state: 'Succeeded' }),
        b.updateJob(job.uuid, { version: 1, owner }, { state: 'Failed' }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(codeOf(lost.reason)).toBe('STORE_CONFLICT');
      // A write by an owner whose job was taken over is told so, even at the current version.
      const other = makeStoredJob({ jobName: 'Z', incarnation: 'i1', epoch: 3 });
      await a.createJob(other);
      const [taken] = await a.claimJobs({ nodeId: 'node-a', incarnation: 'i2', jobNames: ['Z'], limit: 1, scope: 'previous' });
      expect(taken).toMatchObject({ incarnation: 'i2', epoch: 4, version: 2 });
      await expect(b.updateJob(other.uuid, { version: 2, owner }, { name: 'zombie' })).rejects.toMatchObject({
        code: 'OWNERSHIP_LOST',
      });
      expect(await rawJob(schema, other.uuid)).toMatchObject({ name: other.name, version: '2' });
    });

    it('delivers a write of one instance to a subscriber of another (NOTIFY)', async () => {
      const schema = testName();
      const a = open({ schema });
      const b = open({ schema });
      const seen: JobChange[] = [];
      const unsubscribe = a.subscribe((change) => seen.push(change));
      await a.getJob('0'.repeat(32)); // a's schema and listener are up
      const job = makeStoredJob({ managementNodeUuid: 'node-b' });
      await b.createJob(job);
      await b.updateJob(job.uuid, { version: 1 }, { state: 'Canceling' });
      await eventually(() => seen.length >= 2, 5_000, 'two notifications');
      expect(seen).toEqual([
        { uuid: job.uuid, state: 'Running', version: 1, managementNodeUuid: 'node-b' },
        { uuid: job.uuid, state: 'Canceling', version: 2, managementNodeUuid: 'node-b' },
      ]);
      unsubscribe();
    });
  });

  describe('the LISTEN connection', () => {
    it('is open only while someone is subscribed, and closes with the store', async () => {
      const store = open();
      const listener = `${store.schema} listener`;
      await store.getJob('0'.repeat(32));
      expect(await connectionsOf(admin, listener, 0)).toBe(0);
      const stop1 = store.subscribe(() => {});
      const stop2 = store.subscribe(() => {});
      expect(await connectionsOf(admin, listener, 1)).toBe(1);
      stop1();
      expect(await connectionsOf(admin, listener, 1, 300)).toBe(1);
      stop2();
      expect(await connectionsOf(admin, listener, 0)).toBe(0);
      store.subscribe(() => {});
      expect(await connectionsOf(admin, listener, 1)).toBe(1);
      await store.close();
      expect(await connectionsOf(admin, store.schema, 0)).toBe(0);
    });

    it('reconnects after its backend is terminated, and notifications resume', async () => {
      const errors: FlowChainError[] = [];
      const schema = testName();
      const a = open({ schema, onError: (error) => errors.push(error) });
      const b = open({ schema, applicationName: `${schema}_b` });
      const seen: JobChange[] = [];
      const unsubscribe = a.subscribe((change) => seen.push(change));
      const job = makeStoredJob();
      await b.createJob(job);
      await eventually(() => seen.length === 1, 5_000, 'the first notification');

      expect(await terminate(admin, `${schema} listener`)).toBe(1);
      await eventually(() => errors.length > 0, 5_000, 'the loss to be reported');
      expect(errors[0]?.code).toBe('STORE_FAILURE');

      // Notifications sent while it reconnects are lost (they are hints): keep writing.
      let version = 1;
      await eventually(
        async () => {
          await b.updateJob(job.uuid, { version }, { description: `v${version + 1}` });
          version++;
          await sleep(50);
          return seen.some((change) => change.version > 2);
        },
        10_000,
        'a notification after the reconnect',
      );
      expect(await connectionsOf(admin, `${schema} listener`, 1)).toBe(1);
      unsubscribe();
    });

    it('notices a half-open connection with its keep-alive, reconnects, and notifications resume', async () => {
      const proxy = await startProxy();
      cleanups.push(() => proxy.close());
      const schema = testName();
      const errors: FlowChainError[] = [];
      const a = open({ schema, connectionString: proxy.url, listenKeepAliveMs: 200, connectTimeoutMs: 500, onError: (e) => errors.push(e) });
      const b = open({ schema });
      const seen: JobChange[] = [];
      const unsubscribe = a.subscribe((change) => seen.push(change));
      const job = makeStoredJob();
      await b.createJob(job);
      await eventually(() => seen.length === 1, 5_000, 'the first notification');

      proxy.blackhole(true);
      await eventually(() => errors.some((e) => /keep-alive/.test(e.message)), 5_000, 'the keep-alive to fail');
      proxy.blackhole(false);
      let version = 1;
      await eventually(
        async () => {
          await b.updateJob(job.uuid, { version }, { description: `v${version + 1}` });
          version++;
          await sleep(100);
          return seen.some((change) => change.version > 1);
        },
        15_000,
        'a notification after the partition healed',
      );
      unsubscribe();
    });
  });

  describe('database failures (R3)', () => {
    it('surfaces an unreachable server as STORE_FAILURE with the driver error as cause', async () => {
      const store = open({ connectionString: 'postgres://postgres@127.0.0.1:1/postgres', connectTimeoutMs: 2_000 });
      const error = (await store.getJob('0'.repeat(32)).catch((e: unknown) => e)) as FlowChainError;
      expect(error.code).toBe('STORE_FAILURE');
      expect(error.message).toContain('PostgresJobStore.getJob failed');
      expect((error.cause as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
      await expect(store.createJob(makeStoredJob())).rejects.toMatchObject({ code: 'STORE_FAILURE' });
    });

    it('fails while the database is away, changes nothing, and works again once it is back', async () => {
      const proxy = await startProxy();
      cleanups.push(() => proxy.close());
      await proxy.stop();
      const store = open({ connectionString: proxy.url, connectTimeoutMs: 2_000 });
      // Down from the start: even the schema set-up is retried on the next call.
      await expect(store.getJob('0'.repeat(32))).rejects.toMatchObject({ code: 'STORE_FAILURE' });
      await proxy.start();
      const job = makeStoredJob();
      await store.createJob(job);

      await proxy.stop();
      await expect(store.updateJob(job.uuid, { version: 1 }, { state: 'Failed' })).rejects.toMatchObject({
        code: 'STORE_FAILURE',
      });
      await expect(store.claimJobs({ nodeId: 'n', incarnation: 'i', jobNames: [job.jobName], limit: 1, scope: 'orphans' })).rejects.toMatchObject({
        code: 'STORE_FAILURE',
      });
      expect(await rawJob(store.schema, job.uuid)).toMatchObject({ state: 'Running', version: '1' });

      await proxy.start();
      const updated = await store.updateJob(job.uuid, { version: 1 }, { state: 'Failed' });
      expect(updated).toMatchObject({ state: 'Failed', version: 2 });
    });

    it('rolls back a write whose connection is terminated mid-statement, and recovers', async () => {
      const store = open();
      const job = makeStoredJob();
      await store.createJob(job);
      // Hold the row so that the store's UPDATE waits, then kill the store's connections.
      const locker = await admin.connect();
      try {
        await locker.query('BEGIN');
        await locker.query(`SELECT 1 FROM "${store.schema}".jobs WHERE uuid = $1 FOR UPDATE`, [job.uuid]);
        const pending = store.updateJob(job.uuid, { version: 1 }, { state: 'Succeeded', jobResult: '"done"' });
        pending.catch(() => {});
        await eventually(
          async () =>
            (
              await admin.query(
                `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
                [store.schema],
              )
            ).rows[0].n === 1,
          5_000,
          'the UPDATE to wait on the lock',
        );
        expect(await terminate(admin, store.schema)).toBeGreaterThanOrEqual(1);
        const error = (await pending.catch((e: unknown) => e)) as FlowChainError;
        expect(error.code).toBe('STORE_FAILURE');
        expect(error.cause).toBeInstanceOf(Error);
      } finally {
        await locker.query('ROLLBACK');
        locker.release();
      }
      expect(await rawJob(store.schema, job.uuid)).toMatchObject({ state: 'Running', version: '1', job_result: null });
      let updated;
      for (let attempt = 0; updated === undefined; attempt++) {
        try {
          updated = await store.updateJob(job.uuid, { version: 1 }, { state: 'Succeeded', jobResult: '"done"' });
        } catch (error) {
          // A pooled connection killed while idle may fail one call before the pool drops it.
          if (attempt >= 3 || codeOf(error) !== 'STORE_FAILURE') throw error;
        }
      }
      expect(updated).toMatchObject({ state: 'Succeeded', version: 2 });
    });
  });

  describe('node leases use the database clock (J8)', () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it('sets lease_until = clock_timestamp() + ttl, whatever the caller\'s clock says', async () => {
      const store = open();
      await store.nodes.register({ nodeId: 'n', incarnation: 'i1', leaseTtlMs: 30_000 });
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(new Date('2001-02-03T04:05:06.000Z'));
      expect(await store.nodes.heartbeat('i1', 45_000)).toBe(true);
      vi.useRealTimers();
      const { rows } = await admin.query(
        `SELECT extract(epoch FROM lease_until - heartbeat_at) * 1000 AS ttl,
                extract(epoch FROM clock_timestamp() - heartbeat_at) AS age FROM "${store.schema}".nodes`,
      );
      expect(Number(rows[0].ttl)).toBe(45_000);
      expect(Number(rows[0].age)).toBeGreaterThanOrEqual(0);
      expect(Number(rows[0].age)).toBeLessThan(5);
      const [node] = await store.nodes.list();
      expect(Date.parse(node?.leaseUntil ?? '') - Date.parse(node?.heartbeatAt ?? '')).toBe(45_000);
      expect(Math.abs(Date.parse(node?.heartbeatAt ?? '') - Date.now())).toBeLessThan(60_000);
    });

    it('reaps by the database clock only: a caller clock far ahead declares no one dead', async () => {
      const store = open();
      await store.nodes.register({ nodeId: 'n', incarnation: 'i1', leaseTtlMs: 60_000 });
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(new Date('2100-01-01T00:00:00.000Z'));
      expect(await store.nodes.reap(0)).toEqual([]);
      vi.useRealTimers();
      await store.nodes.register({ nodeId: 'm', incarnation: 'm1', leaseTtlMs: 1 });
      await sleep(20);
      expect(await store.nodes.reap(0)).toEqual(['m1']);
    });

    it('a reap racing a restart\'s claim leaves the job with the new incarnation (READ COMMITTED re-check)', async () => {
      const store = open();
      const schema = store.schema;
      // d1 died; its restart n2 registers and claims d1's job in one transaction that the
      // reap's statement must wait for (it started before the claim committed).
      await store.nodes.register({ nodeId: 'n', incarnation: 'd1', leaseTtlMs: 60_000 });
      const job = makeStoredJob({ state: 'Running', managementNodeUuid: 'n', incarnation: 'd1', epoch: 1 });
      await store.createJob(job);
      await admin.query(`UPDATE "${schema}".nodes SET state = 'dead' WHERE incarnation = 'd1'`);
      const claim = await admin.connect();
      try {
        await claim.query('BEGIN');
        await claim.query(
          `INSERT INTO "${schema}".nodes (node_id, incarnation, started_at, heartbeat_at, lease_until, state)
           VALUES ('n', 'n2', clock_timestamp(), clock_timestamp(), clock_timestamp() + interval '1 minute', 'alive')`,
        );
        await claim.query(`UPDATE "${schema}".jobs SET incarnation = 'n2', epoch = epoch + 1, version = version + 1 WHERE uuid = $1`, [job.uuid]);
        const reaping = store.nodes.reap(0);
        await sleep(200); // the reap's statement has its snapshot, and waits for the job's row lock
        await claim.query('COMMIT');
        expect(await reaping).toEqual([]);
      } finally {
        claim.release();
      }
      expect(await store.getJob(job.uuid)).toMatchObject({ incarnation: 'n2', epoch: 2, version: 2 });
    });
  });

  describe('with JobManager (J8)', () => {
    it('runs a job to Succeeded and another node takes over the jobs of one that died', async () => {
      const schema = testName();
      const a = open({ schema, applicationName: `${schema}_a` });
      const b = open({ schema, applicationName: `${schema}_b` });
      const timing = { heartbeatIntervalMs: 100, leaseTtlMs: 600, pollIntervalMs: 50, reapGraceMs: 0 };
      const one = new JobManager({ store: a, nodeId: 'mn-1', ...timing });
      const two = new JobManager({ store: b, nodeId: 'mn-2', ...timing });
      let release!: () => void;
      const blocked = new Promise<void>((resolve) => {
        release = resolve;
      });
      cleanups.push(async () => {
        release();
        await one.stop().catch(() => {});
        await two.stop().catch(() => {});
      });
      one.register('Hang', { start: async () => blocked.then(() => 'late') });
      two.register('Hang', { start: async () => 'by two', resume: async () => 'resumed by two' });
      two.register('Quick', { start: async () => ({ ok: true }) });
      await one.start();
      await two.start();

      const quick = await two.submit({ jobName: 'Quick', jobData: {} });
      expect((await two.waitFor(quick.uuid, { timeoutMs: 10_000 })).state).toBe('Succeeded');

      const hang = await one.submit({ jobName: 'Hang', jobData: {} });
      // mn-1 "dies": from now on none of its heartbeats reaches the database.
      await a.close();
      const done = await two.waitFor(hang.uuid, { timeoutMs: 15_000 });
      expect(done).toMatchObject({ state: 'Succeeded', managementNodeUuid: 'mn-2', jobResult: '"resumed by two"' });
    });
  });
});
