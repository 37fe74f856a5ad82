import { describe, expect, it } from 'vitest';
import {
  FlowChain,
  FlowChainError,
  MemoryJobStore,
  type Flow,
  type ChainJobKind,
  type JobKind,
  type JobManager,
  type LongJob,
  type StoredJob,
} from '../../src/index.js';
import { makeStoredJob } from '../../src/testing.js';
import { deferred, makeManager, partitionable, resultOf, until } from './helpers.js';

/*
 * Regression tests for the job-layer bugs found in review (one test per reproduction
 * script; the script's name is in each test's comment). Each test asserts the correct
 * behaviour: final states, what ran and in which order, counts and error codes.
 */

/** Starts node n1 with `kind` as K, submits a K job and waits until `running` resolves. */
async function submitOnN1<Data>(
  store: MemoryJobStore,
  kind: JobKind | ChainJobKind<unknown, Data>,
  running: Promise<void>,
): Promise<{ jobs: JobManager; job: LongJob }> {
  const { jobs } = makeManager({ store, nodeId: 'n1' });
  if ('chain' in kind) jobs.register<unknown, Data>('K', kind);
  else jobs.register('K', kind);
  await jobs.start();
  const job = await jobs.submit({ jobName: 'K' });
  await running;
  return { jobs, job };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A promise that never resolves and rejects with the signal's reason when it aborts. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** The stored checkpoint of a job, parsed. */
async function checkpointOf(store: MemoryJobStore, uuid: string): Promise<Record<string, unknown> | undefined> {
  const text = await store.getCheckpoint(uuid);
  return text === undefined ? undefined : (JSON.parse(text) as Record<string, unknown>);
}

/** Status values of a checkpoint (src/flow/run.ts `Status`). */
const DONE = 2;
const ROLLED_BACK = 6;


/** A flow that logs `run <name>` and completes at once, and logs `rollback <name>` when undone. */
function loggedNext(log: string[], name: string): Flow<Record<string, unknown>> {
  return {
    name,
    run(t) {
      log.push(`run ${name}`);
      t.next();
    },
    rollback(t) {
      log.push(`rollback ${name}`);
      t.rollback();
    },
  };
}

describe('J8 a rolling restart with the same nodeId (e_steal, e2_steal_defaults)', () => {
  it('J8 an old process with the same nodeId never takes back the jobs its successor reclaimed', async () => {
    // e_steal: the old process polls often and renews its lease rarely, so it polls many
    // times between its successor's start and the heartbeat that tells it it was superseded.
    const store = new MemoryJobStore();
    const log: string[] = [];
    const finishOld = deferred<string>();
    const finishNew = deferred<string>();
    const { jobs: old } = makeManager({ store, nodeId: 'n1', pollIntervalMs: 10, heartbeatIntervalMs: 200, leaseTtlMs: 600 });
    old.register('K', {
      start: () => (log.push('old start'), finishOld.promise),
      resume: async () => (log.push('old resume'), 'old'),
    });
    const oldClaims: string[] = [];
    old.on('job:claim', (job, reason) => oldClaims.push(`${job.uuid}:${reason}`));
    const fenced = deferred<string>();
    old.on('node:fenced', (reason) => fenced.resolve(reason));
    await old.start();
    const job = await old.submit({ jobName: 'K' });
    expect(log).toEqual(['old start']);

    const { jobs: successor } = makeManager({ store, nodeId: 'n1' });
    successor.register('K', {
      start: async () => (log.push('new start'), 'new'),
      resume: () => (log.push('new resume'), finishNew.promise),
    });
    const newClaims: string[] = [];
    successor.on('job:claim', (claimed, reason) => newClaims.push(`${claimed.uuid}:${reason}`));
    await successor.start();
    expect(newClaims).toEqual([`${job.uuid}:restart`]);
    await until(() => log.includes('new resume'));

    // The old process finds out at its next heartbeat, and stays fenced off for good.
    expect(await fenced.promise).toMatch(/a newer process registered the same nodeId/);
    expect(old.incarnation).toBeUndefined();
    finishOld.resolve('old, too late');
    await sleep(100); // ten more polls of the old process, were it still polling
    finishNew.resolve('new');
    const done = await successor.waitFor(job.uuid);
    expect(done).toMatchObject({ state: 'Succeeded', managementNodeUuid: 'n1' });
    expect(resultOf(done)).toBe('new');
    await sleep(50);
    expect(log).toEqual(['old start', 'new resume']);
    expect(oldClaims).toEqual([]);
    expect(newClaims).toEqual([`${job.uuid}:restart`]);
    expect(store.inspect()).toHaveLength(1);
    expect(store.inspect()[0]).toMatchObject({ state: 'Succeeded', takeovers: 1, incarnation: null });
    expect(resultOf(store.inspect()[0] as LongJob)).toBe('new');
    // The old incarnation never registered again: the successor is the only live one.
    const alive = store.inspectNodes().filter((node) => node.state === 'alive');
    expect(alive.map((node) => node.incarnation)).toEqual([successor.incarnation]);
  });

  it('J8 with the default lease timings, the old process (not yet fenced) never claims its successor\'s job back', async () => {
    // e2_steal_defaults: heartbeat 5 s, lease 30 s, so the old process is not fenced at all
    // during the test; it polls every 10 ms and must leave the job alone all the same.
    const store = new MemoryJobStore();
    const log: string[] = [];
    const finishOld = deferred<string>();
    const finishNew = deferred<string>();
    const timings = { pollIntervalMs: 10, heartbeatIntervalMs: 5_000, leaseTtlMs: 30_000 };
    const { jobs: old } = makeManager({ store, nodeId: 'n1', ...timings });
    old.register('K', {
      start: () => (log.push('old start'), finishOld.promise),
      resume: async () => (log.push('old resume'), 'old'),
    });
    const oldClaims: string[] = [];
    old.on('job:claim', (job, reason) => oldClaims.push(`${job.uuid}:${reason}`));
    const oldFenced: string[] = [];
    old.on('node:fenced', (reason) => oldFenced.push(reason));
    await old.start();
    const job = await old.submit({ jobName: 'K' });

    const { jobs: successor } = makeManager({ store, nodeId: 'n1', ...timings });
    successor.register('K', {
      start: async () => (log.push('new start'), 'new'),
      resume: () => (log.push('new resume'), finishNew.promise),
    });
    const newClaims: string[] = [];
    successor.on('job:claim', (claimed, reason) => newClaims.push(`${claimed.uuid}:${reason}`));
    await successor.start();
    await until(() => log.includes('new resume'));
    await sleep(150); // about fifteen polls of the old process
    expect(oldFenced).toEqual([]);
    expect(oldClaims).toEqual([]);
    expect(store.inspect()[0]).toMatchObject({ state: 'Running', incarnation: successor.incarnation, takeovers: 1 });

    finishNew.resolve('new');
    const done = await successor.waitFor(job.uuid);
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toBe('new');
    const final = store.inspect()[0];
    // The old run's late result is refused: the record does not change.
    finishOld.resolve('old');
    await sleep(50);
    expect(store.inspect()[0]).toEqual(final);
    expect(log).toEqual(['old start', 'new resume']);
    expect(oldClaims).toEqual([]);
    expect(newClaims).toEqual([`${job.uuid}:restart`]);
    expect(final).toMatchObject({ state: 'Succeeded', takeovers: 1 });
  });
});

describe('J9 a submit racing stop() (a_submit_stop, a2_submit_stop)', () => {
  it('J9 a submit still in its checks when stop() begins is refused with MANAGER_NOT_RUNNING and stores nothing', async () => {
    const store = new MemoryJobStore();
    const log: string[] = [];
    const validating = deferred();
    const validated = deferred();
    const releaseBlocker = deferred();
    const { jobs } = makeManager({ store, nodeId: 'n1' });
    jobs.register('Blocker', { start: async () => (await releaseBlocker.promise, 'blocker done') });
    jobs.register('K', {
      start: async () => (log.push('job body runs'), 1),
      validate: async () => {
        validating.resolve();
        await validated.promise;
      },
    });
    await jobs.start();
    const blocker = await jobs.submit({ jobName: 'Blocker' });
    const submitting = jobs.submit({ jobName: 'K' });
    submitting.catch(() => undefined);
    await validating.promise;
    const stopping = jobs.stop().then(() => log.push('stop() resolved')); // drains the blocker meanwhile
    validated.resolve();
    await expect(submitting).rejects.toMatchObject({ code: 'MANAGER_NOT_RUNNING' });
    expect(store.inspect().map((job) => job.uuid)).toEqual([blocker.uuid]);
    releaseBlocker.resolve();
    await stopping;
    expect(store.inspect()).toHaveLength(1);
    expect(store.inspect()[0]).toMatchObject({ uuid: blocker.uuid, state: 'Succeeded' });

    // The same race as the script: a slow create, submit() and stop() in the same tick.
    await jobs.start();
    store.injectFault('createJob', { latencyMs: 30, latencyOnly: true });
    const racing = jobs.submit({ jobName: 'K', jobData: {} });
    racing.catch(() => undefined);
    const stopped = jobs.stop();
    await expect(racing).rejects.toMatchObject({ code: 'MANAGER_NOT_RUNNING' });
    await stopped;
    expect(store.inspect()).toHaveLength(1);

    // Another node on the store finds nothing to run.
    const { jobs: other } = makeManager({ store, nodeId: 'B' });
    other.register('K', { start: async () => (log.push('B starts'), 2), resume: async () => (log.push('B resumes'), 2) });
    other.register('Blocker', { start: async () => (log.push('B starts'), 2), resume: async () => (log.push('B resumes'), 2) });
    await other.start();
    await sleep(100);
    expect(store.inspect()).toHaveLength(1);
    expect(log).toEqual(['stop() resolved']);
  });

  it('J9 a submit past its checks when stop() begins is waited for, and its job is drained before stop() resolves', async () => {
    const store = new MemoryJobStore();
    const log: string[] = [];
    const release = deferred();
    const { jobs } = makeManager({ store, nodeId: 'n1' });
    jobs.register('K', {
      start: async () => {
        log.push(`job body runs (manager running: ${jobs.running})`);
        await release.promise;
        log.push('job body done');
        return 1;
      },
    });
    await jobs.start();
    const creating = deferred();
    const commit = deferred();
    const create = store.createJob.bind(store);
    store.createJob = async (job: StoredJob) => {
      creating.resolve();
      await commit.promise;
      return create(job);
    };
    const submitting = jobs.submit({ jobName: 'K' });
    await creating.promise; // the record is being written: the submit has passed its checks
    const stopping = jobs.stop().then(() => log.push('stop() resolved'));
    await sleep(50);
    expect(log).toEqual([]); // stop() waits for the submit
    commit.resolve();
    const job = await submitting;
    expect(job.state).toBe('Running');
    await sleep(50);
    expect(log).toEqual(['job body runs (manager running: false)']); // and drains its job
    release.resolve();
    await stopping;
    expect(log).toEqual(['job body runs (manager running: false)', 'job body done', 'stop() resolved']);
    expect(store.inspect()).toHaveLength(1);
    expect(store.inspect()[0]).toMatchObject({ uuid: job.uuid, state: 'Succeeded', incarnation: null });
    expect(store.inspectNodes()).toEqual([]);

    // Another node has nothing to resume.
    const { jobs: other } = makeManager({ store, nodeId: 'B' });
    other.register('K', { start: async () => (log.push('B starts'), 2), resume: async () => (log.push('B resumes'), 2) });
    await other.start();
    await sleep(100);
    expect(log).toEqual(['job body runs (manager running: false)', 'job body done', 'stop() resolved']);
    expect(resultOf(await other.get(job.uuid))).toBe(1);
  });

  it('J9 a submit past its checks when stop({ mode: "suspend" }) begins ends Suspended and unowned; another node resumes it once', async () => {
    const store = new MemoryJobStore();
    const log: string[] = [];
    const { jobs } = makeManager({ store, nodeId: 'n1' });
    jobs.register('K', {
      // Ignores its signal, like code in a process that is about to exit.
      start: () => (log.push(`job body runs (manager running: ${jobs.running})`), new Promise<number>(() => {})),
    });
    await jobs.start();
    const creating = deferred();
    const commit = deferred();
    const create = store.createJob.bind(store);
    store.createJob = async (job: StoredJob) => {
      creating.resolve();
      await commit.promise;
      return create(job);
    };
    const submitting = jobs.submit({ jobName: 'K' });
    await creating.promise;
    const stopping = jobs.stop({ mode: 'suspend', timeoutMs: 50 }).then(() => log.push('stop() resolved'));
    await sleep(30);
    expect(log).toEqual([]);
    commit.resolve();
    const job = await submitting;
    await stopping;
    expect(log).toEqual(['job body runs (manager running: false)', 'stop() resolved']);
    const suspended = store.inspect()[0];
    expect(suspended).toMatchObject({ uuid: job.uuid, state: 'Suspended', incarnation: null, managementNodeUuid: null, epoch: 2 });
    expect(resultOf(suspended as LongJob)).toMatchObject({ code: 'JOB_INTERRUPTED' });
    expect(store.inspectNodes()).toEqual([]);

    const { jobs: other } = makeManager({ store, nodeId: 'B' });
    other.register('K', { start: async () => (log.push('B starts'), 2), resume: async () => (log.push('B resumes'), 2) });
    await other.start();
    const done = await other.waitFor(job.uuid);
    expect(done).toMatchObject({ state: 'Succeeded', managementNodeUuid: 'B' });
    expect(resultOf(done)).toBe(2);
    await sleep(50);
    expect(log).toEqual(['job body runs (manager running: false)', 'stop() resolved', 'B resumes']);
  });
});

describe('J9 a node fenced while it drains (q_fence_during_drain)', () => {
  it('J9 a node fenced during stop() neither re-registers nor resumes its job; the job goes to another node once the lease ends', async () => {
    const store = new MemoryJobStore();
    const log: string[] = [];
    let failHeartbeats = false;
    let registrations = 0;
    const heartbeat = store.nodes.heartbeat;
    const register = store.nodes.register;
    store.nodes.heartbeat = async (incarnation, ttl) => (failHeartbeats ? false : heartbeat(incarnation, ttl));
    store.nodes.register = async (node) => {
      registrations++;
      return register(node);
    };
    const { jobs } = makeManager({ store, nodeId: 'n1' });
    const release = deferred();
    // The job's code notices the abort but goes on for a while (it cannot write any more).
    const body = (what: string) => async (_job: LongJob, ctx: { signal: AbortSignal }) => {
      log.push(`${what} begins`);
      await untilAborted(ctx.signal).catch((reason: unknown) => log.push(`${what} aborted: ${(reason as FlowChainError).code}`));
      await release.promise;
      log.push(`${what} ends`);
      return what;
    };
    jobs.register('K', { start: body('start'), resume: body('resume') });
    const fenced = deferred();
    jobs.on('node:fenced', () => {
      log.push('fenced');
      fenced.resolve();
    });
    await jobs.start();
    expect(registrations).toBe(1);
    const incarnation = jobs.incarnation;
    const job = await jobs.submit({ jobName: 'K' });
    await until(() => log.includes('start begins'));
    const stopping = jobs.stop(); // drain
    failHeartbeats = true; // the store briefly declares the node dead during the drain
    await fenced.promise;
    failHeartbeats = false;
    const left = store.inspect()[0];
    setTimeout(() => release.resolve(), 300); // six heartbeat intervals
    await stopping;
    await release.promise;
    await sleep(100);
    expect(log).toEqual(['start begins', 'fenced', 'start aborted: OWNERSHIP_LOST', 'start ends']);
    expect(registrations).toBe(1);
    expect(store.inspectNodes().map((node) => node.incarnation)).toEqual([incarnation]);
    // Left as it was: Running, owned by the fenced incarnation, until its lease runs out.
    expect(left).toMatchObject({ uuid: job.uuid, state: 'Running', incarnation });
    expect(store.inspect()[0]).toEqual(left);

    const { jobs: other } = makeManager({ store, nodeId: 'B' });
    other.register('K', { start: async () => 'B started', resume: async () => (log.push('B resumes'), 'B resumed') });
    await other.start();
    const done = await other.waitFor(job.uuid);
    expect(done).toMatchObject({ state: 'Succeeded', managementNodeUuid: 'B' });
    expect(resultOf(done)).toBe('B resumed');
    expect(log).toEqual(['start begins', 'fenced', 'start aborted: OWNERSHIP_LOST', 'start ends', 'B resumes']);
    expect(registrations).toBe(2); // B's
  });
});

describe('J10 durable chains: cancel and suspend/resume (d2_cancel_takeover, k_indoubt, b_seterror, s_skiprest)', () => {
  /** a, then b that hangs (until its signal aborts) while `hang.on`; both log their runs and rollbacks. */
  function abKind(log: string[], hang: { on: boolean }, bRunning?: () => void) {
    return {
      chain: () =>
        new FlowChain<Record<string, unknown>>({ name: 'c', data: {} })
          .flow(loggedNext(log, 'a'))
          .flow({
            name: 'b',
            run(t) {
              log.push('run b');
              if (hang.on) {
                bRunning?.();
                return untilAborted(t.signal);
              }
              t.next();
              return undefined;
            },
            rollback(t) {
              log.push('rollback b');
              t.rollback();
            },
          }),
    };
  }

  it('J7 a cancel that lands between the claim of a Suspended durable job and its resume write: completed flows roll back, Canceled', async () => {
    // d2_cancel_takeover
    const store = new MemoryJobStore();
    const log: string[] = [];
    const hang = { on: true };
    const bRunning = deferred();
    const { jobs: a, job } = await submitOnN1(store, abKind(log, hang, () => bRunning.resolve()), bRunning.promise);
    await a.stop({ mode: 'suspend' }); // Suspended, unowned; the checkpoint says a is done
    expect(store.inspect()[0]).toMatchObject({ state: 'Suspended', incarnation: null });
    expect(await checkpointOf(store, job.uuid)).toMatchObject({ phase: 'forward', index: 1, status: [DONE, 0] });
    hang.on = false;

    const { jobs: ops } = makeManager({ store, nodeId: 'ops' });
    await ops.start();
    const { jobs: b } = makeManager({ store, nodeId: 'B' });
    b.register('K', abKind(log, hang));
    const errors: string[] = [];
    b.on('manager:error', (error) => errors.push(error.code));
    // B's resume write is slow (a slow database round trip): the cancel lands in between.
    const resumeWriting = deferred();
    const resumeWrite = deferred();
    const update = store.updateJob.bind(store);
    let held = false;
    store.updateJob = async (uuid, condition, changes) => {
      if (!held && condition.owner !== undefined && changes.state === 'Running') {
        held = true;
        resumeWriting.resolve();
        await resumeWrite.promise;
      }
      return update(uuid, condition, changes);
    };
    await b.start();
    await resumeWriting.promise;
    expect(store.inspect()[0]).toMatchObject({ state: 'Suspended', managementNodeUuid: 'B' });
    const canceling = await ops.cancel(job.uuid);
    expect(canceling.state).toBe('Canceling');
    resumeWrite.resolve();
    const done = await ops.waitFor(job.uuid);
    expect(done).toMatchObject({ state: 'Canceled', managementNodeUuid: 'B' });
    // The suspension's reason gave way to the cancel's.
    expect(resultOf(done)).toMatchObject({ code: 'JOB_CANCELED' });
    expect(store.inspect()[0]).toMatchObject({ state: 'Canceled', incarnation: null });
    await sleep(50);
    expect(log).toEqual(['run a', 'run b', 'rollback b', 'rollback a']);
    expect(await checkpointOf(store, job.uuid)).toMatchObject({ phase: 'rollback', status: [ROLLED_BACK, ROLLED_BACK] });
    expect(errors).toEqual([]);
  });

  it('J10 a durable job suspended during flow b and then canceled rolls back b (in doubt), then a, and ends Canceled', async () => {
    // k_indoubt
    const store = new MemoryJobStore();
    const log: string[] = [];
    const hang = { on: true };
    const bRunning = deferred();
    const { jobs: a, job } = await submitOnN1(store, abKind(log, hang, () => bRunning.resolve()), bRunning.promise);
    await a.stop({ mode: 'suspend' }); // (or a crash)
    const { jobs: ops } = makeManager({ store, nodeId: 'ops' });
    await ops.start();
    expect((await ops.cancel(job.uuid)).state).toBe('Canceling');

    const { jobs: restarted } = makeManager({ store, nodeId: 'n1' });
    restarted.register('K', abKind(log, hang));
    await restarted.start();
    const done = await restarted.waitFor(job.uuid);
    expect(done).toMatchObject({ state: 'Canceled', managementNodeUuid: 'n1' });
    // The suspension's reason gave way to the cancel's.
    expect(resultOf(done)).toMatchObject({ code: 'JOB_CANCELED' });
    await sleep(50);
    expect(log).toEqual(['run a', 'run b', 'rollback b', 'rollback a']);

    // The same as a plain (not durable) chain canceled during b.
    const plain: string[] = [];
    const controller = new AbortController();
    const running = abKind(plain, { on: true }, () => controller.abort(new Error('cancel')))
      .chain()
      .start({ signal: controller.signal });
    await expect(running).rejects.toMatchObject({ code: 'CHAIN_CANCELED' });
    expect(plain).toEqual(log);
  });

  it('J10 setError() survives a restart of a durable job: the resumed chain still fails with the soft error', async () => {
    // b_seterror
    const store = new MemoryJobStore();
    const log: string[] = [];
    let hang = true;
    const bRunning = deferred();
    const build = () =>
      new FlowChain<{ n: number }>({ name: 'c', data: { n: 0 } })
        .flow({
          name: 'a',
          run(t, d) {
            log.push(`run a (n=${d.n})`);
            t.setError(new Error('soft error in a'));
            d.n++;
            t.next();
          },
        })
        .flow({
          name: 'b',
          run(t, d) {
            log.push(`run b (n=${d.n})`);
            d.n++;
            if (hang) {
              bRunning.resolve();
              return new Promise<void>(() => {});
            }
            t.next();
            return undefined;
          },
        });
    const { jobs: a, job } = await submitOnN1(store, { chain: build }, bRunning.promise);
    expect(await checkpointOf(store, job.uuid)).toMatchObject({
      phase: 'forward',
      index: 1,
      setError: { index: 0, error: { message: 'soft error in a' } },
      data: { n: 1 },
    });
    hang = false;
    // What the chain does when nothing interrupts it.
    const reference = await build().start().then(
      () => undefined,
      (error: unknown) => error as FlowChainError,
    );
    expect(reference).toMatchObject({ code: 'FLOW_FAILED' });
    log.length = 0;
    // A new process reusing the nodeId (the old one is still alive).
    const { jobs: restarted } = makeManager({ store, nodeId: 'n1' });
    restarted.register('K', { chain: build });
    await restarted.start();
    const done = await restarted.waitFor(job.uuid);
    expect(done.state).toBe('Failed');
    expect(resultOf(done)).toEqual({
      code: 'FLOW_FAILED',
      message: reference?.message,
      cause: { code: 'Error', message: 'soft error in a' },
    });
    expect(log).toEqual(['run b (n=1)']);
  });

  it('J10 skipRestRollbacks() survives a suspend/resume of a durable job: the earlier rollbacks stay skipped', async () => {
    // s_skiprest
    const store = new MemoryJobStore();
    const log: string[] = [];
    let first = true;
    const stalled = deferred();
    const build = () => {
      const chain = new FlowChain<Record<string, unknown>>({ name: 'c', data: {} })
        .flow({
          name: 'a',
          run(t) {
            log.push('run a');
            t.next();
          },
          rollback(t) {
            log.push('rollback a (must be skipped)');
            t.rollback();
          },
        })
        .flow({
          name: 'b',
          run(t) {
            log.push('run b');
            t.next();
          },
          rollback(t) {
            log.push('rollback b: skipRestRollbacks()');
            t.skipRestRollbacks();
            t.rollback();
          },
        })
        .flow({
          name: 'c',
          run(t) {
            log.push('run c');
            t.fail(new Error('c failed'));
          },
        });
      // The process stalls after b's rollback checkpoint, before the job's final write.
      if (first) {
        first = false;
        chain.error(() => {
          stalled.resolve();
          return new Promise(() => {});
        });
      }
      return chain;
    };
    const { jobs: a } = makeManager({ store, nodeId: 'n1' });
    a.register('K', { chain: build });
    await a.start();
    const job = await a.submit({ jobName: 'K' });
    await stalled.promise;
    expect(await checkpointOf(store, job.uuid)).toMatchObject({ phase: 'rollback', skipRest: true });
    await a.stop({ mode: 'suspend', timeoutMs: 20 });
    expect(store.inspect()[0]).toMatchObject({ state: 'Suspended', incarnation: null });

    const { jobs: restarted } = makeManager({ store, nodeId: 'n1' });
    restarted.register('K', { chain: build });
    await restarted.start();
    const done = await restarted.waitFor(job.uuid);
    expect(done.state).toBe('Failed');
    expect(resultOf(done)).toMatchObject({ code: 'FLOW_FAILED', cause: { message: 'c failed' } });
    await sleep(50);
    expect(log).toEqual(['run a', 'run b', 'run c', 'rollback b: skipRestRollbacks()']);
  });
});

describe('R3 raw store errors and ambiguous writes (n_final_raw_error, m_ckpt_raw_error, o_create_ambiguous)', () => {
  it('R3 a raw (non-FlowChainError) store error on the completion write is retried: the job ends Succeeded', async () => {
    // n_final_raw_error
    const { jobs, store } = makeManager({ nodeId: 'n1' });
    const errors: FlowChainError[] = [];
    jobs.on('manager:error', (error) => errors.push(error));
    let runs = 0;
    jobs.register('K', {
      start: async () => {
        runs++;
        store.injectFault('updateJob', { error: new Error('connection reset') });
        return 1;
      },
    });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toBe(1);
    expect(store.inspect()[0]).toMatchObject({ state: 'Succeeded', incarnation: null });
    expect(runs).toBe(1);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'STORE_FAILURE', message: expect.stringContaining('(retrying): connection reset') });
    expect((await jobs.getProgress(job.apiId, { all: true })).map((entry) => entry.percent)).toEqual([100]);
    await jobs.stop(); // drains at once: nothing is left running
  });

  it('R3 a raw store error on a checkpoint write is retried: the chain goes on, no OWNERSHIP_LOST, Succeeded', async () => {
    // m_ckpt_raw_error
    const { jobs, store } = makeManager({ nodeId: 'n1' });
    const log: string[] = [];
    const errors: FlowChainError[] = [];
    jobs.on('manager:error', (error) => errors.push(error));
    jobs.register('K', {
      chain: () =>
        new FlowChain<Record<string, unknown>>({ name: 'c', data: {} })
          .flow({
            name: 'a',
            run(t) {
              log.push('run a');
              store.injectFault('updateJob', { error: Object.assign(new Error('connection reset'), { code: 'ECONNRESET' }) });
              t.next();
            },
            rollback(t) {
              log.push('rollback a');
              t.rollback();
            },
          })
          .flow({
            name: 'b',
            run(t) {
              log.push('run b');
              t.next();
            },
          }),
    });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    const done = await jobs.waitFor(job.uuid);
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toEqual({});
    expect(log).toEqual(['run a', 'run b']);
    expect(errors.map((error) => error.code)).toEqual(['STORE_FAILURE']);
    expect(errors[0]?.message).toMatch(/\(retrying\): connection reset/);
    expect(await checkpointOf(store, job.uuid)).toMatchObject({ phase: 'forward', index: 2, status: [DONE, DONE] });
  });

  it('R3 a create that commits and then reports failure: submit resolves with the job, which runs exactly once', async () => {
    // o_create_ambiguous
    const { jobs, store } = makeManager({ nodeId: 'n1' });
    let runs = 0;
    jobs.register('K', { start: async () => (runs++, 1) });
    await jobs.start();
    store.injectFault('createJob', { afterWrite: true });
    const uuid = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
    const job = await jobs.submit({ jobName: 'K', uuid });
    expect(job).toMatchObject({ uuid, state: 'Running', managementNodeUuid: 'n1' });
    const done = await jobs.waitFor(uuid);
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toBe(1);
    // A caller retrying with the same preset uuid is refused; the job does not run again.
    await expect(jobs.submit({ jobName: 'K', uuid })).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
    await sleep(100); // five polls: the owned-jobs check finds nothing lost
    expect(runs).toBe(1);
    expect(store.inspect().map((stored) => stored.state)).toEqual(['Succeeded']);
  });
});

