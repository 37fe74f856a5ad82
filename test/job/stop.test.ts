import { describe, expect, it } from 'vitest';
import { MemoryJobStore } from '../../src/index.js';
import { deferred, makeManager, resultOf, until } from './helpers.js';

describe('J9 graceful stop', () => {
  it('J9 drain: stop() waits for running jobs to finish, then refuses new work', async () => {
    const { jobs } = makeManager();
    const release = deferred();
    jobs.register('K', { start: async () => (await release.promise, 'drained') });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    let stopped = false;
    const stopping = jobs.stop().then(() => (stopped = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(stopped).toBe(false);
    await expect(jobs.submit({ jobName: 'K' })).rejects.toMatchObject({ code: 'MANAGER_NOT_RUNNING' });
    release.resolve();
    await stopping;
    const done = await jobs.get(job.uuid);
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toBe('drained');
  });

  it('J9 suspend: running jobs are aborted and left Suspended and unowned; another node resumes them', async () => {
    const store = new MemoryJobStore();
    const { jobs: a } = makeManager({ store, nodeId: 'mn-a' });
    let reason: unknown;
    a.register('K', {
      start: (_job, ctx) =>
        new Promise((_resolve, reject) =>
          ctx.signal.addEventListener('abort', () => {
            reason = ctx.signal.reason;
            reject(ctx.signal.reason);
          }),
        ),
      resume: async () => 'unused',
    });
    await a.start();
    const job = await a.submit({ jobName: 'K' });
    await a.stop({ mode: 'suspend' });
    expect(reason).toMatchObject({ code: 'JOB_INTERRUPTED' });
    const suspended = await a.get(job.uuid);
    expect(suspended).toMatchObject({ state: 'Suspended', managementNodeUuid: null, executeTime: null });
    const { jobs: b } = makeManager({ store, nodeId: 'mn-b' });
    b.register('K', { start: async () => 'x', resume: async () => 'resumed on b' });
    await b.start();
    const done = await b.waitFor(job.uuid);
    expect(done).toMatchObject({ state: 'Succeeded', managementNodeUuid: 'mn-b', apiId: job.apiId });
    expect(resultOf(done)).toBe('resumed on b');
  });

  it('J9 a job that ignores the abort is suspended when the stop timeout ends, and its late result is rejected', async () => {
    const { jobs, store } = makeManager();
    const late = deferred<string>();
    jobs.register('K', { start: () => late.promise });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    const before = store.inspect()[0];
    await jobs.stop({ mode: 'suspend', timeoutMs: 30 });
    const suspended = store.inspect()[0];
    expect(suspended).toMatchObject({ state: 'Suspended', incarnation: null, managementNodeUuid: null, epoch: (before?.epoch ?? 0) + 1 });
    expect(JSON.parse(suspended?.jobResult ?? 'null')).toMatchObject({ code: 'JOB_INTERRUPTED' });
    late.resolve('too late');
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(store.inspect()[0]).toEqual(suspended);
    expect(job.uuid).toBe(suspended?.uuid);
  });

  it('J9 start() and stop() are idempotent; a restart is a new incarnation', async () => {
    const { jobs, store } = makeManager();
    jobs.register('K', { start: async () => 'ok' });
    await Promise.all([jobs.start(), jobs.start()]);
    const first = jobs.incarnation;
    expect(first).toMatch(/^[0-9a-f]{32}$/);
    expect(jobs.running).toBe(true);
    await Promise.all([jobs.stop(), jobs.stop()]);
    expect(jobs.running).toBe(false);
    expect(jobs.incarnation).toBeUndefined();
    expect(store.inspectNodes()).toEqual([]);
    await jobs.start();
    expect(jobs.incarnation).not.toBe(first);
    const job = await jobs.submit({ jobName: 'K' });
    expect((await jobs.waitFor(job.uuid)).state).toBe('Succeeded');
    await until(() => store.inspectNodes().length === 1);
  });
});
