import { describe, expect, it } from 'vitest';
import type { LongJobState } from '../../src/index.js';
import { makeStoredJob } from '../../src/testing.js';
import { deferred, makeManager, resultOf, until } from './helpers.js';

/*
 * ZStack's preconditions for every operation (reference/zstack.md §2.4), state by state,
 * on jobs owned by another (live) node so that only the operation acts on them.
 */
const STATES: LongJobState[] = ['Waiting', 'Suspended', 'Running', 'Canceling', 'Succeeded', 'Failed', 'Canceled'];
const FINAL = new Set<LongJobState>(['Succeeded', 'Failed', 'Canceled']);

async function setup(state: LongJobState, kind: Record<string, unknown> = {}) {
  const { jobs, store } = makeManager();
  const calls: string[] = [];
  jobs.register('K', {
    start: () => new Promise(() => {}),
    cancel: async () => {
      calls.push('cancel');
      return false;
    },
    resume: async () => {
      calls.push('resume');
      return 'resumed';
    },
    clean: async () => {
      calls.push('clean');
    },
    ...kind,
  } as never);
  await jobs.start();
  const job = makeStoredJob({
    jobName: 'K',
    state,
    managementNodeUuid: 'mn-other',
    incarnation: FINAL.has(state) ? null : 'inc-other',
    jobResult: FINAL.has(state) ? '"old result"' : null,
    executeTime: FINAL.has(state) ? 7 : null,
  });
  await store.createJob(job);
  return { jobs, store, job, calls };
}

