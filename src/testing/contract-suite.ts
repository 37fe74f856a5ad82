import assert from 'node:assert/strict';
import { isFlowChainError } from '../errors.js';
import { newUuid } from '../job/record.js';
import type { JobStore, StoredJob } from '../store/contract.js';
import { makeStoredJob, sampleInventory } from './fixtures.js';

/** The test-runner functions the conformance suite registers its tests with. */
export interface ContractRunner {
  describe(name: string, body: () => void): void;
  it(name: string, body: () => Promise<void>, timeoutMs?: number): void;
}

/** Options of {@link describeJobStoreContract}. */
export interface JobStoreContractOptions<Store extends JobStore> {
  /** `describe` and `it` of your test runner. @default the runner's globals */
  runner?: ContractRunner;
  /** Writes a raw value into a stored job's field (bypassing the store), for the corrupt-record tests. */
  corrupt?: (store: Store, uuid: string, field: string, rawValue: unknown) => Promise<void>;
  /** Disposes of a store after its test. @default store.close() */
  destroy?: (store: Store) => Promise<void>;
  /** Per-test timeout. @default 20000 */
  timeoutMs?: number;
}

/**
 * Registers the job-store conformance suite (S3): every contract method, compare-and-set
 * and fencing conflicts, query filters, claiming, node leases, and corrupt-record handling.
 * Run it on your own store with your own test runner; each test gets a fresh store from
 * `makeStore` and disposes of it after.
 *
 * @example
 * ```ts
 * import { describe, it } from 'vitest';
 * import { MemoryJobStore } from 'flowchain';
 * import { describeJobStoreContract } from 'flowchain/testing';
 *
 * describeJobStoreContract('MemoryJobStore', () => new MemoryJobStore(), {
 *   runner: { describe, it },
 *   corrupt: async (store, uuid, field, value) => store.corrupt(uuid, field, value),
 * });
 * ```
 */
