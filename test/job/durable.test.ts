import { describe, expect, it } from 'vitest';
import { FlowChain, MemoryJobStore, type Flow } from '../../src/index.js';
import { makeStoredJob } from '../../src/testing.js';
import { deferred, makeManager, resultOf } from './helpers.js';

type Data = { volumeUuid: string; done: string[] };

/** A durable chain kind whose flows log `run:<flow>:<idempotencyKey>` and `rollback:<flow>`. */
function migrateKind(log: string[], options: { failAt?: string; block?: Record<string, Promise<void>>; names?: string[] } = {}) {
  const names = options.names ?? ['allocate', 'copy', 'switch', 'cleanup'];
  const flow = (name: string): Flow<Data> => ({
    name,
    async run(trigger, data) {
      log.push(`run:${name}:${trigger.idempotencyKey}`);
      const gate = options.block?.[name];
      if (gate) {
        await new Promise<void>((resolve, reject) => {
          void gate.then(resolve);
          trigger.signal.addEventListener('abort', () => reject(trigger.signal.reason));
        });
      }
      if (options.failAt === name) throw new Error(`${name} broke`);
      data.done.push(name);
    },
    async rollback(_trigger, data) {
      log.push(`rollback:${name}`);
      data.done = data.done.filter((d) => d !== name);
    },
  });
  return {
    chain: (_job: unknown, jobData: { volumeUuid: string }) => {
      const chain = new FlowChain<Data>({ name: 'migrate', data: { volumeUuid: jobData.volumeUuid, done: [] } });
      for (const name of names) chain.flow(flow(name));
      return chain;
    },
  };
}

function checkpoint(fields: Record<string, unknown>): string {
  return JSON.stringify({ v: 1, attempt: 1, flows: ['allocate', 'copy', 'switch', 'cleanup'], ...fields });
}