describe('J4 operation preconditions (ZStack)', () => {
  describe('cancel', () => {
    for (const state of STATES) {
      it(`J4 cancel of a ${state} job`, async () => {
        const { jobs, job, store } = await setup(state);
        if (state === 'Succeeded' || state === 'Failed') {
          await expect(jobs.cancel(job.uuid)).rejects.toMatchObject({ code: 'INVALID_TRANSITION', details: { state, operation: 'cancel' } });
          expect(store.inspect()[0]).toEqual(job);
          return;
        }
        const after = await jobs.cancel(job.uuid);
        const expected = { Waiting: 'Canceled', Suspended: 'Canceling', Running: 'Canceling', Canceling: 'Canceling', Canceled: 'Canceled' }[state];
        expect(after.state).toBe(expected);
        if (state === 'Canceling' || state === 'Canceled') expect(after.version).toBe(job.version);
        if (state === 'Waiting') {
          expect(after.executeTime).toBeGreaterThanOrEqual(1);
          expect(resultOf(after)).toMatchObject({ code: 'JOB_CANCELED' });
        }
      });
    }

    it('J4 cancel of a kind without cancel is NOT_SUPPORTED and changes nothing', async () => {
      const { jobs, job, store } = await setup('Running', { cancel: undefined });
      await expect(jobs.cancel(job.uuid)).rejects.toMatchObject({ code: 'NOT_SUPPORTED', details: { operation: 'cancel' } });
      expect(store.inspect()[0]).toEqual(job);
    });
  });

  describe('delete', () => {
    for (const state of STATES) {
      it(`J4 delete of a ${state} job`, async () => {
        const { jobs, job, store } = await setup(state);
        if (FINAL.has(state)) {
          await jobs.delete(job.uuid);
          expect(store.inspect()).toEqual([]);
        } else {
          await expect(jobs.delete(job.uuid)).rejects.toMatchObject({ code: 'INVALID_TRANSITION', details: { state, operation: 'delete' } });
          expect(store.inspect()).toEqual([job]);
        }
      });
    }
  });

  describe('rerun', () => {
    for (const state of STATES) {
      it(`J4 rerun of a ${state} job`, async () => {
        const { jobs, job, store } = await setup(state, { start: async () => 'again' });
        if (!FINAL.has(state)) {
          await expect(jobs.rerun(job.uuid)).rejects.toMatchObject({ code: 'INVALID_TRANSITION', details: { state, operation: 'rerun' } });
          expect(store.inspect()).toEqual([job]);
          return;
        }
        const rerun = await jobs.rerun(job.uuid);
        expect(rerun).toMatchObject({ uuid: job.uuid, state: 'Running', managementNodeUuid: 'mn-1', jobResult: null, executeTime: null, jobData: job.jobData });
        expect(rerun.apiId).not.toBe(job.apiId);
        expect(rerun.createDate >= job.createDate).toBe(true);
        const done = await jobs.waitFor(job.uuid);
        expect(done.state).toBe('Succeeded');
        expect(resultOf(done)).toBe('again');
      });
    }
  });

  describe('resume', () => {
    for (const state of STATES) {
      it(`J4 resume of a ${state} job`, async () => {
        const { jobs, job, store, calls } = await setup(state);
        if (state !== 'Suspended') {
          await expect(jobs.resume(job.uuid)).rejects.toMatchObject({ code: 'INVALID_TRANSITION', details: { state, operation: 'resume' } });
          expect(store.inspect()).toEqual([job]);
          return;
        }
        const resumed = await jobs.resume(job.uuid);
        expect(resumed).toMatchObject({ state: 'Running', managementNodeUuid: 'mn-1', apiId: job.apiId, createDate: job.createDate });
        const done = await jobs.waitFor(job.uuid);
        expect(done.state).toBe('Succeeded');
        expect(calls).toEqual(['resume']);
      });
    }

    it('J4 resume of a kind without resume is NOT_SUPPORTED and changes nothing', async () => {
      const { jobs, job, store } = await setup('Suspended', { resume: undefined });
      await expect(jobs.resume(job.uuid)).rejects.toMatchObject({ code: 'NOT_SUPPORTED', details: { operation: 'resume' } });
      expect(store.inspect()).toEqual([job]);
    });
  });

  describe('update', () => {
    for (const state of STATES) {
      it(`J4 update of a ${state} job changes name and description only`, async () => {
        const { jobs, job } = await setup(state);
        const updated = await jobs.update(job.uuid, { name: 'renamed', description: 'why' });
        expect(updated).toMatchObject({ name: 'renamed', description: 'why', state, version: job.version + 1 });
      });
    }

    it('R2 update refuses other fields and bad values, changing nothing', async () => {
      const { jobs, job, store } = await setup('Running');
      await expect(jobs.update(job.uuid, { state: 'Failed' } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(jobs.update(job.uuid, { name: '' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(jobs.update(job.uuid, { description: 'x'.repeat(2049) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(store.inspect()).toEqual([job]);
    });
  });

  describe('clean', () => {
    for (const state of STATES) {
      it(`J4 clean of a ${state} job`, async () => {
        const { jobs, job, store, calls } = await setup(state);
        if (state !== 'Canceling') {
          await expect(jobs.clean(job.uuid)).rejects.toMatchObject({ code: 'INVALID_TRANSITION', details: { state, operation: 'clean' } });
          expect(store.inspect()).toEqual([job]);
          return;
        }
        const cleaned = await jobs.clean(job.uuid);
        expect(cleaned.state).toBe('Canceled');
        expect(calls).toEqual(['clean']);
        expect(resultOf(cleaned)).toMatchObject({ code: 'JOB_CANCELED' });
      });
    }

    it('J4 clean of a kind without clean is NOT_SUPPORTED and changes nothing', async () => {
      const { jobs, job, store } = await setup('Canceling', { clean: undefined });
      await expect(jobs.clean(job.uuid)).rejects.toMatchObject({ code: 'NOT_SUPPORTED', details: { operation: 'clean' } });
      expect(store.inspect()).toEqual([job]);
    });
  });
});

describe('J4 cancel of a running job (zstack.md §2.6)', () => {
  it('J4 cancel returning false: Canceling, the signal aborts, the job fails and ends Canceled', async () => {
    const { jobs } = makeManager();
    const started = deferred();
    let abortReason: unknown;
    jobs.register('K', {
      start: (_job, ctx) =>
        new Promise((_resolve, reject) => {
          started.resolve();
          ctx.signal.addEventListener('abort', () => {
            abortReason = ctx.signal.reason;
            reject(new Error('copy interrupted'));
          });
        }),
      cancel: async () => false,
    });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    await started.promise;
    const canceling = await jobs.cancel(job.uuid);
    expect(['Canceling', 'Canceled']).toContain(canceling.state);
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Canceled');
    expect(abortReason).toMatchObject({ code: 'JOB_CANCELED' });
    expect(resultOf(done)).toEqual({
      code: 'JOB_CANCELED',
      message: `Job ${job.uuid} was canceled.`,
      cause: { code: 'Error', message: 'copy interrupted' },
    });
  });

  it('J5 a job that completes anyway after a cancel ends Succeeded (Canceling + succeed)', async () => {
    const { jobs } = makeManager();
    const finish = deferred();
    jobs.register('K', { start: async () => (await finish.promise, 'migrated anyway'), cancel: async () => false });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    expect((await jobs.cancel(job.uuid)).state).toBe('Canceling');
    finish.resolve();
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toBe('migrated anyway');
  });

  it('J4 cancel returning true ends the job Canceled at once; the running code can no longer write', async () => {
    const { jobs } = makeManager();
    const finish = deferred();
    jobs.register('K', { start: async () => (await finish.promise, 'late'), cancel: async () => true });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    const canceled = await jobs.cancel(job.uuid);
    expect(canceled.state).toBe('Canceled');
    finish.resolve();
    await new Promise((resolve) => setTimeout(resolve, 30));
    const after = await jobs.get(job.uuid);
    expect(after.state).toBe('Canceled');
    expect(resultOf(after)).toMatchObject({ code: 'JOB_CANCELED' });
  });

  it('J4 a failing kind cancel rejects with CANCEL_FAILED and leaves the job Canceling', async () => {
    const { jobs } = makeManager();
    const finish = deferred();
    const agentError = new Error('no matched job to cancel');
    jobs.register('K', {
      start: async () => (await finish.promise, 'done'),
      cancel: async () => {
        throw agentError;
      },
    });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    await expect(jobs.cancel(job.uuid)).rejects.toMatchObject({ code: 'CANCEL_FAILED', cause: agentError });
    expect((await jobs.get(job.uuid)).state).toBe('Canceling');
    finish.resolve();
    expect((await jobs.waitFor(job.uuid)).state).toBe('Succeeded');
  });

  it('J4 a FlowChain job canceled mid-chain rolls back and ends Canceled', async () => {
    const { FlowChain } = await import('../../src/index.js');
    const { jobs } = makeManager();
    const log: string[] = [];
    const copying = deferred();
    jobs.register('K', {
      start: (_job, ctx) =>
        ctx.runChain(
          new FlowChain()
            .flow({ name: 'allocate', run: (t) => (log.push('allocate'), t.next()), rollback: (t) => (log.push('undo allocate'), t.rollback()) })
            .flow({
              name: 'copy',
              run: (t) => {
                log.push('copy');
                copying.resolve();
                t.signal.addEventListener('abort', () => t.fail(t.signal.reason));
              },
              rollback: (t) => (log.push('undo copy'), t.rollback()),
            })
            .flow({ name: 'switch', run: (t) => (log.push('switch'), t.next()) }),
        ),
      cancel: async () => false,
    });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    await copying.promise;
    await jobs.cancel(job.uuid);
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Canceled');
    expect(log).toEqual(['allocate', 'copy', 'undo copy', 'undo allocate']);
  });

  it('J8 a cancel issued on another node reaches the node running the job', async () => {
    const { jobs, store } = makeManager({ nodeId: 'mn-1' });
    const { jobs: other } = makeManager({ nodeId: 'mn-2', store });
    const aborted = deferred();
    jobs.register('K', {
      start: (_job, ctx) =>
        new Promise((_r, reject) => ctx.signal.addEventListener('abort', () => (aborted.resolve(), reject(ctx.signal.reason)))),
      cancel: async () => false,
    });
    other.register('K', { start: () => new Promise(() => {}), cancel: async () => false });
    await jobs.start();
    await other.start();
    const job = await jobs.submit({ jobName: 'K' });
    const seen = await other.cancel(job.uuid);
    expect(seen.state).toBe('Canceling');
    await aborted.promise;
    const done = await other.waitFor(job.uuid);
    expect(done).toMatchObject({ state: 'Canceled', managementNodeUuid: 'mn-1' });
    await until(async () => (await store.getJob(job.uuid))?.state === 'Canceled');
  });
});
