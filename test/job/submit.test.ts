import { describe, expect, it } from 'vitest';
import { FlowChain, LONG_JOB_FIELDS, isUuid, newUuid } from '../../src/index.js';
import { sampleInventory } from '../../src/testing.js';
import { deferred, makeManager, recordStates, resultOf } from './helpers.js';

const MIGRATE = 'APIPrimaryStorageMigrateVolumeMsg';
const jobData = {
  volumeUuid: '8b0f6b1b2a9c4e8f9d3c7a6e5b4a3c21',
  srcPrimaryStorageUuid: '2c6d8e0f1a3b4c5d6e7f8091a2b3c4d5',
  dstPrimaryStorageUuid: '9f8e7d6c5b4a39281706f5e4d3c2b1a0',
  type: 'NFSTONFSVOLUME',
};

describe('J1 the LongJob record', () => {
  it('J1 reads back the sample inventory with exactly the inventory fields plus executeTime and version', async () => {
    const { jobs, store } = makeManager();
    await store.createJob(sampleInventory());
    const job = await jobs.get('b7e65467cffe4bcd9d7ca09ec77d35e8');
    expect(Object.keys(job)).toEqual([...LONG_JOB_FIELDS]);
    expect(job).toEqual({
      uuid: 'b7e65467cffe4bcd9d7ca09ec77d35e8',
      name: MIGRATE,
      description: null,
      jobName: MIGRATE,
      jobData: JSON.stringify(jobData),
      jobResult: 'Succeeded',
      managementNodeUuid: 'b44bfa17ef294a75824db6e455b183fa',
      apiId: 'faf95996726e4381aa5226f912857338',
      targetResourceUuid: jobData.volumeUuid,
      state: 'Succeeded',
      createDate: '2026-06-01T08:30:00.000Z',
      lastOpDate: '2026-06-01T08:31:05.000Z',
      executeTime: 65,
      version: 3,
    });
    expect(JSON.parse(JSON.stringify(job))).toEqual(job);
  });

  it('J1 makes uuids of 32 lowercase hex characters without dashes', () => {
    const uuids = Array.from({ length: 100 }, () => newUuid());
    for (const uuid of uuids) expect(uuid).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(uuids).size).toBe(100);
    expect(isUuid('b7e65467-cffe-4bcd-9d7c-a09ec77d35e8')).toBe(false);
  });
});

describe('J4 submit', () => {
  it('J4 returns the record at once as Running, then the job runs to Succeeded with its result stored as JSON', async () => {
    const { jobs } = makeManager();
    const gate = deferred();
    jobs.register(MIGRATE, {
      async start(job, ctx) {
        await gate.promise;
        return { migrated: (ctx.jobData as typeof jobData).volumeUuid };
      },
    });
    await jobs.start();
    const transitions = recordStates(jobs);
    const job = await jobs.submit({ jobName: MIGRATE, jobData, targetResourceUuid: jobData.volumeUuid });
    expect(job).toMatchObject({
      name: MIGRATE,
      description: null,
      jobName: MIGRATE,
      jobData: JSON.stringify(jobData),
      jobResult: null,
      managementNodeUuid: 'mn-1',
      targetResourceUuid: jobData.volumeUuid,
      state: 'Running',
      executeTime: null,
      version: 1,
    });
    expect(isUuid(job.uuid) && isUuid(job.apiId)).toBe(true);
    expect(job.createDate).toBe(job.lastOpDate);
    expect((await jobs.get(job.uuid)).state).toBe('Running');
    gate.resolve();
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toEqual({ migrated: jobData.volumeUuid });
    expect(done.executeTime).toBeGreaterThanOrEqual(1);
    expect(done.version).toBe(2);
    expect(transitions).toEqual(['Waiting>Running', 'Running>Succeeded']);
  });

  it('J4 honours a preset uuid and apiId, a name, a description; stores "Succeeded" when start returns nothing', async () => {
    const { jobs } = makeManager();
    jobs.register(MIGRATE, { start() {} });
    await jobs.start();
    const uuid = newUuid();
    const apiId = newUuid();
    const job = await jobs.submit({ jobName: MIGRATE, uuid, apiId, name: 'migrate v1', description: 'nightly' });
    expect(job).toMatchObject({ uuid, apiId, name: 'migrate v1', description: 'nightly', jobData: '{}' });
    const done = await jobs.waitFor(uuid);
    expect(done.jobResult).toBe('Succeeded');
  });

  it('J3 runs a FlowChain as the job body and stores the chain data as the result', async () => {
    const { jobs } = makeManager();
    jobs.register(MIGRATE, {
      start: (job, ctx) =>
        ctx.runChain(
          new FlowChain<{ steps: string[] }>({ data: { steps: [] } })
            .flow({ name: 'allocate', run: (t, d) => (d.steps.push('allocate'), t.next()) })
            .flow({ name: 'copy', async run(_t, d) { d.steps.push('copy'); } }),
        ),
    });
    await jobs.start();
    const job = await jobs.submit({ jobName: MIGRATE, jobData });
    expect(resultOf(await jobs.waitFor(job.uuid))).toEqual({ steps: ['allocate', 'copy'] });
  });
});

