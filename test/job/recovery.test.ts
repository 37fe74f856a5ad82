import { describe, expect, it } from 'vitest';
import { MemoryJobStore, type JobContext, type JobKind, type LongJob, type LongJobState } from '../../src/index.js';
import { makeStoredJob } from '../../src/testing.js';
import { deferred, makeManager, partitionable, resultOf, until } from './helpers.js';

type Calls = string[];
function kinds(calls: Calls): Record<string, JobKind> {
  const start = async (job: LongJob) => (calls.push(`start ${job.name}`), 'started');
  const resume = async (job: LongJob) => (calls.push(`resume ${job.name}`), 'resumed');
  const clean = async (job: LongJob) => void calls.push(`clean ${job.name}`);
  return {
    Resumable: { start, resume, clean },
    Cleanable: { start, clean },
    Plain: { start },
  };
}

describe('J8 restart recovery on the same store', () => {
  const cases: [LongJobState, string, LongJobState, string[], unknown][] = [
    ['Waiting', 'Plain', 'Succeeded', ['start j'], 'started'],
    ['Running', 'Resumable', 'Succeeded', ['resume j'], 'resumed'],
    ['Suspended', 'Resumable', 'Succeeded', ['resume j'], 'resumed'],
    ['Running', 'Cleanable', 'Failed', ['clean j'], { code: 'JOB_INTERRUPTED' }],
    ['Running', 'Plain', 'Failed', [], { code: 'JOB_INTERRUPTED' }],
    ['Suspended', 'Plain', 'Failed', [], { code: 'JOB_INTERRUPTED' }],
    ['Canceling', 'Cleanable', 'Canceled', ['clean j'], { code: 'JOB_CANCELED' }],
    ['Canceling', 'Plain', 'Canceled', [], { code: 'JOB_CANCELED' }],
  ];
  for (const [state, kind, final, expectedCalls, result] of cases) {
    it(`J8 a ${state} job of a ${kind} kind left by the previous incarnation ends ${final}`, async () => {
      const store = new MemoryJobStore();
      const left = makeStoredJob({ name: 'j', jobName: kind, state, managementNodeUuid: 'mn-1', incarnation: 'previous-run' });
      await store.createJob(left);
      const { jobs } = makeManager({ store, nodeId: 'mn-1' });
      const calls: Calls = [];
      for (const [name, definition] of Object.entries(kinds(calls))) jobs.register(name, definition);
      const claims: string[] = [];
      jobs.on('job:claim', (job, reason) => claims.push(`${job.uuid}:${reason}`));
      await jobs.start();
      expect(claims).toEqual([`${left.uuid}:restart`]);
      const done = await jobs.waitFor(left.uuid);
      expect(done.state).toBe(final);
      expect(done.managementNodeUuid).toBe('mn-1');
      expect(calls).toEqual(expectedCalls);
      if (typeof result === 'string') expect(resultOf(done)).toBe(result);
      else expect(resultOf(done)).toMatchObject(result as object);
      const stored = store.inspect().find((j) => j.uuid === left.uuid);
      expect(stored?.epoch).toBe(left.epoch + 1);
    });
  }

  it('J8 leaves finished jobs and other nodes\' live jobs alone', async () => {
    const store = new MemoryJobStore();
    const finished = makeStoredJob({ jobName: 'Plain', state: 'Succeeded', managementNodeUuid: 'mn-1', incarnation: null });
    const otherNode = makeStoredJob({ jobName: 'Plain', state: 'Running', managementNodeUuid: 'mn-2', incarnation: 'mn-2-run' });
    // mn-2 is alive: registered, its lease running.
    await store.nodes.register({ nodeId: 'mn-2', incarnation: 'mn-2-run', leaseTtlMs: 60_000 });
    await store.createJob(finished);
    await store.createJob(otherNode);
    const { jobs } = makeManager({ store, nodeId: 'mn-1' });
    jobs.register('Plain', { start: async () => 'x' });
    await jobs.start();
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(store.inspect()).toEqual([finished, otherNode]);
  });

  it('J8 a reaping node deletes dead nodes from the registry once deadNodeRetentionMs has passed', async () => {
    const store = new MemoryJobStore();
    await store.nodes.register({ nodeId: 'crashed', incarnation: 'crashed-run', leaseTtlMs: 30 });
    const { jobs } = makeManager({ store, nodeId: 'mn-1', deadNodeRetentionMs: 100 });
    await jobs.start();
    await until(async () => (await store.nodes.list()).some((n) => n.incarnation === 'crashed-run' && n.state === 'dead'));
    await until(async () => !(await store.nodes.list()).some((n) => n.incarnation === 'crashed-run'));
    expect((await store.nodes.list()).map((n) => [n.nodeId, n.state])).toEqual([['mn-1', 'alive']]);
  });

  it('J8 a job owned by an incarnation the registry does not know is orphaned by a reap and taken over', async () => {
    const store = new MemoryJobStore();
    // As after a restore from a backup without the node registry: nobody would ever reap it.
    const stranded = makeStoredJob({ jobName: 'Plain', state: 'Running', managementNodeUuid: 'gone', incarnation: 'gone-run', epoch: 4 });
    await store.createJob(stranded);
    const { jobs } = makeManager({ store, nodeId: 'mn-1' });
    jobs.register('Plain', { start: async () => 'x', resume: async () => 'resumed' });
    await jobs.start();
    const done = await jobs.waitFor(stranded.uuid);
    expect(done).toMatchObject({ state: 'Succeeded', managementNodeUuid: 'mn-1' });
    expect(resultOf(done)).toBe('resumed');
  });

  it('J8 a job whose kind no live node knows waits, visibly, until a node that knows it claims it', async () => {
    const store = new MemoryJobStore();
    const orphan = makeStoredJob({ jobName: 'Rare', state: 'Running', managementNodeUuid: null, incarnation: null });
    await store.createJob(orphan);
    const { jobs: a } = makeManager({ store, nodeId: 'mn-1' });
    a.register('Plain', { start: async () => 'x' });
    await a.start();
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(await a.get(orphan.uuid)).toMatchObject({ state: 'Running', managementNodeUuid: null });
    const { jobs: b } = makeManager({ store, nodeId: 'mn-2' });
    b.register('Rare', { start: async () => 'x', resume: async () => 'rare resumed' });
    await b.start();
    const done = await b.waitFor(orphan.uuid);
    expect(done).toMatchObject({ state: 'Succeeded', managementNodeUuid: 'mn-2' });
    expect(resultOf(done)).toBe('rare resumed');
  });

  it('J8 a poison job taken over more than maxTakeovers times fails with TAKEOVER_LIMIT_EXCEEDED', async () => {
    const store = new MemoryJobStore();
    const poison = makeStoredJob({ jobName: 'Resumable', state: 'Running', managementNodeUuid: null, incarnation: null, takeovers: 2 });
    await store.createJob(poison);
    const { jobs } = makeManager({ store, maxTakeovers: 2 });
    const calls: Calls = [];
    jobs.register('Resumable', kinds(calls).Resumable as JobKind);
    await jobs.start();
    const done = await jobs.waitFor(poison.uuid);
    expect(done.state).toBe('Failed');
    expect(resultOf(done)).toMatchObject({ code: 'TAKEOVER_LIMIT_EXCEEDED', details: { takeovers: 3, maxTakeovers: 2 } });
    expect(calls).toEqual([]);
  });
});

