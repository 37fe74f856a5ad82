import { describe, expect, it } from 'vitest';
import { FlowChain, FlowChainError, type ProgressEntry } from '../../src/index.js';
import { deferred, makeManager, resultOf } from './helpers.js';

describe('J5 results and error mapping', () => {
  it('J5 a failure stores the error as JSON { code, message, details?, cause? } and ends Failed', async () => {
    const { jobs } = makeManager();
    const root = Object.assign(new Error('disk full'), { code: 'ENOSPC' });
    jobs.register('K', {
      async start() {
        throw new FlowChainError('FLOW_FAILED', 'copy failed', { cause: root, details: { volume: 'v1' } });
      },
    });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Failed');
    expect(resultOf(done)).toEqual({
      code: 'FLOW_FAILED',
      message: 'copy failed',
      details: { volume: 'v1' },
      cause: { code: 'ENOSPC', message: 'disk full' },
    });
    expect(done.executeTime).toBeGreaterThanOrEqual(1);
  });

  it('J5 the first result written wins: setResult() survives a later return value and a later failure', async () => {
    const { jobs } = makeManager();
    jobs.register('Ok', {
      async start(_job, ctx) {
        await ctx.setResult({ imageUuid: 'i-1' });
        await ctx.setResult({ imageUuid: 'i-2' });
        return { ignored: true };
      },
    });
    jobs.register('Bad', {
      async start(_job, ctx) {
        await ctx.setResult({ partial: true });
        throw new Error('later failure');
      },
    });
    await jobs.start();
    const ok = await jobs.waitFor((await jobs.submit({ jobName: 'Ok' })).uuid);
    expect(ok.state).toBe('Succeeded');
    expect(resultOf(ok)).toEqual({ imageUuid: 'i-1' });
    const bad = await jobs.waitFor((await jobs.submit({ jobName: 'Bad' })).uuid);
    expect(bad.state).toBe('Failed');
    expect(resultOf(bad)).toEqual({ partial: true });
  });

  it('J5 an interrupted error suspends the job; a canceled error cancels it', async () => {
    const { jobs } = makeManager();
    jobs.register('Interrupted', {
      async start() {
        throw new FlowChainError('JOB_INTERRUPTED', 'agent lost');
      },
    });
    jobs.register('Canceled', {
      async start() {
        throw new FlowChainError('JOB_CANCELED', 'agent canceled it');
      },
    });
    await jobs.start();
    const interrupted = await jobs.submit({ jobName: 'Interrupted' });
    const canceled = await jobs.submit({ jobName: 'Canceled' });
    expect((await jobs.waitFor(canceled.uuid)).state).toBe('Canceled');
    await new Promise((resolve) => setTimeout(resolve, 20));
    const suspended = await jobs.get(interrupted.uuid);
    expect(suspended).toMatchObject({ state: 'Suspended', managementNodeUuid: 'mn-1', executeTime: null });
    expect(resultOf(suspended)).toEqual({ code: 'JOB_INTERRUPTED', message: 'agent lost' });
  });

  it('J5 a result that cannot be stored as JSON fails the job instead of losing it', async () => {
    const { jobs } = makeManager();
    jobs.register('K', { start: async () => ({ when: new Date(0) }) });
    await jobs.start();
    const done = await jobs.waitFor((await jobs.submit({ jobName: 'K' })).uuid);
    expect(done.state).toBe('Failed');
    expect(resultOf(done)).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('`result.when`') });
  });
});