describe('J10 durable chains: data, extensions and corrupt checkpoints (c_bigint, l_processor, f_corrupt_cp, i_double_clean)', () => {
  it('J10 a failing flow that leaves data JSON cannot hold: rollback still runs in reverse, Failed with the flow\'s own error', async () => {
    // c_bigint
    const { jobs, store } = makeManager({ nodeId: 'n1' });
    const log: string[] = [];
    const errors: string[] = [];
    jobs.on('manager:error', (error) => errors.push(error.code));
    jobs.register('K', {
      chain: () =>
        new FlowChain<Record<string, unknown>>({ name: 'c', data: {} })
          .flow(loggedNext(log, 'a'))
          .flow({
            name: 'b',
            run(t, d) {
              log.push('run b');
              d.big = 10n;
              t.fail(new Error('b failed'));
            },
            rollback(t) {
              log.push('rollback b');
              t.rollback();
            },
          }),
    });
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    const done = await jobs.waitFor(job.uuid);
    expect(log).toEqual(['run a', 'run b', 'rollback b', 'rollback a']);
    expect(done.state).toBe('Failed');
    expect(resultOf(done)).toEqual({
      code: 'FLOW_FAILED',
      message: 'Flow "b (2/2)" failed: b failed',
      cause: { code: 'Error', message: 'b failed' },
    });
    expect(errors).toEqual([]);
    // The checkpoint keeps the last data that was JSON.
    expect(await checkpointOf(store, job.uuid)).toMatchObject({ phase: 'rollback', status: [ROLLED_BACK, ROLLED_BACK], data: {} });
  });

  it('J10 a durable chain with processors or a marshaller is refused with INVALID_ARGUMENT before any flow runs', async () => {
    // l_processor
    const { jobs, store } = makeManager({ nodeId: 'n1' });
    const log: string[] = [];
    const flows = (chain: FlowChain<Record<string, unknown>>) =>
      chain
        .flow({
          name: 'a',
          run(t) {
            log.push('run a');
            t.next();
          },
        })
        .flow({
          name: 'b',
          run(t) {
            log.push('run b');
            t.next();
          },
        });
    jobs.register('WithProcessor', {
      chain: () =>
        flows(
          new FlowChain<Record<string, unknown>>({ name: 'c', data: {} }).processor((chain) => {
            chain.flow({
              name: 'audit',
              run(t) {
                log.push('run audit');
                t.next();
              },
            });
          }),
        ),
    });
    jobs.register('WithMarshaller', {
      chain: () =>
        flows(
          new FlowChain<Record<string, unknown>>({ name: 'c', data: {} }).marshaller((flow) => {
            log.push(`marshal ${flow.name ?? '?'}`);
            return flow;
          }),
        ),
    });
    await jobs.start();
    for (const jobName of ['WithProcessor', 'WithMarshaller']) {
      const job = await jobs.submit({ jobName });
      const done = await jobs.waitFor(job.uuid);
      expect(done.state).toBe('Failed');
      expect(resultOf(done)).toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: expect.stringContaining('has a marshaller or processors'),
        details: { option: 'chain', jobName },
      });
      expect(await store.getCheckpoint(job.uuid)).toBeUndefined();
    }
    expect(log).toEqual([]);
  });

  it('S4 a job whose checkpoint is corrupt ends Failed with CORRUPT_RECORD; a rerun then runs it from scratch', async () => {
    // f_corrupt_cp
    const store = new MemoryJobStore();
    const log: string[] = [];
    const bRunning = deferred();
    let hang = true;
    const kind = {
      chain: () =>
        new FlowChain<Record<string, unknown>>({ name: 'c', data: {} })
          .flow({
            name: 'a',
            run(t) {
              log.push(`run a ${t.idempotencyKey}`);
              t.next();
            },
          })
          .flow({
            name: 'b',
            run(t) {
              log.push(`run b ${t.idempotencyKey}`);
              if (hang) {
                bRunning.resolve();
                return untilAborted(t.signal);
              }
              t.next();
              return undefined;
            },
          }),
    };
    const { jobs: a, job } = await submitOnN1(store, kind, bRunning.promise);
    // The stored checkpoint gets damaged (a bad row, a partial write by a foreign tool…).
    const current = store.inspect()[0] as StoredJob;
    await store.updateJob(job.uuid, { version: current.version }, { checkpoint: '{"v":1,"attempt":1,"flows":["a","b"]}' });
    await a.stop({ mode: 'suspend' });
    hang = false;
    expect(log).toEqual([`run a ${job.uuid}:a:1`, `run b ${job.uuid}:b:1`]);
    log.length = 0;

    const { jobs: restarted } = makeManager({ store, nodeId: 'n1' });
    restarted.register('K', kind);
    await restarted.start();
    const failed = await restarted.waitFor(job.uuid);
    expect(failed.state).toBe('Failed');
    expect(resultOf(failed)).toMatchObject({
      code: 'CORRUPT_RECORD',
      message: expect.stringContaining('checkpoint'),
      details: { uuid: job.uuid, field: 'checkpoint' },
    });
    expect(log).toEqual([]);

    const rerun = await restarted.rerun(job.uuid);
    expect(rerun.state).toBe('Running');
    const done = await restarted.waitFor(job.uuid);
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toEqual({});
    const saved = await checkpointOf(store, job.uuid);
    expect(saved).toMatchObject({ phase: 'forward', index: 2, status: [DONE, DONE] });
    // From scratch, under a new attempt number no earlier run used.
    const attempt = saved?.attempt as number;
    expect(attempt).toBeGreaterThan(1);
    expect(log).toEqual([`run a ${job.uuid}:a:${attempt}`, `run b ${job.uuid}:b:${attempt}`]);
  });

  it('J10 cancel of a Suspended durable job whose chain changed incompatibly: Canceled, clean runs exactly once', async () => {
    // i_double_clean
    const store = new MemoryJobStore();
    let cleans = 0;
    let version = 1;
    const bRunning = deferred();
    const kind = {
      chain: () =>
        version === 1
          ? new FlowChain<Record<string, unknown>>({ name: 'c', data: {} })
              .flow({ name: 'a', run: (t) => t.next() })
              .flow({ name: 'b', run: (t) => (bRunning.resolve(), untilAborted(t.signal)) })
          : new FlowChain<Record<string, unknown>>({ name: 'c', data: {} }).flow({ name: 'a2', run: (t) => t.next() }),
      async clean() {
        cleans++;
        await sleep(50);
      },
    };
    const { jobs: a, job } = await submitOnN1(store, kind, bRunning.promise);
    await a.stop({ mode: 'suspend' });
    version = 2; // a new deploy with an incompatible flow list
    const { jobs: restarted } = makeManager({ store, nodeId: 'n1' });
    restarted.register('K', kind);
    await restarted.start();
    // The resume is refused: the job waits, Suspended, for an operator.
    await until(async () => (await restarted.get(job.uuid)).jobResult?.includes('INCOMPATIBLE_CHAIN') === true);
    const suspended = await restarted.get(job.uuid);
    expect(suspended).toMatchObject({ state: 'Suspended', managementNodeUuid: 'n1' });
    expect(resultOf(suspended)).toMatchObject({ code: 'INCOMPATIBLE_CHAIN' });
    expect(cleans).toBe(0);

    const canceling = await restarted.cancel(job.uuid);
    expect(canceling.state).toBe('Canceling');
    const done = await restarted.waitFor(job.uuid);
    expect(done.state).toBe('Canceled');
    // The cancel replaced the suspension's reason; it names why no rollback ran.
    expect(resultOf(done)).toMatchObject({ code: 'JOB_CANCELED', cause: { code: 'INCOMPATIBLE_CHAIN' } });
    await sleep(150); // several polls: the cancel is not delivered again
    expect(cleans).toBe(1);
    expect((await restarted.get(job.uuid)).state).toBe('Canceled');
  });
});

