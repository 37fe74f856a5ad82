import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { newUuid } from '../../src/index.js';
import { PG_URL, describePg } from '../helpers/pg.js';
import { spawnTs } from '../helpers/processes.js';
import { freshSpec } from '../helpers/stores.js';

/*
 * R1 / J10 kill matrix: a child process runs a durable job and is SIGKILLed at a named
 * fault point; a new process (same nodeId, a new incarnation) resumes it. For every point
 * the job ends in the right state, forward flows ran in order and rollbacks in exact
 * reverse, and no flow ran twice except the one in doubt, with the same idempotency key.
 */
interface Case {
  point: string;
  failAt?: string;
  final: 'Succeeded' | 'Failed';
  /** The execution log, `K` standing for the job uuid in idempotency keys. */
  log: string[];
}

const run = (name: string) => `run:${name}:K:${name}:1`;
const CASES: Case[] = [
  { point: 'flow:before:b', final: 'Succeeded', log: [run('a'), 'kill:flow:before:b', run('b'), run('c'), run('d')] },
  { point: 'flow:after:b', final: 'Succeeded', log: [run('a'), run('b'), 'kill:flow:after:b', run('b'), run('c'), run('d')] },
  { point: 'checkpoint:after:b', final: 'Succeeded', log: [run('a'), run('b'), 'kill:checkpoint:after:b', run('c'), run('d')] },
  { point: 'job:before-final', final: 'Succeeded', log: [run('a'), run('b'), run('c'), run('d'), 'kill:job:before-final'] },
  {
    point: 'checkpoint:after:c',
    failAt: 'c',
    final: 'Failed',
    log: [run('a'), run('b'), run('c'), 'kill:checkpoint:after:c', 'rollback:c', 'rollback:b', 'rollback:a'],
  },
  {
    point: 'rollback:before:b',
    failAt: 'c',
    final: 'Failed',
    log: [run('a'), run('b'), run('c'), 'rollback:c', 'kill:rollback:before:b', 'rollback:b', 'rollback:a'],
  },
  {
    point: 'rollback:after:b',
    failAt: 'c',
    final: 'Failed',
    log: [run('a'), run('b'), run('c'), 'rollback:c', 'rollback:b', 'kill:rollback:after:b', 'rollback:b', 'rollback:a'],
  },
];

function matrix(kind: 'sqlite' | 'postgres'): void {
  for (const testCase of CASES) {
    it(`R1 killed at ${testCase.point}${testCase.failAt ? ` (flow ${testCase.failAt} fails)` : ''}: resumed, ends ${testCase.final}`, async () => {
      const { spec, dispose } = freshSpec(kind, PG_URL);
      const dir = mkdtempSync(join(tmpdir(), 'flowchain-log-'));
      const logFile = join(dir, 'execution.log');
      try {
        const jobUuid = newUuid();
        const base = { store: spec, jobUuid, logFile, ...(testCase.failAt ? { failAt: testCase.failAt } : {}) };
        const first = spawnTs('../durable/worker.ts', { ...base, mode: 'submit', faultPoint: testCase.point });
        const crashed = await first.exited;
        expect(crashed.signal, crashed.stderr).toBe('SIGKILL');
        const second = spawnTs('../durable/worker.ts', { ...base, mode: 'resume' });
        const line = await second.waitForLine(/^\{"state"/);
        const finished = await second.exited;
        expect(finished.code, finished.stderr).toBe(0);
        const outcome = JSON.parse(line) as { state: string; jobResult: string };
        expect(outcome.state).toBe(testCase.final);
        if (testCase.final === 'Succeeded') expect(JSON.parse(outcome.jobResult)).toEqual({ steps: ['a', 'b', 'c', 'd'] });
        else expect(JSON.parse(outcome.jobResult)).toMatchObject({ code: 'FLOW_FAILED', cause: { message: 'c broke' } });
        const log = readFileSync(logFile, 'utf8').trim().split('\n').map((l) => l.replaceAll(jobUuid, 'K'));
        expect(log).toEqual(testCase.log);
      } finally {
        rmSync(dir, { recursive: true, force: true });
        await dispose();
      }
    }, 60_000);
  }
}

function poison(kind: 'sqlite' | 'postgres'): void {
  it('R1 a poison job that kills its process at every resume fails after maxTakeovers takeovers', async () => {
    const { spec, dispose } = freshSpec(kind, PG_URL);
    const dir = mkdtempSync(join(tmpdir(), 'flowchain-log-'));
    const logFile = join(dir, 'execution.log');
    try {
      const jobUuid = newUuid();
      const base = { store: spec, jobUuid, logFile, faultPoint: 'flow:after:b', maxTakeovers: 2 };
      let mode: 'submit' | 'resume' = 'submit';
      let kills = 0;
      let line: string | undefined;
      for (let attempt = 0; attempt < 6 && line === undefined; attempt++) {
        const child = spawnTs('../durable/worker.ts', { ...base, mode });
        const exit = await child.exited;
        if (exit.signal === 'SIGKILL') kills++;
        else line = child.lines.find((l) => l.startsWith('{"state"'));
        mode = 'resume';
      }
      expect(kills).toBe(3);
      const outcome = JSON.parse(line as string) as { state: string; jobResult: string };
      expect(outcome.state).toBe('Failed');
      expect(JSON.parse(outcome.jobResult)).toMatchObject({ code: 'TAKEOVER_LIMIT_EXCEEDED', details: { takeovers: 3, maxTakeovers: 2 } });
      const log = readFileSync(logFile, 'utf8').trim().split('\n');
      expect(log.filter((l) => l.startsWith('kill:'))).toHaveLength(3);
      expect(log.filter((l) => l.startsWith('run:a:'))).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await dispose();
    }
  }, 60_000);
}

describe('R1 kill matrix on SQLite (a file shared by both processes)', () => {
  matrix('sqlite');
  poison('sqlite');
});
describePg('R1 kill matrix on PostgreSQL', () => {
  matrix('postgres');
  poison('postgres');
});
