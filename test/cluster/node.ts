/**
 * One management node in its own process, for the multi-process tests: a JobManager on a
 * shared store with scaled-down timings, running `Work` jobs, logging every start, resume
 * and finish (with its node id) to a shared log file.
 */
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { JobManager } from '../../src/index.js';
import { openStore, type StoreSpec } from '../helpers/stores.js';

interface Config {
  store: StoreSpec;
  nodeId: string;
  logFile: string;
  submit?: number;
  jobMs: number;
}

const config = JSON.parse(process.argv[2] as string) as Config;
const log = (line: string): void => appendFileSync(config.logFile, `${line}\n`);
const store = openStore(config.store);
const jobs = new JobManager({ store, nodeId: config.nodeId, heartbeatIntervalMs: 100, leaseTtlMs: 1_000, pollIntervalMs: 50 });

jobs.register<unknown, { by?: string; resumedBy?: string }>('Work', {
  async start(job, ctx) {
    log(`start:${job.uuid}:${config.nodeId}`);
    await sleep(config.jobMs, undefined, { signal: ctx.signal });
    log(`finish:${job.uuid}:${config.nodeId}`);
    return { by: config.nodeId };
  },
  async resume(job, ctx) {
    log(`resume:${job.uuid}:${config.nodeId}`);
    await sleep(50, undefined, { signal: ctx.signal });
    return { resumedBy: config.nodeId };
  },
});
jobs.on('node:fenced', () => log(`fenced:${config.nodeId}`));
await jobs.start();
process.stdout.write('ready\n');
if (config.submit !== undefined) {
  const submitted = [];
  for (let i = 0; i < config.submit; i++) submitted.push((await jobs.submit({ jobName: 'Work' })).uuid);
  process.stdout.write(`submitted ${JSON.stringify(submitted)}\n`);
}
process.on('SIGTERM', () => {
  void jobs
    .stop({ mode: 'suspend', timeoutMs: 2_000 })
    .then(() => store.close())
    .then(() => process.exit(0));
});
setInterval(() => undefined, 60_000);