describe('J8/J9 cancel delivery and stop (j_poll_wedge, p_cancel_then_stop, h_start_during_stop)', () => {
  it('J8 a kind whose cancel never resolves does not hold up its job\'s abort, nor the delivery of another job\'s cancel', async () => {
    // j_poll_wedge
    const store = new MemoryJobStore();
    const log: string[] = [];
    const { jobs: b } = makeManager({ store, nodeId: 'B' });
    const waitForAbort = (name: string): JobKind['start'] => (_job, ctx) =>
      untilAborted(ctx.signal).catch((reason: unknown) => {
        log.push(`${name} aborted: ${(reason as FlowChainError).code}`);
        throw reason;
      });
    b.register('Hang', {
      start: waitForAbort('Hang'),
      // e.g. a remote call with no timeout
      cancel: (_job, ctx) => (log.push(`Hang cancel called (signal aborted: ${ctx.signal.aborted})`), new Promise<boolean>(() => {})),
    });
    b.register('K', {
      start: waitForAbort('K'),
      cancel: async (_job, ctx) => (log.push(`K cancel called (signal aborted: ${ctx.signal.aborted})`), false),
    });
    await b.start();
    const { jobs: c } = makeManager({ store, nodeId: 'C' });
    await c.start();
    const x = await b.submit({ jobName: 'Hang' });
    const y = await b.submit({ jobName: 'K' });

    await c.cancel(x.uuid);
    const xDone = await c.waitFor(x.uuid);
    expect(xDone.state).toBe('Canceled');
    expect(resultOf(xDone)).toMatchObject({ code: 'JOB_CANCELED' });
    await sleep(100); // five polls of B while x's cancel still hangs

    await c.cancel(y.uuid);
    const yDone = await c.waitFor(y.uuid);
    expect(yDone.state).toBe('Canceled');
    expect(resultOf(yDone)).toMatchObject({ code: 'JOB_CANCELED' });
    await sleep(50);
    // Each cancel delivered once, and each job's signal aborted before its kind's cancel was called.
    expect(log.filter((line) => line.startsWith('Hang')).sort()).toEqual([
      'Hang aborted: JOB_CANCELED',
      'Hang cancel called (signal aborted: true)',
    ]);
    expect(log.filter((line) => line.startsWith('K')).sort()).toEqual(['K aborted: JOB_CANCELED', 'K cancel called (signal aborted: true)']);
  });

  it('J9 cancel, then stop({ mode: "suspend" }) during the rollback: the job ends Canceled, clean runs once', async () => {
    // p_cancel_then_stop
    const store = new MemoryJobStore();
    const log: string[] = [];
    const bRunning = deferred();
    const rollingBack = deferred();
    const finishRollback = deferred();
    const kind = {
      chain: () =>
        new FlowChain<Record<string, unknown>>({ name: 'c', data: {} })
          .flow({
            name: 'a',
            run: (t) => t.next(),
            async rollback() {
              log.push('rollback a start');
              rollingBack.resolve();
              await finishRollback.promise;
              log.push('rollback a done');
            },
          })
          .flow({ name: 'b', run: (t) => (bRunning.resolve(), untilAborted(t.signal)) }),
      async clean() {
        log.push('clean');
      },
    };
    const { jobs: a, job } = await submitOnN1(store, kind, bRunning.promise);
    expect((await a.cancel(job.uuid)).state).toBe('Canceling');
    await rollingBack.promise;
    const stopping = a.stop({ mode: 'suspend' }).then(() => log.push('stop() resolved')); // the operator stops the node
    await sleep(50);
    expect(log).toEqual(['rollback a start']);
    finishRollback.resolve();
    await stopping;
    expect(log).toEqual(['rollback a start', 'rollback a done', 'clean', 'stop() resolved']);
    const after = store.inspect()[0];
    expect(after).toMatchObject({ state: 'Canceled', incarnation: null });
    expect(resultOf(after as LongJob)).toMatchObject({ code: 'JOB_CANCELED' });

    // Nothing is left for another node to do.
    const { jobs: other } = makeManager({ store, nodeId: 'B' });
    other.register('K', kind);
    const claims: string[] = [];
    other.on('job:claim', (claimed) => claims.push(claimed.uuid));
    await other.start();
    expect((await other.waitFor(job.uuid)).state).toBe('Canceled');
    await sleep(100);
    expect(claims).toEqual([]);
    expect(store.inspect()[0]).toEqual(after);
    expect(log).toEqual(['rollback a start', 'rollback a done', 'clean', 'stop() resolved']);
  });

  it('J9 start() called while stop() is under way: once both settle, the manager runs and accepts submits', async () => {
    // h_start_during_stop
    const { jobs, store } = makeManager({ nodeId: 'n1' });
    const release = deferred();
    jobs.register('K', { start: async () => (await release.promise, 'done') });
    await jobs.start();
    const first = jobs.incarnation;
    const job = await jobs.submit({ jobName: 'K' });
    const stopping = jobs.stop(); // drains: waits for the job
    const starting = jobs.start();
    expect(jobs.running).toBe(false);
    release.resolve();
    await starting;
    expect(jobs.running).toBe(true);
    await stopping;
    expect(jobs.running).toBe(true);
    expect(jobs.incarnation).toMatch(/^[0-9a-f]{32}$/);
    expect(jobs.incarnation).not.toBe(first);
    expect((await jobs.get(job.uuid)).state).toBe('Succeeded');
    const next = await jobs.submit({ jobName: 'K' });
    const done = await jobs.waitFor(next.uuid);
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toBe('done');
    expect(store.inspectNodes().map((node) => [node.incarnation, node.state])).toEqual([[jobs.incarnation, 'alive']]);
  });
});