export function describeJobStoreContract<Store extends JobStore>(
  name: string,
  makeStore: () => Store | Promise<Store>,
  options: JobStoreContractOptions<Store> = {},
): void {
  const globals = globalThis as unknown as Partial<ContractRunner>;
  const runner: ContractRunner | undefined =
    options.runner ??
    (typeof globals.describe === 'function' && typeof globals.it === 'function'
      ? { describe: globals.describe, it: globals.it }
      : undefined);
  if (runner === undefined) {
    throw new TypeError(
      'describeJobStoreContract needs `describe` and `it`: pass { runner: { describe, it } } from your test runner.',
    );
  }
  const timeout = options.timeoutMs ?? 20_000;
  const test = (title: string, body: (store: Store) => Promise<void>): void => {
    runner.it(
      title,
      async () => {
        const store = await makeStore();
        try {
          await body(store);
        } finally {
          await (options.destroy ?? ((s: Store) => s.close()))(store);
        }
      },
      timeout,
    );
  };

  runner.describe(`JobStore contract (S3): ${name}`, () => {
    runner.describe('create and read', () => {
      test('J1 stores and reads back the sample inventory exactly', async (store) => {
        const sample = sampleInventory();
        assert.deepEqual(await store.createJob(sample), sample);
        assert.deepEqual(await store.getJob(sample.uuid), sample);
      });

      test('returns undefined for an unknown uuid', async (store) => {
        assert.equal(await store.getJob(newUuid()), undefined);
      });

      test('refuses a second job with the same uuid (STORE_CONFLICT) and keeps the first', async (store) => {
        const job = makeStoredJob({ name: 'first' });
        await store.createJob(job);
        await expectCode(store.createJob({ ...job, name: 'second' }), 'STORE_CONFLICT');
        assert.equal((await store.getJob(job.uuid))?.name, 'first');
      });

      test('keeps nullable fields null and text fields byte for byte', async (store) => {
        const job = makeStoredJob({
          description: 'ünïcode ✓ "quotes" \\ back\nslash',
          jobData: JSON.stringify({ nested: { list: [1, 'two', null, true] }, emoji: '🚀' }),
          jobResult: null,
          targetResourceUuid: null,
          managementNodeUuid: null,
          incarnation: null,
        });
        await store.createJob(job);
        assert.deepEqual(await store.getJob(job.uuid), job);
      });
    });

    runner.describe('compare-and-set updates (J7)', () => {
      test('applies the changes, bumps the version by one and leaves other fields alone', async (store) => {
        const job = makeStoredJob();
        await store.createJob(job);
        const updated = await store.updateJob(job.uuid, { version: 1 }, { state: 'Succeeded', jobResult: '"ok"', executeTime: 3 });
        assert.deepEqual(updated, { ...job, state: 'Succeeded', jobResult: '"ok"', executeTime: 3, version: 2 });
        assert.deepEqual(await store.getJob(job.uuid), updated);
      });

      test('refuses a stale version with STORE_CONFLICT and changes nothing', async (store) => {
        const job = makeStoredJob();
        await store.createJob(job);
        await store.updateJob(job.uuid, { version: 1 }, { name: 'renamed' });
        await expectCode(store.updateJob(job.uuid, { version: 1 }, { name: 'lost' }), 'STORE_CONFLICT');
        const current = await store.getJob(job.uuid);
        assert.equal(current?.name, 'renamed');
        assert.equal(current?.version, 2);
      });

      test('refuses a write fenced by another owner or epoch with OWNERSHIP_LOST', async (store) => {
        const job = makeStoredJob({ incarnation: 'inc-1', epoch: 4 });
        await store.createJob(job);
        await expectCode(
          store.updateJob(job.uuid, { version: 1, owner: { incarnation: 'inc-2', epoch: 4 } }, { state: 'Failed' }),
          'OWNERSHIP_LOST',
        );
        await expectCode(
          store.updateJob(job.uuid, { version: 1, owner: { incarnation: 'inc-1', epoch: 3 } }, { state: 'Failed' }),
          'OWNERSHIP_LOST',
        );
        const ok = await store.updateJob(job.uuid, { version: 1, owner: { incarnation: 'inc-1', epoch: 4 } }, { state: 'Failed' });
        assert.equal(ok.state, 'Failed');
        assert.equal(ok.version, 2);
      });

      test('fails with JOB_NOT_FOUND for an unknown uuid', async (store) => {
        await expectCode(store.updateJob(newUuid(), { version: 1 }, { name: 'x' }), 'JOB_NOT_FOUND');
      });

      test('lets exactly one of many concurrent writers at the same version win', async (store) => {
        const job = makeStoredJob();
        await store.createJob(job);
        const results = await Promise.allSettled(
          Array.from({ length: 20 }, (_, i) => store.updateJob(job.uuid, { version: 1 }, { name: `writer-${i}` })),
        );
        const won = results.filter((r) => r.status === 'fulfilled');
        assert.equal(won.length, 1);
        for (const r of results) {
          if (r.status === 'rejected') assert.equal(codeOf(r.reason), 'STORE_CONFLICT');
        }
        const current = await store.getJob(job.uuid);
        assert.equal(current?.version, 2);
        assert.equal(current?.name, (won[0] as PromiseFulfilledResult<StoredJob>).value.name);
      });
    });

    runner.describe('checkpoints', () => {
      test('writes a checkpoint with the version bump, reads it back, and deletes it with null', async (store) => {
        const job = makeStoredJob();
        await store.createJob(job);
        assert.equal(await store.getCheckpoint(job.uuid), undefined);
        const text = JSON.stringify({ phase: 'forward', index: 2, data: { a: 1 } });
        const updated = await store.updateJob(job.uuid, { version: 1 }, { checkpoint: text, lastOpDate: job.lastOpDate });
        assert.equal(updated.version, 2);
        assert.equal(await store.getCheckpoint(job.uuid), text);
        await expectCode(store.updateJob(job.uuid, { version: 1 }, { checkpoint: 'stale' }), 'STORE_CONFLICT');
        assert.equal(await store.getCheckpoint(job.uuid), text);
        await store.updateJob(job.uuid, { version: 2 }, { checkpoint: null });
        assert.equal(await store.getCheckpoint(job.uuid), undefined);
        assert.equal(await store.getCheckpoint(newUuid()), undefined);
      });
    });

    runner.describe('delete', () => {
      test('removes the job, its checkpoint and its progress (of every run)', async (store) => {
        const job = makeStoredJob({ state: 'Succeeded', incarnation: null });
        const earlierApiId = newUuid();
        const other = makeStoredJob({ apiId: earlierApiId });
        await store.createJob(job);
        await store.createJob(other);
        await store.updateJob(job.uuid, { version: 1 }, { checkpoint: '{"x":1}' });
        await store.appendProgress({ apiId: job.apiId, jobUuid: job.uuid, percent: 10, detail: null, time: job.createDate });
        // A report from before a rerun (another apiId), and one of another job under that apiId.
        await store.appendProgress({ apiId: earlierApiId, jobUuid: job.uuid, percent: 100, detail: null, time: job.createDate });
        await store.appendProgress({ apiId: earlierApiId, jobUuid: other.uuid, percent: 5, detail: null, time: job.createDate });
        await expectCode(store.deleteJob(job.uuid, { version: 1 }), 'STORE_CONFLICT');
        assert.notEqual(await store.getJob(job.uuid), undefined);
        await store.deleteJob(job.uuid, { version: 2 });
        assert.equal(await store.getJob(job.uuid), undefined);
        assert.equal(await store.getCheckpoint(job.uuid), undefined);
        assert.deepEqual(await store.listProgress(job.apiId), []);
        assert.deepEqual(
          (await store.listProgress(earlierApiId)).map((p) => p.jobUuid),
          [other.uuid],
        );
        await expectCode(store.deleteJob(job.uuid, { version: 2 }), 'JOB_NOT_FOUND');
      });
    });

    runner.describe('query and count', () => {
      const seed = async (store: Store): Promise<StoredJob[]> => {
        const jobs = [
          makeStoredJob({ name: 'b', jobName: 'Migrate', state: 'Running', targetResourceUuid: 'vol-1', createDate: '2026-01-01T00:00:00.000Z', lastOpDate: '2026-01-05T00:00:00.000Z', executeTime: null }),
          makeStoredJob({ name: 'a', jobName: 'Migrate', state: 'Succeeded', targetResourceUuid: 'vol-2', managementNodeUuid: null, incarnation: null, createDate: '2026-01-02T00:00:00.000Z', lastOpDate: '2026-01-03T00:00:00.000Z', executeTime: 30 }),
          makeStoredJob({ name: 'c', jobName: 'AddImage', state: 'Failed', targetResourceUuid: null, managementNodeUuid: 'node-b', incarnation: null, createDate: '2026-01-03T00:00:00.000Z', lastOpDate: '2026-01-04T00:00:00.000Z', executeTime: 5 }),
          makeStoredJob({ name: 'd', jobName: 'AddImage', state: 'Running', targetResourceUuid: 'vol-1', description: 'mine', createDate: '2026-01-04T00:00:00.000Z', lastOpDate: '2026-01-01T00:00:00.000Z', executeTime: null }),
        ];
        for (const job of jobs) await store.createJob(job);
        return jobs;
      };
      const names = (jobs: StoredJob[]): string[] => jobs.map((j) => j.name);

      test('filters by equality, by any of several values, and by null', async (store) => {
        await seed(store);
        assert.deepEqual(names(await store.queryJobs({ jobName: 'Migrate' })), ['b', 'a']);
        assert.deepEqual(names(await store.queryJobs({ state: ['Succeeded', 'Failed'] })), ['a', 'c']);
        assert.deepEqual(names(await store.queryJobs({ targetResourceUuid: null })), ['c']);
        assert.deepEqual(names(await store.queryJobs({ managementNodeUuid: [null, 'node-b'] })), ['a', 'c']);
        assert.deepEqual(names(await store.queryJobs({ state: 'Running', targetResourceUuid: 'vol-1' })), ['b', 'd']);
        assert.deepEqual(names(await store.queryJobs({ description: 'mine' })), ['d']);
        assert.deepEqual(names(await store.queryJobs({ executeTime: [5, 30] })), ['a', 'c']);
        assert.deepEqual(names(await store.queryJobs({ state: [] })), []);
      });

      test('filters by inclusive date ranges', async (store) => {
        await seed(store);
        assert.deepEqual(
          names(await store.queryJobs({ createDate: { from: '2026-01-02T00:00:00.000Z', to: '2026-01-03T00:00:00.000Z' } })),
          ['a', 'c'],
        );
        assert.deepEqual(names(await store.queryJobs({ lastOpDate: { to: '2026-01-03T00:00:00.000Z' } })), ['a', 'd']);
        assert.deepEqual(names(await store.queryJobs({ lastOpDate: { from: '2026-01-04T00:00:00.000Z' } })), ['b', 'c']);
      });

      test('sorts by a field in either direction, then pages', async (store) => {
        await seed(store);
        assert.deepEqual(names(await store.queryJobs({})), ['b', 'a', 'c', 'd']);
        assert.deepEqual(names(await store.queryJobs({ sortBy: 'name' })), ['a', 'b', 'c', 'd']);
        assert.deepEqual(names(await store.queryJobs({ sortBy: 'lastOpDate', sortDirection: 'desc' })), ['b', 'c', 'a', 'd']);
        assert.deepEqual(names(await store.queryJobs({ sortBy: 'name', limit: 2, offset: 1 })), ['b', 'c']);
        assert.deepEqual(names(await store.queryJobs({ sortBy: 'name', offset: 3 })), ['d']);
        assert.deepEqual(names(await store.queryJobs({ sortBy: 'name', limit: 0 })), []);
        const byExecuteTime = names(await store.queryJobs({ sortBy: 'executeTime' }));
        assert.deepEqual(byExecuteTime.slice(2), ['c', 'a']);
      });

      test('counts matches, ignoring paging, and counts per value of a field', async (store) => {
        await seed(store);
        assert.equal(await store.countJobs({}), 4);
        assert.equal(await store.countJobs({ state: 'Running', limit: 1 }), 2);
        assert.deepEqual(await store.countJobsBy({}, 'state'), [
          { value: 'Failed', count: 1 },
          { value: 'Running', count: 2 },
          { value: 'Succeeded', count: 1 },
        ]);
        assert.deepEqual(await store.countJobsBy({ jobName: 'Migrate' }, 'targetResourceUuid'), [
          { value: 'vol-1', count: 1 },
          { value: 'vol-2', count: 1 },
        ]);
        assert.deepEqual(await store.countJobsBy({}, 'managementNodeUuid'), [
          { value: null, count: 1 },
          { value: 'node-a', count: 2 },
          { value: 'node-b', count: 1 },
        ]);
      });
    });

    runner.describe('claiming (J8)', () => {
      test('claims orphans, or the same node\'s previous incarnations, nothing else', async (store) => {
        const orphan = makeStoredJob({ jobName: 'K', state: 'Running', incarnation: null, managementNodeUuid: null, epoch: 2 });
        const previous = makeStoredJob({ jobName: 'K', state: 'Suspended', incarnation: 'old', managementNodeUuid: 'node-a', epoch: 1 });
        const waiting = makeStoredJob({ jobName: 'K', state: 'Waiting', incarnation: null, managementNodeUuid: null, epoch: 0 });
        const canceling = makeStoredJob({ jobName: 'K', state: 'Canceling', incarnation: null, managementNodeUuid: null, epoch: 1 });
        const otherNode = makeStoredJob({ jobName: 'K', state: 'Running', incarnation: 'x', managementNodeUuid: 'node-b' });
        const mine = makeStoredJob({ jobName: 'K', state: 'Running', incarnation: 'now', managementNodeUuid: 'node-a' });
        const finished = makeStoredJob({ jobName: 'K', state: 'Failed', incarnation: null, managementNodeUuid: null });
        const otherKind = makeStoredJob({ jobName: 'Other', state: 'Running', incarnation: null, managementNodeUuid: null });
        const all = [orphan, previous, waiting, canceling, otherNode, mine, finished, otherKind];
        for (const job of all) await store.createJob(job);

        const request = { nodeId: 'node-a', incarnation: 'now', jobNames: ['K'], limit: 100 };
        const orphans = await store.claimJobs({ ...request, scope: 'orphans' });
        const previousOnes = await store.claimJobs({ ...request, scope: 'previous' });
        assert.deepEqual(orphans.map((j) => j.uuid).sort(), [orphan.uuid, waiting.uuid, canceling.uuid].sort());
        assert.deepEqual(previousOnes.map((j) => j.uuid), [previous.uuid]);
        for (const job of [...orphans, ...previousOnes]) {
          const before = all.find((j) => j.uuid === job.uuid) as StoredJob;
          assert.equal(job.incarnation, 'now');
          assert.equal(job.managementNodeUuid, 'node-a');
          assert.equal(job.epoch, before.epoch + 1);
          assert.equal(job.version, before.version + 1);
          assert.equal(job.state, before.state);
          assert.equal(job.takeovers, before.state === 'Running' || before.state === 'Canceling' ? 1 : 0);
          assert.deepEqual(await store.getJob(job.uuid), job);
        }
        for (const untouched of [otherNode, mine, finished, otherKind]) {
          assert.deepEqual(await store.getJob(untouched.uuid), untouched);
        }
      });

      test('never takes a previous incarnation\'s jobs while that incarnation is alive', async (store) => {
        const nodes = store.nodes;
        if (nodes === undefined) return;
        await nodes.register({ nodeId: 'node-a', incarnation: 'a-live', leaseTtlMs: 60_000 });
        const job = makeStoredJob({ jobName: 'K', state: 'Running', incarnation: 'a-live', managementNodeUuid: 'node-a' });
        await store.createJob(job);
        // Another process started with the same nodeId but has not registered (yet, or ever):
        const request = { nodeId: 'node-a', incarnation: 'a-other', jobNames: ['K'], limit: 100 } as const;
        assert.deepEqual(await store.claimJobs({ ...request, scope: 'previous' }), []);
        assert.deepEqual(await store.getJob(job.uuid), job);
        // Registering a new incarnation of node-a supersedes the old one: now it may take it.
        await nodes.register({ nodeId: 'node-a', incarnation: 'a-other', leaseTtlMs: 60_000 });
        const claimed = await store.claimJobs({ ...request, scope: 'previous' });
        assert.deepEqual(claimed.map((j) => [j.uuid, j.incarnation, j.epoch]), [[job.uuid, 'a-other', job.epoch + 1]]);
      });

      test('respects the limit and gives each job to exactly one of two racing claimers', async (store) => {
        const jobs = Array.from({ length: 30 }, () =>
          makeStoredJob({ jobName: 'K', state: 'Running', incarnation: null, managementNodeUuid: null }),
        );
        for (const job of jobs) await store.createJob(job);
        assert.equal((await store.claimJobs({ nodeId: 'n0', incarnation: 'i0', jobNames: ['K'], limit: 4, scope: 'orphans' })).length, 4);
        const [a, b] = await Promise.all([
          store.claimJobs({ nodeId: 'n1', incarnation: 'i1', jobNames: ['K'], limit: 100, scope: 'orphans' }),
          store.claimJobs({ nodeId: 'n2', incarnation: 'i2', jobNames: ['K'], limit: 100, scope: 'orphans' }),
        ]);
        const uuidsA = a.map((j) => j.uuid);
        const uuidsB = b.map((j) => j.uuid);
        assert.equal(uuidsA.length + uuidsB.length, 26);
        assert.equal(new Set([...uuidsA, ...uuidsB]).size, 26);
        assert.deepEqual(await store.claimJobs({ nodeId: 'n3', incarnation: 'i3', jobNames: ['K'], limit: 100, scope: 'orphans' }), []);
      });
    });

    runner.describe('progress (J6)', () => {
      test('appends reports and lists them oldest first, per apiId', async (store) => {
        const apiId = newUuid();
        const other = newUuid();
        const jobUuid = newUuid();
        const times = ['2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z', '2026-01-01T00:00:01.000Z'];
        await store.appendProgress({ apiId, jobUuid, percent: 10, detail: null, time: times[0] as string });
        await store.appendProgress({ apiId: other, jobUuid, percent: 99, detail: null, time: times[0] as string });
        await store.appendProgress({ apiId, jobUuid, percent: 50, detail: '{"step":"copy"}', time: times[1] as string });
        await store.appendProgress({ apiId, jobUuid, percent: 100, detail: null, time: times[2] as string });
        assert.deepEqual(await store.listProgress(apiId), [
          { apiId, jobUuid, percent: 10, detail: null, time: times[0] },
          { apiId, jobUuid, percent: 50, detail: '{"step":"copy"}', time: times[1] },
          { apiId, jobUuid, percent: 100, detail: null, time: times[2] },
        ]);
        assert.deepEqual(await store.listProgress(newUuid()), []);
      });
    });

    runner.describe('node leases (optional capability)', () => {
      test('registers, renews, supersedes a restarted node, reaps the dead and orphans their jobs', async (store) => {
        const nodes = store.nodes;
        if (nodes === undefined) return;
        await nodes.register({ nodeId: 'node-a', incarnation: 'a1', leaseTtlMs: 60_000 });
        await nodes.register({ nodeId: 'node-b', incarnation: 'b1', leaseTtlMs: 150 });
        assert.equal(await nodes.heartbeat('a1', 60_000), true);
        assert.equal(await nodes.heartbeat('nobody', 60_000), false);
        const owned = makeStoredJob({ state: 'Running', managementNodeUuid: 'node-b', incarnation: 'b1', epoch: 2 });
        const done = makeStoredJob({ state: 'Succeeded', managementNodeUuid: 'node-b', incarnation: 'b1', epoch: 2 });
        const alive = makeStoredJob({ state: 'Running', managementNodeUuid: 'node-a', incarnation: 'a1', epoch: 1 });
        for (const job of [owned, done, alive]) await store.createJob(job);

        await sleep(400);
        const dead = await nodes.reap(0);
        assert.deepEqual(dead, ['b1']);
        assert.equal(await nodes.heartbeat('b1', 60_000), false);
        const orphan = await store.getJob(owned.uuid);
        assert.equal(orphan?.incarnation, null);
        assert.equal(orphan?.managementNodeUuid, null);
        assert.equal(orphan?.epoch, 3);
        assert.equal(orphan?.version, 2);
        assert.equal(orphan?.state, 'Running');
        assert.deepEqual(await store.getJob(done.uuid), done);
        assert.deepEqual(await store.getJob(alive.uuid), alive);
        assert.deepEqual(await nodes.reap(0), []);

        await nodes.register({ nodeId: 'node-a', incarnation: 'a2', leaseTtlMs: 60_000 });
        assert.equal(await nodes.heartbeat('a1', 60_000), false);
        assert.equal(await nodes.heartbeat('a2', 60_000), true);
        const list = await nodes.list();
        const states = Object.fromEntries(list.map((n) => [n.incarnation, n.state]));
        assert.deepEqual(states, { a1: 'dead', a2: 'alive', b1: 'dead' });
        const a2 = list.find((n) => n.incarnation === 'a2');
        assert.equal(a2?.nodeId, 'node-a');
        assert.ok(a2 !== undefined && Date.parse(a2.leaseUntil) > Date.parse(a2.heartbeatAt));
      });

      test('reap orphans the unfinished jobs of an incarnation the registry does not know', async (store) => {
        const nodes = store.nodes;
        if (nodes === undefined) return;
        await nodes.register({ nodeId: 'node-k', incarnation: 'k1', leaseTtlMs: 60_000 });
        const stranded = makeStoredJob({ state: 'Running', managementNodeUuid: 'node-x', incarnation: 'x1', epoch: 5 });
        const finished = makeStoredJob({ state: 'Failed', managementNodeUuid: 'node-x', incarnation: 'x1', epoch: 5 });
        const alive = makeStoredJob({ state: 'Running', managementNodeUuid: 'node-k', incarnation: 'k1', epoch: 1 });
        for (const job of [stranded, finished, alive]) await store.createJob(job);

        assert.deepEqual(await nodes.reap(0), []);
        const orphan = await store.getJob(stranded.uuid);
        assert.equal(orphan?.incarnation, null);
        assert.equal(orphan?.managementNodeUuid, null);
        assert.equal(orphan?.epoch, 6);
        assert.equal(orphan?.version, 2);
        assert.deepEqual(await store.getJob(finished.uuid), finished);
        assert.deepEqual(await store.getJob(alive.uuid), alive);
      });

      test('reap deletes dead incarnations only past retainDeadMs, and none without it', async (store) => {
        const nodes = store.nodes;
        if (nodes === undefined) return;
        await nodes.register({ nodeId: 'node-d', incarnation: 'd1', leaseTtlMs: 100 });
        await nodes.register({ nodeId: 'node-e', incarnation: 'e1', leaseTtlMs: 60_000 });
        await sleep(300);
        assert.deepEqual(await nodes.reap(0), ['d1']);
        const incarnations = async (): Promise<string[]> => (await nodes.list()).map((n) => n.incarnation).sort();
        // Dead, but kept: no retention given, then a retention longer than its death.
        assert.deepEqual(await nodes.reap(0), []);
        assert.deepEqual(await incarnations(), ['d1', 'e1']);
        assert.deepEqual(await nodes.reap(0, 60_000), []);
        assert.deepEqual(await incarnations(), ['d1', 'e1']);
        // Its lease ended about 200 ms ago: a shorter retention deletes it; the alive one stays.
        assert.deepEqual(await nodes.reap(0, 50), []);
        assert.deepEqual(await incarnations(), ['e1']);
        assert.equal(await nodes.heartbeat('d1', 60_000), false);
        assert.equal(await nodes.heartbeat('e1', 60_000), true);
      });

      test('a graceful leave removes the node and orphans its unfinished jobs', async (store) => {
        const nodes = store.nodes;
        if (nodes === undefined) return;
        await nodes.register({ nodeId: 'node-c', incarnation: 'c1', leaseTtlMs: 60_000 });
        const job = makeStoredJob({ state: 'Suspended', managementNodeUuid: 'node-c', incarnation: 'c1', epoch: 1 });
        await store.createJob(job);
        await nodes.leave('c1');
        assert.deepEqual((await nodes.list()).map((n) => n.incarnation), []);
        const orphan = await store.getJob(job.uuid);
        assert.equal(orphan?.incarnation, null);
        assert.equal(orphan?.epoch, 2);
        assert.equal(await nodes.heartbeat('c1', 60_000), false);
      });
    });

    runner.describe('change notifications (optional capability)', () => {
      test('reports writes to subscribers until they unsubscribe', async (store) => {
        if (store.subscribe === undefined) return;
        const seen: string[] = [];
        const job = makeStoredJob();
        const unsubscribe = store.subscribe((change) => {
          if (change.uuid === job.uuid) seen.push(`${change.state}@${change.version}`);
        });
        await store.createJob(job);
        await store.updateJob(job.uuid, { version: 1 }, { state: 'Canceling' });
        await waitUntil(() => seen.includes('Canceling@2'));
        unsubscribe();
        await store.updateJob(job.uuid, { version: 2 }, { state: 'Canceled' });
        await sleep(300);
        assert.equal(seen.includes('Canceled@3'), false);
      });
    });

    if (options.corrupt !== undefined) {
      const corrupt = options.corrupt;
      runner.describe('corrupt records (S4)', () => {
        for (const [field, raw] of [
          ['state', 'Exploded'],
          ['jobData', '{not json'],
          ['name', null],
          ['createDate', 'yesterday'],
        ] as const) {
          test(`returns a record whose ${field} is corrupt as it is, and every other record intact`, async (store) => {
            const bad = makeStoredJob({ name: 'bad' });
            const good = makeStoredJob({ name: 'good' });
            await store.createJob(bad);
            await store.createJob(good);
            await corrupt(store, bad.uuid, field, raw);
            const read = await store.getJob(bad.uuid);
            assert.equal((read as unknown as Record<string, unknown>)[field], raw);
            assert.deepEqual(await store.getJob(good.uuid), good);
            const all = await store.queryJobs({ uuid: [bad.uuid, good.uuid] });
            assert.equal(all.length, 2);
            assert.deepEqual(
              all.find((j) => j.uuid === good.uuid),
              good,
            );
          });
        }
      });
    }

    runner.describe('lifecycle', () => {
      test('close is idempotent', async (store) => {
        await store.close();
        await store.close();
      });
    });
  });
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  try {
    await promise;
  } catch (error) {
    assert.equal(codeOf(error), code, `expected ${code}, got ${codeOf(error)}: ${(error as Error)?.message}`);
    assert.ok(isFlowChainError(error), 'expected a FlowChainError');
    return;
  }
  assert.fail(`expected the call to fail with ${code}, but it succeeded`);
}

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntil(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail('timed out waiting for a condition');
    await sleep(10);
  }
}
