import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JobStore, StoredJob } from '../../src/index.js';
import { PG_URL, describePg } from '../helpers/pg.js';
import { spawnTs, type Child } from '../helpers/processes.js';
import { freshSpec, openStore } from '../helpers/stores.js';

/*
 * J8 / issue 4: three managers in three processes on one store. One is SIGKILLed (or
 * SIGSTOPped); within the takeover bound every one of its jobs is owned by exactly one
 * survivor and ends Succeeded; a paused owner that comes back has every write rejected.
 * Timings: heartbeat 100 ms, lease 1,000 ms, poll 50 ms. The bound asserted is generous:
 * lease + a heartbeat + a poll is 1.15 s; we allow 6 s on a loaded 2-core machine.
 */
const JOBS = 12;
const TAKEOVER_BOUND_MS = 6_000;

async function cluster(kind: 'sqlite' | 'postgres', signal: 'SIGKILL' | 'SIGSTOP'): Promise<void> {
  const { spec, dispose } = freshSpec(kind, PG_URL);
  const dir = mkdtempSync(join(tmpdir(), 'flowchain-cluster-'));
  const logFile = join(dir, 'cluster.log');
  const children: Child[] = [];
  const node = (nodeId: string, extra: object = {}): Child => {
    const child = spawnTs('../cluster/node.ts', { store: spec, nodeId, logFile, jobMs: 60_000, ...extra });
    children.push(child);
    return child;
  };
  let store: JobStore | undefined;
  try {
    const b = node('node-b');
    const c = node('node-c');
    await Promise.all([b.waitForLine(/^ready$/), c.waitForLine(/^ready$/)]);
    const a = node('node-a', { submit: JOBS });
    const uuids = JSON.parse((await a.waitForLine(/^submitted /)).slice('submitted '.length)) as string[];
    expect(uuids).toHaveLength(JOBS);
    store = openStore(spec);
    const before = await store.queryJobs({ uuid: uuids });
    expect(before.every((job) => job.managementNodeUuid === 'node-a' && job.state === 'Running')).toBe(true);

    const killedAt = Date.now();
    a.process.kill(signal);
    let finals: StoredJob[] = [];
    let takenOverAt: number | undefined;
    while (Date.now() - killedAt < 20_000) {
      const jobs = await store.queryJobs({ uuid: uuids });
      if (takenOverAt === undefined && jobs.every((job) => job.managementNodeUuid === 'node-b' || job.managementNodeUuid === 'node-c')) {
        takenOverAt = Date.now();
      }
      if (jobs.every((job) => job.state === 'Succeeded')) {
        finals = jobs;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(finals).toHaveLength(JOBS);
    expect(takenOverAt).toBeDefined();
    expect((takenOverAt as number) - killedAt).toBeLessThan(TAKEOVER_BOUND_MS);
    const log = readFileSync(logFile, 'utf8').trim().split('\n');
    for (const job of finals) {
      const owner = job.managementNodeUuid as string;
      expect(JSON.parse(job.jobResult as string)).toEqual({ resumedBy: owner });
      // Exactly one survivor resumed it, once; the dead node never finished it.
      expect(log.filter((line) => line.startsWith(`resume:${job.uuid}:`))).toEqual([`resume:${job.uuid}:${owner}`]);
      expect(log.filter((line) => line.startsWith(`finish:${job.uuid}:`))).toEqual([]);
      expect(job.epoch).toBeGreaterThanOrEqual(3);
    }
    const owners = new Set(finals.map((job) => job.managementNodeUuid));
    expect([...owners].every((owner) => owner === 'node-b' || owner === 'node-c')).toBe(true);

    if (signal === 'SIGSTOP') {
      // The paused owner wakes up after the takeover: it must fence itself, and change nothing.
      a.process.kill('SIGCONT');
      await until(() => readFileSync(logFile, 'utf8').includes('fenced:node-a'), 10_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const after = await store.queryJobs({ uuid: uuids });
      expect(after).toEqual(finals);
    }
  } finally {
    for (const child of children) if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
    await Promise.all(children.map((child) => child.exited));
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
    await dispose();
  }
}

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function suite(kind: 'sqlite' | 'postgres'): void {
  it('J8 SIGKILL one of three nodes: each of its jobs is taken over by exactly one survivor within the bound', () => cluster(kind, 'SIGKILL'), 60_000);
  it('J8 SIGSTOP the owner: survivors take over, and when it resumes it is fenced and changes nothing', () => cluster(kind, 'SIGSTOP'), 60_000);
}

describe('J8 three processes on one SQLite file', () => suite('sqlite'));
describePg('J8 three processes on one PostgreSQL database', () => suite('postgres'));

