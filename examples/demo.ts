/**
 * The demo: submits an APIPrimaryStorageMigrateVolumeMsg long job whose body is the
 * volume-migration FlowChain, shows its progress, and prints the final inventory. Then a
 * second run with a failure injected at `copy` shows the rollback and a Failed inventory.
 *
 *   npm run demo
 *
 * It runs on the embedded in-memory store. To keep the jobs in SQLite or PostgreSQL
 * instead, set FLOWCHAIN_STORE:
 *
 *   FLOWCHAIN_STORE=sqlite:./demo.db npm run demo
 *   FLOWCHAIN_STORE=postgres://postgres@127.0.0.1:5432/postgres npm run demo
 */
import { JobManager, MemoryJobStore, type JobStore, type LongJob } from 'flowchain';
import { PostgresJobStore } from 'flowchain/postgres';
import { SqliteJobStore } from 'flowchain/sqlite';
import { migrateVolumeChain, type MigrateVolumeJobData } from './migrate-volume.js';

const JOB = 'APIPrimaryStorageMigrateVolumeMsg';

/** The job's input, plus the flow to fail in the second run. */
type DemoJobData = MigrateVolumeJobData & { failAt?: string };

async function main(): Promise<void> {
  const store = storeFromEnvironment();
  const jobs = new JobManager({ store, nodeId: 'b44bfa17ef294a75824db6e455b183fa' });
  jobs.register<DemoJobData>(JOB, {
    start: (_job, ctx) =>
      ctx.runChain(migrateVolumeChain(ctx.jobData, { ...(ctx.jobData.failAt ? { failAt: ctx.jobData.failAt } : {}), log: console.log })),
    validate(jobData) {
      if (!/^[0-9a-f]{32}$/.test(jobData.volumeUuid)) throw new Error('volumeUuid must be a 32-hex uuid');
    },
  });
  await jobs.start();

  const jobData: MigrateVolumeJobData = {
    volumeUuid: '8b0f6b1b2a9c4e8f9d3c7a6e5b4a3c21',
    srcPrimaryStorageUuid: '2c6d8e0f1a3b4c5d6e7f8091a2b3c4d5',
    dstPrimaryStorageUuid: '9f8e7d6c5b4a39281706f5e4d3c2b1a0',
    type: 'NFSTONFSVOLUME',
  };

  console.log('1) Migrate volume 8b0f6b1b… from NFS to NFS:');
  const ok = await run(jobs, jobData);
  console.log(JSON.stringify(ok, null, 2));

  console.log('\n2) The same migration, with the copy failing:');
  const failed = await run(jobs, { ...jobData, failAt: 'copy' });
  console.log(JSON.stringify(failed, null, 2));

  await jobs.stop();
  await store.close();
}

/** The store FLOWCHAIN_STORE names: `memory` (the default), `sqlite:<file>`, or a postgres:// URL. */
function storeFromEnvironment(): JobStore {
  const spec = process.env.FLOWCHAIN_STORE ?? 'memory';
  if (spec === 'memory') return new MemoryJobStore();
  if (spec.startsWith('sqlite:')) return new SqliteJobStore({ filename: spec.slice('sqlite:'.length) });
  if (/^postgres(ql)?:\/\//.test(spec)) return new PostgresJobStore({ connectionString: spec });
  throw new Error(`FLOWCHAIN_STORE must be "memory", "sqlite:<file>" or a postgres:// URL, got ${JSON.stringify(spec)}`);
}

async function run(jobs: JobManager, jobData: DemoJobData): Promise<LongJob> {
  const job = await jobs.submit({ jobName: JOB, jobData, targetResourceUuid: jobData.volumeUuid });
  console.log(`  submitted job ${job.uuid}: ${job.state}`);
  const show = progressView(job.apiId);
  jobs.on('job:progress', show);
  const finished = await jobs.waitFor(job.uuid);
  jobs.off('job:progress', show);
  if (process.stdout.isTTY) process.stdout.write('\n');
  console.log(`  job ${finished.uuid}: ${finished.state}`);
  return finished;
}

/** A progress bar on a terminal; plain lines otherwise. */
function progressView(apiId: string): (entry: { apiId: string; percent: number }) => void {
  return (entry) => {
    if (entry.apiId !== apiId) return;
    if (process.stdout.isTTY) {
      const width = 30;
      const filled = Math.round((entry.percent / 100) * width);
      process.stdout.write(`\r  [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(entry.percent).padStart(3)}%`);
    } else {
      console.log(`  progress ${entry.percent}%`);
    }
  };
}

await main();
