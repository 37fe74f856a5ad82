import { describe, expect, it } from 'vitest';
import { FlowChainError, MemoryJobStore } from '../../src/index.js';
import { makeStoredJob } from '../../src/testing.js';
import { deferred, makeManager, resultOf } from './helpers.js';

describe('R3 store faults', () => {
  it('R3 a failed create surfaces as STORE_FAILURE and stores nothing; the next submit works', async () => {
    const { jobs, store } = makeManager();
    jobs.register('K', { start: async () => 'ok' });
    await jobs.start();
    store.injectFault('createJob');
    await expect(jobs.submit({ jobName: 'K' })).rejects.toMatchObject({ code: 'STORE_FAILURE', details: { method: 'createJob' } });
    expect(store.inspect()).toEqual([]);
    const job = await jobs.submit({ jobName: 'K' });
    expect((await jobs.waitFor(job.uuid)).state).toBe('Succeeded');
  });

  it('R3 a completion write that fails is retried until the store is back; other jobs keep running meanwhile', async () => {
    const { jobs, store } = makeManager();
    const errors: string[] = [];
    jobs.on('manager:error', (error) => errors.push(error.code));
    const release = deferred();
    jobs.register('Blocked', { start: async () => (await release.promise, 'finally stored') });
    jobs.register('Quick', { start: async () => 'quick' });
    await jobs.start();
    const blocked = await jobs.submit({ jobName: 'Blocked' });
    store.injectFault('updateJob', { times: Infinity });
    release.resolve();
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect((await jobs.get(blocked.uuid)).state).toBe('Running');
    expect(errors.filter((code) => code === 'STORE_FAILURE').length).toBeGreaterThan(1);
    store.clearFaults();
    const done = await jobs.waitFor(blocked.uuid);
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toBe('finally stored');
    const quick = await jobs.submit({ jobName: 'Quick' });
    expect((await jobs.waitFor(quick.uuid)).state).toBe('Succeeded');
  });

  it('R3 an ambiguous commit (written, then reported failed) is recorded once, not twice', async () => {
    const { jobs, store } = makeManager();
    const release = deferred();
    jobs.register('K', { start: async () => (await release.promise, 'once') });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    store.injectFault('updateJob', { afterWrite: true });
    release.resolve();
    const done = await jobs.waitFor(job.uuid);
    expect(done).toMatchObject({ state: 'Succeeded', version: 2 });
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(store.inspect()[0]?.version).toBe(2);
  });

  it('R3 a read that fails surfaces as STORE_FAILURE to the caller', async () => {
    const { jobs, store } = makeManager();
    const stored = makeStoredJob({ state: 'Succeeded', incarnation: null });
    await store.createJob(stored);
    store.injectFault('getJob', { error: new FlowChainError('STORE_FAILURE', 'connection reset') });
    await expect(jobs.get(stored.uuid)).rejects.toMatchObject({ code: 'STORE_FAILURE', message: 'connection reset' });
    expect((await jobs.get(stored.uuid)).uuid).toBe(stored.uuid);
  });

  it('R3 a store that is down when the manager starts delays the restart recovery, never fails a job for it', async () => {
    const store = new MemoryJobStore();
    const left = makeStoredJob({ jobName: 'K', state: 'Running', managementNodeUuid: 'mn-1', incarnation: 'previous' });
    await store.createJob(left);
    const { jobs } = makeManager({ store, nodeId: 'mn-1' });
    jobs.register('K', { start: async () => 'x', resume: async () => 'resumed once the store came back' });
    store.injectFault('claimJobs', { times: 3 });
    await jobs.start();
    const done = await jobs.waitFor(left.uuid);
    expect(resultOf(done)).toBe('resumed once the store came back');
  });
});

describe('S4 corrupt records', () => {
  it('S4 get of a corrupt record is CORRUPT_RECORD naming the record and the field', async () => {
    const { jobs, store } = makeManager();
    const bad = makeStoredJob({ state: 'Succeeded', incarnation: null });
    await store.createJob(bad);
    store.corrupt(bad.uuid, 'state', 'Exploded');
    await expect(jobs.get(bad.uuid)).rejects.toMatchObject({
      code: 'CORRUPT_RECORD',
      details: { uuid: bad.uuid, field: 'state' },
      message: expect.stringContaining(`Job record ${bad.uuid}`),
    });
    store.corrupt(bad.uuid, 'state', 'Succeeded');
    store.corrupt(bad.uuid, 'jobData', '{oops');
    await expect(jobs.get(bad.uuid)).rejects.toMatchObject({ code: 'CORRUPT_RECORD', details: { field: 'jobData' } });
    store.corrupt(bad.uuid, 'jobData', '{}');
    store.corrupt(bad.uuid, 'name', undefined);
    await expect(jobs.get(bad.uuid)).rejects.toMatchObject({ code: 'CORRUPT_RECORD', details: { field: 'name' } });
  });

  it('S4 a corrupt record is left out of queries and claims, reported, and every other job keeps working', async () => {
    const store = new MemoryJobStore();
    const bad = makeStoredJob({ jobName: 'K', state: 'Running', managementNodeUuid: null, incarnation: null });
    const good = makeStoredJob({ jobName: 'K', state: 'Running', managementNodeUuid: null, incarnation: null });
    await store.createJob(bad);
    await store.createJob(good);
    store.corrupt(bad.uuid, 'createDate', 'last tuesday');
    const { jobs } = makeManager({ store });
    const reported: string[] = [];
    jobs.on('manager:error', (error) => {
      if (error.code === 'CORRUPT_RECORD') reported.push(String(error.details?.field));
    });
    jobs.register('K', { start: async () => 'x', resume: async () => 'good one resumed' });
    await jobs.start();
    expect(resultOf(await jobs.waitFor(good.uuid))).toBe('good one resumed');
    expect((await jobs.query({})).map((j) => j.uuid)).toEqual([good.uuid]);
    expect(reported).toContain('createDate');
    const fresh = await jobs.submit({ jobName: 'K' });
    expect((await jobs.waitFor(fresh.uuid)).state).toBe('Succeeded');
  });
});

describe('J7 one writer per job', () => {
  it('J7 operations on one job are serialised; concurrent updates each bump the version once', async () => {
    const { jobs } = makeManager();
    jobs.register('K', { start: () => new Promise(() => {}) });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => jobs.update(job.uuid, { name: `n${i}` })));
    expect(results.map((r) => r.version).sort((a, b) => a - b)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect((await jobs.get(job.uuid)).version).toBe(11);
  });

  it('J7 two managers racing on one job: every write lands once, by compare-and-set', async () => {
    const store = new MemoryJobStore();
    const { jobs: a } = makeManager({ store, nodeId: 'mn-a' });
    const { jobs: b } = makeManager({ store, nodeId: 'mn-b' });
    for (const m of [a, b]) m.register('K', { start: () => new Promise(() => {}), cancel: async () => false });
    await a.start();
    await b.start();
    const job = await a.submit({ jobName: 'K' });
    await Promise.all([
      ...Array.from({ length: 10 }, (_, i) => a.update(job.uuid, { description: `a${i}` })),
      ...Array.from({ length: 10 }, (_, i) => b.update(job.uuid, { description: `b${i}` })),
    ]);
    expect((await a.get(job.uuid)).version).toBe(21);
  });
});