describe('R2 bad input at submit changes nothing', () => {
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    ['an unknown jobName', { jobName: 'NoSuchJob' }, 'JOB_KIND_UNKNOWN', /"NoSuchJob"/],
    ['a missing jobName', {}, 'INVALID_ARGUMENT', /`jobName`.*got undefined/],
    ['jobData holding a function', { jobName: MIGRATE, jobData: { cb: () => 1 } }, 'INVALID_ARGUMENT', /`jobData\.cb`.*a function/],
    ['jobData holding a symbol', { jobName: MIGRATE, jobData: { s: Symbol('x') } }, 'INVALID_ARGUMENT', /`jobData\.s`.*Symbol\(x\)/],
    ['jobData holding a BigInt', { jobName: MIGRATE, jobData: { n: 10n } }, 'INVALID_ARGUMENT', /`jobData\.n`.*10n \(bigint\)/],
    ['jobData holding undefined', { jobName: MIGRATE, jobData: { a: undefined } }, 'INVALID_ARGUMENT', /`jobData\.a`.*undefined is dropped/],
    ['jobData holding NaN', { jobName: MIGRATE, jobData: { list: [1, Number.NaN] } }, 'INVALID_ARGUMENT', /`jobData\.list\[1\]`.*NaN/],
    ['jobData holding Infinity', { jobName: MIGRATE, jobData: { x: Infinity } }, 'INVALID_ARGUMENT', /`jobData\.x`.*Infinity/],
    ['jobData holding a Date', { jobName: MIGRATE, jobData: { at: new Date(0) } }, 'INVALID_ARGUMENT', /`jobData\.at`.*instance of Date/],
    ['jobData holding a Map', { jobName: MIGRATE, jobData: { m: new Map() } }, 'INVALID_ARGUMENT', /`jobData\.m`.*instance of Map/],
    ['a preset uuid with dashes', { jobName: MIGRATE, uuid: 'b7e65467-cffe-4bcd-9d7c-a09ec77d35e8' }, 'INVALID_ARGUMENT', /`uuid`/],
    ['a preset apiId that is not a uuid', { jobName: MIGRATE, apiId: 'api-1' }, 'INVALID_ARGUMENT', /`apiId`.*"api-1"/],
    ['an empty name', { jobName: MIGRATE, name: '' }, 'INVALID_ARGUMENT', /`name`/],
    ['a description that is not a string', { jobName: MIGRATE, description: 42 }, 'INVALID_ARGUMENT', /`description`.*42/],
  ];
  for (const [what, request, code, message] of cases) {
    it(`R2 refuses ${what} with ${code}`, async () => {
      const { jobs, store } = makeManager();
      jobs.register(MIGRATE, { start() {} });
      await jobs.start();
      await expect(jobs.submit(request as never)).rejects.toMatchObject({ name: 'FlowChainError', code, message: expect.stringMatching(message) });
      expect(store.inspect()).toEqual([]);
    });
  }

  it('R2 refuses circular jobData', async () => {
    const { jobs, store } = makeManager();
    jobs.register(MIGRATE, { start() {} });
    await jobs.start();
    const data: Record<string, unknown> = { a: 1 };
    data.self = data;
    await expect(jobs.submit({ jobName: MIGRATE, jobData: data })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('`jobData.self`'),
    });
    expect(store.inspect()).toEqual([]);
  });

  it('R2 refuses jobData over the configured size limit, naming both sizes', async () => {
    const { jobs, store } = makeManager({ maxJobDataBytes: 64 });
    jobs.register(MIGRATE, { start() {} });
    await jobs.start();
    await expect(jobs.submit({ jobName: MIGRATE, jobData: { blob: 'x'.repeat(100) } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('at most 64 bytes of JSON, got 111 bytes'),
    });
    expect(store.inspect()).toEqual([]);
  });

  it('R2 refuses jobData the kind\'s validate rejects, keeping its error as cause', async () => {
    const { jobs, store } = makeManager();
    const reason = new Error('volumeUuid is required');
    jobs.register<{ volumeUuid?: string }>(MIGRATE, {
      start() {},
      validate(data) {
        if (!data.volumeUuid) throw reason;
      },
    });
    await jobs.start();
    await expect(jobs.submit({ jobName: MIGRATE, jobData: {} })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      cause: reason,
      message: `Job kind "${MIGRATE}" rejected the jobData: volumeUuid is required`,
    });
    expect(store.inspect()).toEqual([]);
  });

  it('R2 refuses submit before start() and after stop() with MANAGER_NOT_RUNNING', async () => {
    const { jobs, store } = makeManager();
    jobs.register(MIGRATE, { start() {} });
    await expect(jobs.submit({ jobName: MIGRATE })).rejects.toMatchObject({ code: 'MANAGER_NOT_RUNNING' });
    await jobs.start();
    await jobs.stop();
    await expect(jobs.submit({ jobName: MIGRATE })).rejects.toMatchObject({ code: 'MANAGER_NOT_RUNNING' });
    expect(store.inspect()).toEqual([]);
  });

  it('R2 refuses registering a kind twice, or a malformed kind', () => {
    const { jobs } = makeManager();
    jobs.register(MIGRATE, { start() {} });
    expect(() => jobs.register(MIGRATE, { start() {} })).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => jobs.register('Other', {} as never)).toThrowError(/exactly one of `start`/);
    expect(() => jobs.register('Other', { start() {}, cancel: 5 } as never)).toThrowError(/`kind\.cancel` to be a function, got 5/);
    expect(() => jobs.register('', { start() {} })).toThrowError(/`jobName`/);
  });

  it('R2 refuses an unknown uuid with JOB_NOT_FOUND for every operation', async () => {
    const { jobs } = makeManager();
    await jobs.start();
    const uuid = newUuid();
    for (const op of [
      () => jobs.get(uuid),
      () => jobs.cancel(uuid),
      () => jobs.delete(uuid),
      () => jobs.rerun(uuid),
      () => jobs.resume(uuid),
      () => jobs.update(uuid, { name: 'x' }),
      () => jobs.clean(uuid),
      () => jobs.waitFor(uuid),
    ]) {
      await expect(op()).rejects.toMatchObject({ code: 'JOB_NOT_FOUND', details: { uuid } });
    }
  });

  it('R2 refuses bad manager options with INVALID_ARGUMENT naming the option', async () => {
    const { JobManager } = await import('../../src/index.js');
    expect(() => new JobManager({ leaseTtlMs: 1000, heartbeatIntervalMs: 500 })).toThrowError(/`leaseTtlMs` to be at least 3 × heartbeatIntervalMs \(1500\), got 1000/);
    expect(() => new JobManager({ pollIntervalMs: -1 })).toThrowError(/`pollIntervalMs`.*got -1/);
    expect(() => new JobManager({ nodeId: '' })).toThrowError(/`nodeId`/);
    expect(() => new JobManager({ deadNodeRetentionMs: 1.5 })).toThrowError(/`deadNodeRetentionMs` to be an integer from 0 to 2147483647, got 1\.5/);
  });
});
