/**
 * A child process for the kill matrix: runs one durable job (flows a, b, c, d) with a
 * fault point armed to SIGKILL the process there, or resumes it after such a kill. Every
 * flow and rollback appends a line to an execution log file outside the store.
 */
import { appendFileSync } from 'node:fs';
import { FlowChain, JobManager, type Flow } from '../../src/index.js';
import { onFaultPoint } from '../../src/testing.js';
import { openStore, type StoreSpec } from '../helpers/stores.js';

interface Config {
  store: StoreSpec;
  mode: 'submit' | 'resume';
  jobUuid: string;
  logFile: string;
  faultPoint?: string;
  failAt?: string;
  maxTakeovers?: number;
}

const config = JSON.parse(process.argv[2] as string) as Config;
const log = (line: string): void => appendFileSync(config.logFile, `${line}\n`);

type Data = { steps: string[]; failAt?: string };
const flow = (name: string): Flow<Data> => ({
  name,
  async run(trigger, data) {
    log(`run:${name}:${trigger.idempotencyKey}`);
    if (data.failAt === name) throw new Error(`${name} broke`);
    data.steps.push(name);
  },
  async rollback(_trigger, data) {
    log(`rollback:${name}`);
    data.steps = data.steps.filter((step) => step !== name);
  },
});

if (config.faultPoint !== undefined) {
  onFaultPoint((point) => {
    if (point !== config.faultPoint) return;
    log(`kill:${point}`);
    process.kill(process.pid, 'SIGKILL');
  });
}

const store = openStore(config.store);
const jobs = new JobManager({
  store,
  nodeId: 'kill-matrix-node',
  heartbeatIntervalMs: 200,
  leaseTtlMs: 2_000,
  pollIntervalMs: 50,
  ...(config.maxTakeovers === undefined ? {} : { maxTakeovers: config.maxTakeovers }),
});
jobs.register<{ failAt?: string }, Data>('Durable', {
  chain: (_job, jobData) => {
    const chain = new FlowChain<Data>({ name: 'durable', data: { steps: [], ...(jobData.failAt ? { failAt: jobData.failAt } : {}) } });
    for (const name of ['a', 'b', 'c', 'd']) chain.flow(flow(name));
    return chain;
  },
});
await jobs.start();
if (config.mode === 'submit') {
  await jobs.submit({ jobName: 'Durable', uuid: config.jobUuid, jobData: config.failAt ? { failAt: config.failAt } : {} });
}
const done = await jobs.waitFor(config.jobUuid, { timeoutMs: 15_000 });
process.stdout.write(`${JSON.stringify({ state: done.state, jobResult: done.jobResult })}\n`);
await jobs.stop();
await store.close();
