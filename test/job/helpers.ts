import { afterEach } from 'vitest';
import { FlowChainError, JobManager, MemoryJobStore, type JobManagerOptions, type JobStore, type LongJob } from '../../src/index.js';

const managers: JobManager[] = [];

afterEach(async () => {
  const all = managers.splice(0);
  await Promise.all(all.map((manager) => manager.stop({ mode: 'suspend', timeoutMs: 1_000 }).catch(() => undefined)));
});

/** A manager on a memory store with fast timings; stopped after the test. */
export function makeManager<Store extends JobStore = MemoryJobStore>(options: JobManagerOptions & { store?: Store } = {}): { jobs: JobManager; store: Store } {
  const store = options.store ?? new MemoryJobStore();
  const jobs = new JobManager({ nodeId: 'mn-1', pollIntervalMs: 20, heartbeatIntervalMs: 50, leaseTtlMs: 300, ...options, store });
  managers.push(jobs);
  return { jobs, store: store as Store };
}

/** A promise with its resolve/reject exposed. */
export function deferred<Value = void>(): {
  promise: Promise<Value>;
  resolve: (value: Value) => void;
  reject: (error: unknown) => void;
} {
  let resolve!: (value: Value) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<Value>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Waits until `condition` holds (polling every 5 ms), or fails after `timeoutMs`. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('until(): condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The error JSON stored in a failed job's jobResult. */
export function resultOf(job: LongJob): unknown {
  return job.jobResult === null ? null : JSON.parse(job.jobResult);
}

/** Records `job:state` transitions of one manager as "uuid-prefix:from>to". */
export function recordStates(jobs: JobManager): string[] {
  const seen: string[] = [];
  jobs.on('job:state', (job, previous) => seen.push(`${previous ?? 'new'}>${job.state}`));
  return seen;
}

/**
 * A view of a store that can be cut off (every call fails with STORE_FAILURE, as in a
 * network partition) and healed, while other managers keep using the store directly.
 */
export function partitionable(store: JobStore): JobStore & { cut(): void; heal(): void } {
  let cut = false;
  const guard = <Args extends unknown[], Result>(fn: (...args: Args) => Promise<Result>) =>
    async (...args: Args): Promise<Result> => {
      if (cut) throw new FlowChainError('STORE_FAILURE', 'partitioned from the store (test)');
      return fn(...args);
    };
  const nodes = store.nodes;
  const view: JobStore & { cut(): void; heal(): void } = {
    createJob: guard((job) => store.createJob(job)),
    getJob: guard((uuid) => store.getJob(uuid)),
    updateJob: guard((uuid, condition, changes) => store.updateJob(uuid, condition, changes)),
    deleteJob: guard((uuid, condition) => store.deleteJob(uuid, condition)),
    queryJobs: guard((query) => store.queryJobs(query)),
    countJobs: guard((query) => store.countJobs(query)),
    countJobsBy: guard((query, field) => store.countJobsBy(query, field)),
    claimJobs: guard((request) => store.claimJobs(request)),
    getCheckpoint: guard((uuid) => store.getCheckpoint(uuid)),
    appendProgress: guard((entry) => store.appendProgress(entry)),
    listProgress: guard((apiId) => store.listProgress(apiId)),
    close: async () => undefined,
    cut: () => {
      cut = true;
    },
    heal: () => {
      cut = false;
    },
  };
  if (nodes !== undefined) {
    Object.assign(view, {
      nodes: {
        register: guard((node: Parameters<typeof nodes.register>[0]) => nodes.register(node)),
        heartbeat: guard((incarnation: string, ttl: number) => nodes.heartbeat(incarnation, ttl)),
        leave: guard((incarnation: string) => nodes.leave(incarnation)),
        list: guard(() => nodes.list()),
        reap: guard((grace: number, retainDeadMs?: number) => nodes.reap(grace, retainDeadMs)),
      },
    });
  }
  return view;
}
