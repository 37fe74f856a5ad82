/**
 * One process of the crash-resume example: a JobManager on a SQLite file, with a durable
 * volume-migration chain. `submit` submits the job; `resume` only starts the manager,
 * which finds the job its previous (killed) incarnation left and resumes it.
 */
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { FlowChain, JobManager, type Flow } from 'flowchain';
import { SqliteJobStore } from 'flowchain/sqlite';

const [mode, filename, uuid, logFile] = process.argv.slice(2) as [string, string, string, string];
const log = (line: string): void => {
  appendFileSync(logFile, `${line}\n`);
  console.log(`  [pid ${process.pid}] ${line}`);
};

type Data = { volumeUuid: string; done: string[] };
const step = (name: string, ms: number): Flow<Data> => ({
  name,
  async run(trigger, data) {
    // The idempotency key is the same if this flow runs again after a crash.
    log(`run ${name} (key ${trigger.idempotencyKey})`);
    await sleep(ms, undefined, { signal: trigger.signal });
    data.done.push(name);
  },
  async rollback(_trigger, data) {
    log(`rollback ${name}`);
    data.done = data.done.filter((d) => d !== name);
  },
});

const store = new SqliteJobStore({ filename });
const jobs = new JobManager({ store, nodeId: 'mn-example', heartbeatIntervalMs: 200, leaseTtlMs: 1_000 });
jobs.register<{ volumeUuid: string }, Data>('MigrateVolume', {
  chain: (_job, jobData) =>
    new FlowChain<Data>({ name: 'migrate-volume', data: { volumeUuid: jobData.volumeUuid, done: [] } })
      .flow(step('allocate-space', 100))
      .flow(step('copy', 600))
      .flow(step('switch', 100))
      .flow(step('clean-up-source', 100)),
});
jobs.on('job:claim', (job, reason) => log(`claimed job ${job.uuid} (${reason}), state ${job.state}`));

await jobs.start();
if (mode === 'submit') {
  await jobs.submit({ jobName: 'MigrateVolume', uuid, jobData: { volumeUuid: '8b0f6b1b2a9c4e8f9d3c7a6e5b4a3c21' } });
  log(`submitted job ${uuid}`);
}
const done = await jobs.waitFor(uuid);
log(`job ${done.uuid} ended ${done.state} with ${done.jobResult}`);
await jobs.stop();
await store.close();