describe('J8 several managers on one store', () => {
  it('J8 a partitioned node fences itself before its lease ends; a survivor takes its job over; its late write is rejected', async () => {
    const store = new MemoryJobStore();
    const view = partitionable(store);
    const { jobs: a } = makeManager({ store: view, nodeId: 'mn-a' });
    const { jobs: b } = makeManager({ store, nodeId: 'mn-b' });
    const finishA = deferred<string>();
    let aborted: unknown;
    a.register('Copy', {
      start: (_job, ctx) => (ctx.signal.addEventListener('abort', () => (aborted = ctx.signal.reason)), finishA.promise),
      resume: async () => 'from a',
    });
    b.register('Copy', { start: async () => 'never', resume: async () => 'resumed by b' });
    const fenced = deferred<number>();
    const claimedAt = deferred<number>();
    a.on('node:fenced', () => fenced.resolve(performance.now()));
    b.on('job:claim', () => claimedAt.resolve(performance.now()));
    await a.start();
    await b.start();
    const job = await a.submit({ jobName: 'Copy' });
    const before = store.inspect()[0];
    view.cut();
    const fencedAt = await fenced.promise;
    expect(aborted).toMatchObject({ code: 'OWNERSHIP_LOST' });
    const tookOverAt = await claimedAt.promise;
    expect(fencedAt).toBeLessThan(tookOverAt);
    const done = await b.waitFor(job.uuid);
    expect(done).toMatchObject({ state: 'Succeeded', managementNodeUuid: 'mn-b' });
    expect(resultOf(done)).toBe('resumed by b');
    const after = store.inspect()[0];
    expect(after?.epoch).toBeGreaterThan(before?.epoch ?? 0);
    view.heal();
    finishA.resolve('from a, too late');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(store.inspect()[0]).toEqual(after);
  });

  it('J8 a restarted process reusing the nodeId reclaims its jobs at once and fences the old incarnation off', async () => {
    const store = new MemoryJobStore();
    const { jobs: old } = makeManager({ store, nodeId: 'mn-1' });
    const finishOld = deferred<string>();
    old.register('Copy', { start: () => finishOld.promise, resume: async () => 'old resume' });
    const fenced = deferred<string>();
    old.on('node:fenced', (reason) => fenced.resolve(reason));
    await old.start();
    const job = await old.submit({ jobName: 'Copy' });
    const { jobs: restarted } = makeManager({ store, nodeId: 'mn-1' });
    restarted.register('Copy', { start: async () => 'x', resume: async () => 'resumed after restart' });
    const claims: string[] = [];
    restarted.on('job:claim', (j, reason) => claims.push(`${j.uuid}:${reason}`));
    await restarted.start();
    expect(claims).toEqual([`${job.uuid}:restart`]);
    expect(restarted.incarnation).not.toBe(old.incarnation);
    const done = await restarted.waitFor(job.uuid);
    expect(resultOf(done)).toBe('resumed after restart');
    expect(await fenced.promise).toMatch(/a newer process registered the same nodeId/);
    finishOld.resolve('old result');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(resultOf(await restarted.get(job.uuid))).toBe('resumed after restart');
  });

  it('J6/J8 a run its node no longer owns cannot report progress: OWNERSHIP_LOST, nothing written', async () => {
    const store = new MemoryJobStore();
    const { jobs: old } = makeManager({ store, nodeId: 'mn-1' });
    const finishOld = deferred<string>();
    const oldContext = deferred<JobContext<unknown>>();
    old.register('Copy', {
      start: (_job, ctx) => {
        oldContext.resolve(ctx);
        return finishOld.promise;
      },
      resume: async () => 'old resume',
    });
    const fenced = deferred<string>();
    old.on('node:fenced', (reason) => fenced.resolve(reason));
    await old.start();
    const job = await old.submit({ jobName: 'Copy' });
    const ctx = await oldContext.promise;
    await ctx.progress(10);
    const { jobs: restarted } = makeManager({ store, nodeId: 'mn-1' });
    restarted.register('Copy', { start: async () => 'x', resume: async () => 'resumed after restart' });
    await restarted.start();
    await restarted.waitFor(job.uuid);
    await fenced.promise;

    await expect(ctx.progress(50)).rejects.toMatchObject({ code: 'OWNERSHIP_LOST', details: { uuid: job.uuid, nodeId: 'mn-1' } });
    expect((await store.listProgress(job.apiId)).map((entry) => entry.percent)).toEqual([10, 100]);
    finishOld.resolve('old result');
  });

  it('J8 the jobs of a dead node go to exactly one survivor each', async () => {
    const store = new MemoryJobStore();
    const view = partitionable(store);
    const { jobs: dead } = makeManager({ store: view, nodeId: 'mn-dead' });
    dead.register('Copy', { start: () => new Promise(() => {}), resume: async () => 'x' });
    await dead.start();
    const submitted = await Promise.all(Array.from({ length: 20 }, () => dead.submit({ jobName: 'Copy' })));
    const survivors = ['mn-b', 'mn-c'].map((nodeId) => makeManager({ store, nodeId }).jobs);
    const claims: string[] = [];
    for (const survivor of survivors) {
      survivor.register('Copy', { start: async () => 'x', resume: async (job) => `resumed on ${survivor.nodeId} ${job.uuid}` });
      survivor.on('job:claim', (job) => claims.push(job.uuid));
      await survivor.start();
    }
    view.cut();
    const finals = await Promise.all(submitted.map((job) => (survivors[0] as (typeof survivors)[0]).waitFor(job.uuid)));
    expect(claims.sort()).toEqual(submitted.map((j) => j.uuid).sort());
    for (const job of finals) {
      expect(job.state).toBe('Succeeded');
      expect(resultOf(job)).toBe(`resumed on ${job.managementNodeUuid} ${job.uuid}`);
    }
    await until(() => store.inspect().every((j) => j.incarnation === null));
  });
});