describe('J6 progress', () => {
  it('J6 stores progress under the apiId, 100 on success, and emits job:progress', async () => {
    const { jobs } = makeManager();
    const events: ProgressEntry[] = [];
    jobs.on('job:progress', (entry) => events.push(entry));
    const release = deferred();
    jobs.register('K', {
      async start(_job, ctx) {
        await ctx.progress(10);
        await ctx.progress(55.5, { stage: 'copy', bytes: 1024 });
        await release.promise;
      },
    });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K', apiId: 'faf95996726e4381aa5226f912857338' });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(await jobs.getProgress(job.apiId)).toMatchObject({ percent: 55.5, detail: '{"stage":"copy","bytes":1024}', jobUuid: job.uuid });
    release.resolve();
    await jobs.waitFor(job.uuid);
    const all = await jobs.getProgress(job.apiId, { all: true });
    expect(all.map((p) => p.percent)).toEqual([10, 55.5, 100]);
    expect(all.every((p) => p.apiId === job.apiId)).toBe(true);
    expect(events.map((p) => p.percent)).toEqual([10, 55.5, 100]);
    expect((await jobs.getProgress(job.apiId))?.percent).toBe(100);
  });

  it('J6 a FlowChain job reports progress after each flow, then 100', async () => {
    const { jobs } = makeManager();
    const chain = () =>
      new FlowChain()
        .flow({ name: 'a', run: (t) => t.next() })
        .flow({ name: 'b', skip: () => true, run: (t) => t.next() })
        .flow({ name: 'c', async run() {} })
        .flow({ name: 'd', async run() {} });
    jobs.register('K', { start: (_job, ctx) => ctx.runChain(chain()) });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    await jobs.waitFor(job.uuid);
    expect((await jobs.getProgress(job.apiId, { all: true })).map((p) => p.percent)).toEqual([25, 50, 75, 99, 100]);
  });

  it('J6 refuses a percent outside 0–100, and a bad apiId', async () => {
    const { jobs } = makeManager();
    let error: unknown;
    jobs.register('K', {
      async start(_job, ctx) {
        try {
          await ctx.progress(101);
        } catch (e) {
          error = e;
        }
      },
    });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    await jobs.waitFor(job.uuid);
    expect(error).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'Expected `percent` to be a number from 0 to 100, got 101.' });
    expect((await jobs.getProgress(job.apiId, { all: true })).map((p) => p.percent)).toEqual([100]);
    await expect(jobs.getProgress('nope')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('J4 query and count', () => {
  it('J4 queries by any field, state sets and dates, sorts, pages, and counts grouped by a field', async () => {
    const { jobs } = makeManager();
    jobs.register('A', { start: async () => 'a' });
    jobs.register('B', { start: () => new Promise(() => {}) });
    await jobs.start();
    const a1 = await jobs.submit({ jobName: 'A', name: 'n1', targetResourceUuid: 'v1' });
    const a2 = await jobs.submit({ jobName: 'A', name: 'n2', targetResourceUuid: 'v2' });
    const b1 = await jobs.submit({ jobName: 'B', name: 'n3', targetResourceUuid: 'v1' });
    await jobs.waitFor(a1.uuid);
    await jobs.waitFor(a2.uuid);
    expect((await jobs.query({ state: 'Running', targetResourceUuid: 'v1' })).map((j) => j.uuid)).toEqual([b1.uuid]);
    expect((await jobs.query({ state: ['Succeeded', 'Running'], sortBy: 'name', sortDirection: 'desc' })).map((j) => j.name)).toEqual(['n3', 'n2', 'n1']);
    expect((await jobs.query({ sortBy: 'name', limit: 1, offset: 1 })).map((j) => j.name)).toEqual(['n2']);
    expect((await jobs.query({ createDate: { from: a1.createDate } })).length).toBe(3);
    expect((await jobs.query({ createDate: { to: '2000-01-01T00:00:00Z' } })).length).toBe(0);
    expect(await jobs.count({ jobName: 'A' })).toBe(2);
    expect(await jobs.count({}, { groupBy: 'state' })).toEqual([
      { value: 'Running', count: 1 },
      { value: 'Succeeded', count: 2 },
    ]);
    await expect(jobs.query({ state: 'Exploded' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(jobs.query({ colour: 'red' } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(jobs.query({ limit: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(jobs.count({}, { groupBy: 'jobData' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('J4 waitFor gives up with WAIT_TIMEOUT, or when its signal aborts', async () => {
    const { jobs } = makeManager();
    jobs.register('B', { start: () => new Promise(() => {}) });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'B' });
    await expect(jobs.waitFor(job.uuid, { timeoutMs: 30 })).rejects.toMatchObject({ code: 'WAIT_TIMEOUT' });
    const controller = new AbortController();
    const waiting = jobs.waitFor(job.uuid, { signal: controller.signal });
    controller.abort(new Error('caller gave up'));
    await expect(waiting).rejects.toThrowError('caller gave up');
  });
});