describe('review 2: fencing, restarts and clean', () => {
  it('J8 an old process cut off during a rolling restart stays fenced when it can reach the store again; the new one keeps running', async () => {
    const store = new MemoryJobStore();
    const view = partitionable(store);
    const { jobs: old } = makeManager({ store: view, nodeId: 'mn-1' });
    old.register('K', { start: async () => 'x' });
    const fenced = deferred<string>();
    old.on('node:fenced', (reason) => fenced.resolve(reason));
    await old.start();
    view.cut();
    // the restarted process registers the same nodeId while the old one is cut off
    const { jobs: restarted } = makeManager({ store, nodeId: 'mn-1' });
    restarted.register('K', { start: async () => 'x' });
    await restarted.start();
    const newIncarnation = restarted.incarnation;
    await fenced.promise;
    view.heal();
    await sleep(400);
    const alive = (await store.nodes.list()).filter((n) => n.state === 'alive').map((n) => n.incarnation);
    // Expected: the restarted process is still the live incarnation of mn-1, the old one stays down.
    expect(alive).toEqual([newIncarnation]);
    expect(restarted.incarnation).toBe(newIncarnation);
    expect(old.incarnation).toBeUndefined();
  });

  it('J3/J7 clean() on a node that is not running the job runs the kind\'s cancel and clean once each, not again from its own poll', async () => {
    const store = new MemoryJobStore();
    let cleans = 0;
    let cancels = 0;
    const kind = (): JobKind => ({
      start: () => new Promise(() => {}), // ignores its signal
      cancel: async () => (cancels++, false),
      clean: async () => {
        cleans++;
        await sleep(200);
      },
    });
    const { jobs: a } = makeManager({ store, nodeId: 'mn-a' });
    const { jobs: b } = makeManager({ store, nodeId: 'mn-b' });
    a.register('K', kind());
    b.register('K', kind());
    await a.start();
    await b.start();
    const job = await a.submit({ jobName: 'K' });
    await a.cancel(job.uuid); // Canceling; a's cancel says "not clean"
    expect(cancels).toBe(1);
    const cleaned = await b.clean(job.uuid);
    expect(cleaned.state).toBe('Canceled');
    await sleep(100);
    expect({ cleans, cancels }).toEqual({ cleans: 1, cancels: 1 });
  });

  it('J8/J9 stop() while a fenced node re-registers: it claims and runs nothing after stop() resolves and leaves no alive incarnation', async () => {
    const store = new MemoryJobStore();
    const view = partitionable(store);
    const { jobs } = makeManager({ store: view, nodeId: 'mn-1' });
    const runs: string[] = [];
    jobs.register('K', { start: async (job) => (runs.push(job.uuid), 'ran') });
    const fenced = deferred<string>();
    jobs.on('node:fenced', (reason) => fenced.resolve(reason));
    await jobs.start();
    view.cut();
    await fenced.promise;
    const orphan = makeStoredJob({ jobName: 'K', state: 'Waiting', managementNodeUuid: null, incarnation: null });
    await store.createJob(orphan);
    store.injectFault('register', { latencyOnly: true, latencyMs: 200 });
    view.heal();
    await sleep(80); // the heartbeat is now re-registering (slow)
    await jobs.stop();
    const stoppedAt = runs.length;
    await sleep(400);
    expect(runs.length).toBe(stoppedAt);
    expect(store.inspect().find((j) => j.uuid === orphan.uuid)).toMatchObject({ state: 'Waiting', incarnation: null });
    expect((await store.nodes.list()).filter((n) => n.state === 'alive')).toEqual([]);
    expect(jobs.incarnation).toBeUndefined();
  });

  /** A node whose job succeeds while the node is cut off from `store`; returned once it fenced itself. */
  async function succeedWhileCutOff(store: MemoryJobStore, nodeId: string, result: string) {
    const view = partitionable(store);
    const { jobs } = makeManager({ store: view, nodeId });
    const finish = deferred<string>();
    jobs.register('K', { start: () => finish.promise, resume: async () => `resumed by ${nodeId}` });
    const fenced = deferred<string>();
    jobs.on('node:fenced', (reason) => fenced.resolve(reason));
    await jobs.start();
    const job = await jobs.submit({ jobName: 'K' });
    view.cut();
    finish.resolve(result);
    await fenced.promise;
    return { jobs, view, job };
  }

  it('J5/J8 a job that succeeded while its node was cut off from the store keeps its result when the node comes back', async () => {
    const store = new MemoryJobStore();
    const { jobs, view, job } = await succeedWhileCutOff(store, 'mn-1', 'the result');
    view.heal();
    const done = await jobs.waitFor(job.uuid, { timeoutMs: 3000 });
    expect(done.state).toBe('Succeeded');
    expect(resultOf(done)).toBe('the result');
    expect((await store.listProgress(job.apiId)).map((entry) => entry.percent)).toEqual([100]);
  });

  it('J5/J8 a result kept while cut off is dropped when another node owned the job meanwhile: that node\'s run decides', async () => {
    const store = new MemoryJobStore();
    const { view, job } = await succeedWhileCutOff(store, 'mn-a', 'a, while cut off');
    const { jobs: b } = makeManager({ store, nodeId: 'mn-b' });
    const release = deferred<string>();
    b.register('K', { start: async () => 'never', resume: () => release.promise });
    await b.start();
    await until(() => store.inspect()[0]?.managementNodeUuid === 'mn-b');
    view.heal();
    release.resolve('resumed by b');
    const done = await b.waitFor(job.uuid, { timeoutMs: 3000 });
    expect(done).toMatchObject({ state: 'Succeeded', managementNodeUuid: 'mn-b' });
    expect(resultOf(done)).toBe('resumed by b');
  });
});