describe('J10 durable chains', () => {
  it('J10 runs the chain, checkpoints after every flow, and stores the final data as the result', async () => {
    const { jobs, store } = makeManager();
    const log: string[] = [];
    jobs.register('Migrate', migrateKind(log));
    await jobs.start();
    const job = await jobs.submit({ jobName: 'Migrate', jobData: { volumeUuid: 'v1' } });
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toEqual({ volumeUuid: 'v1', done: ['allocate', 'copy', 'switch', 'cleanup'] });
    expect(log).toEqual(['allocate', 'copy', 'switch', 'cleanup'].map((n) => `run:${n}:${job.uuid}:${n}:1`));
    // One version bump per checkpoint (4 flows) and one for the final state.
    expect(done.version).toBe(1 + 4 + 1);
    const saved = JSON.parse((await store.getCheckpoint(job.uuid)) as string);
    expect(saved).toMatchObject({ v: 1, attempt: 1, phase: 'forward', index: 4, status: [2, 2, 2, 2], data: { done: ['allocate', 'copy', 'switch', 'cleanup'] } });
  });

  it('J10 resumes after a crash from the checkpoint: done flows are not run again, data comes back', async () => {
    const store = new MemoryJobStore();
    const job = makeStoredJob({ jobName: 'Migrate', state: 'Running', managementNodeUuid: 'mn-1', incarnation: 'crashed', jobData: '{"volumeUuid":"v1"}' });
    await store.createJob(job);
    await store.updateJob(job.uuid, { version: 1 }, {
      checkpoint: checkpoint({ status: [2, 2, 0, 0], phase: 'forward', index: 2, data: { volumeUuid: 'v1', done: ['allocate', 'copy'] } }),
    });
    const { jobs } = makeManager({ store, nodeId: 'mn-1' });
    const log: string[] = [];
    jobs.register('Migrate', migrateKind(log));
    await jobs.start();
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Succeeded');
    expect(log).toEqual([`run:switch:${job.uuid}:switch:1`, `run:cleanup:${job.uuid}:cleanup:1`]);
    expect(resultOf(done)).toEqual({ volumeUuid: 'v1', done: ['allocate', 'copy', 'switch', 'cleanup'] });
  });

  it('J10 a chain that was rolling back goes on rolling back where it stopped, never forward', async () => {
    const store = new MemoryJobStore();
    const job = makeStoredJob({ jobName: 'Migrate', state: 'Running', managementNodeUuid: 'mn-1', incarnation: 'crashed', jobData: '{"volumeUuid":"v1"}' });
    await store.createJob(job);
    await store.updateJob(job.uuid, { version: 1 }, {
      checkpoint: checkpoint({
        status: [2, 2, 6, 0],
        phase: 'rollback',
        index: 1,
        error: { code: 'FLOW_FAILED', message: 'Flow "switch (3/4)" failed: switch broke', flowName: 'switch', flowIndex: 2, cause: { code: 'Error', message: 'switch broke' } },
        data: { volumeUuid: 'v1', done: ['allocate', 'copy'] },
      }),
    });
    const { jobs } = makeManager({ store, nodeId: 'mn-1' });
    const log: string[] = [];
    jobs.register('Migrate', migrateKind(log));
    await jobs.start();
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Failed');
    expect(log).toEqual(['rollback:copy', 'rollback:allocate']);
    expect(resultOf(done)).toEqual({
      code: 'FLOW_FAILED',
      message: 'Flow "switch (3/4)" failed: switch broke',
      cause: { code: 'Error', message: 'switch broke' },
    });
  });

  it('J10 refuses to resume a chain whose flow list changed (INCOMPATIBLE_CHAIN): Suspended, nothing run', async () => {
    const store = new MemoryJobStore();
    const job = makeStoredJob({ jobName: 'Migrate', state: 'Running', managementNodeUuid: 'mn-1', incarnation: 'crashed', jobData: '{"volumeUuid":"v1"}' });
    await store.createJob(job);
    await store.updateJob(job.uuid, { version: 1 }, { checkpoint: checkpoint({ status: [2, 0, 0, 0], phase: 'forward', index: 1, data: { volumeUuid: 'v1', done: ['allocate'] } }) });
    const { jobs } = makeManager({ store, nodeId: 'mn-1' });
    const log: string[] = [];
    jobs.register('Migrate', migrateKind(log, { names: ['allocate', 'verify', 'copy', 'switch', 'cleanup'] }));
    await jobs.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const suspended = await jobs.get(job.uuid);
    expect(suspended).toMatchObject({ state: 'Suspended', managementNodeUuid: 'mn-1' });
    expect(resultOf(suspended)).toMatchObject({ code: 'INCOMPATIBLE_CHAIN', details: { checkpointed: ['allocate', 'copy', 'switch', 'cleanup'] } });
    expect(log).toEqual([]);
  });

  it('J10 checks flow names up front: unnamed, duplicated or nested flows fail the job before anything runs', async () => {
    const { jobs } = makeManager();
    const ran: string[] = [];
    const run = (name: string) => async () => void ran.push(name);
    jobs.register('Unnamed', { chain: () => new FlowChain().flow({ name: 'a', run: run('a') }).flow({ run: run('b') }) });
    jobs.register('Twice', { chain: () => new FlowChain().flow({ name: 'a', run: run('a') }).flow({ name: 'a', run: run('a2') }) });
    jobs.register('Nested', { chain: () => new FlowChain().flow(new FlowChain({ name: 'child' }).flow({ name: 'c', run: run('c') })) });
    await jobs.start();
    const expectations: [string, string][] = [
      ['Unnamed', 'flow #2 has no name'],
      ['Twice', 'the name "a" is used twice'],
      ['Nested', 'is a nested chain or parallel group'],
    ];
    for (const [jobName, message] of expectations) {
      const done = await jobs.waitFor((await jobs.submit({ jobName })).uuid);
      expect(done.state).toBe('Failed');
      expect(resultOf(done)).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(message) });
    }
    expect(ran).toEqual([]);
  });

  it('J10 a flow that makes the data unserialisable fails, and rollback starts with it', async () => {
    const { jobs } = makeManager();
    const log: string[] = [];
    jobs.register('K', {
      chain: () =>
        new FlowChain<Record<string, unknown>>()
          .flow({ name: 'a', run: (t) => (log.push('run:a'), t.next()), rollback: (t) => (log.push('rollback:a'), t.rollback()) })
          .flow({ name: 'b', run: (t, d) => (log.push('run:b'), (d.when = new Date(0)), t.next()), rollback: (t, d) => (log.push('rollback:b'), delete d.when, t.rollback()) })
          .flow({ name: 'c', run: (t) => (log.push('run:c'), t.next()) }),
    });
    await jobs.start();
    const done = await jobs.waitFor((await jobs.submit({ jobName: 'K' })).uuid);
    expect(done.state).toBe('Failed');
    expect(log).toEqual(['run:a', 'run:b', 'rollback:b', 'rollback:a']);
    expect(resultOf(done)).toMatchObject({ code: 'FLOW_FAILED', cause: { code: 'INVALID_ARGUMENT', message: expect.stringContaining('`data.when`') } });
  });

  it('J10 a canceled durable job rolls back from where it is, then its clean runs, and it ends Canceled', async () => {
    const { jobs } = makeManager();
    const log: string[] = [];
    const never = new Promise<void>(() => {});
    const kind = migrateKind(log, { block: { switch: never } });
    jobs.register('Migrate', { ...kind, clean: async () => void log.push('clean') });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'Migrate', jobData: { volumeUuid: 'v1' } });
    await new Promise((resolve) => setTimeout(resolve, 30));
    await jobs.cancel(job.uuid);
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Canceled');
    expect(log.map((l) => l.split(':').slice(0, 2).join(':'))).toEqual([
      'run:allocate',
      'run:copy',
      'run:switch',
      'rollback:switch',
      'rollback:copy',
      'rollback:allocate',
      'clean',
    ]);
  });

  it('J10 stop with suspend halts the chain without rollback; another node resumes it from the checkpoint', async () => {
    const store = new MemoryJobStore();
    const { jobs: a } = makeManager({ store, nodeId: 'mn-a' });
    const logA: string[] = [];
    a.register('Migrate', migrateKind(logA, { block: { switch: new Promise<void>(() => {}) } }));
    await a.start();
    const job = await a.submit({ jobName: 'Migrate', jobData: { volumeUuid: 'v1' } });
    await new Promise((resolve) => setTimeout(resolve, 30));
    await a.stop({ mode: 'suspend' });
    expect(logA).toEqual(['allocate', 'copy', 'switch'].map((n) => `run:${n}:${job.uuid}:${n}:1`));
    expect(await a.get(job.uuid)).toMatchObject({ state: 'Suspended', managementNodeUuid: null });
    const { jobs: b } = makeManager({ store, nodeId: 'mn-b' });
    const logB: string[] = [];
    b.register('Migrate', migrateKind(logB));
    await b.start();
    const done = await b.waitFor(job.uuid);
    expect(done).toMatchObject({ state: 'Succeeded', managementNodeUuid: 'mn-b' });
    // The flow in doubt (switch) runs again, with the same idempotency key.
    expect(logB).toEqual([`run:switch:${job.uuid}:switch:1`, `run:cleanup:${job.uuid}:cleanup:1`]);
    expect(resultOf(done)).toEqual({ volumeUuid: 'v1', done: ['allocate', 'copy', 'switch', 'cleanup'] });
  });

  it('J10 a rerun starts the chain over with the next attempt in its idempotency keys', async () => {
    const { jobs } = makeManager();
    const log: string[] = [];
    jobs.register('Migrate', migrateKind(log, { names: ['allocate'] }));
    await jobs.start();
    const job = await jobs.submit({ jobName: 'Migrate', jobData: { volumeUuid: 'v1' } });
    await jobs.waitFor(job.uuid);
    await jobs.rerun(job.uuid);
    await jobs.waitFor(job.uuid);
    expect(log).toEqual([`run:allocate:${job.uuid}:allocate:1`, `run:allocate:${job.uuid}:allocate:2`]);
  });

  it('J10 a Canceling durable job taken over rolls back from its checkpoint and ends Canceled', async () => {
    const store = new MemoryJobStore();
    const job = makeStoredJob({ jobName: 'Migrate', state: 'Canceling', managementNodeUuid: null, incarnation: null, jobData: '{"volumeUuid":"v1"}' });
    await store.createJob(job);
    await store.updateJob(job.uuid, { version: 1 }, { checkpoint: checkpoint({ status: [2, 2, 0, 0], phase: 'forward', index: 2, data: { volumeUuid: 'v1', done: ['allocate', 'copy'] } }) });
    const { jobs } = makeManager({ store });
    const log: string[] = [];
    jobs.register('Migrate', migrateKind(log));
    await jobs.start();
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Canceled');
    // The flow at the checkpoint's position (switch) may have run before the crash: in doubt,
    // it is rolled back first, like a failing flow (rollbacks must be idempotent).
    expect(log).toEqual(['rollback:switch', 'rollback:copy', 'rollback:allocate']);
  });

  it('J10 a corrupt checkpoint is CORRUPT_RECORD and the job is not run from it', async () => {
    const store = new MemoryJobStore();
    const job = makeStoredJob({ jobName: 'Migrate', state: 'Running', managementNodeUuid: 'mn-1', incarnation: 'crashed', jobData: '{"volumeUuid":"v1"}' });
    await store.createJob(job);
    await store.updateJob(job.uuid, { version: 1 }, { checkpoint: '{"v":1,"attempt":1,"flows":["allocate"],"status":"garbage"}' });
    const { jobs } = makeManager({ store, nodeId: 'mn-1' });
    const log: string[] = [];
    jobs.register('Migrate', migrateKind(log));
    await jobs.start();
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Failed');
    expect(resultOf(done)).toMatchObject({ code: 'CORRUPT_RECORD', details: { field: 'checkpoint' } });
    expect(log).toEqual([]);
  });
});
