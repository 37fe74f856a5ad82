/**
 * A volume migration (allocate space → copy → switch → clean up) run as a
 * FlowChain, once succeeding and once failing at `copy`, printing each flow's outcome.
 *
 *   npx tsx examples/chain-rollback.ts
 */
import { FlowChain, type Flow, type FlowTraceEntry } from 'flowchain';

type MigrateVolume = {
  volumeUuid: string;
  srcPrimaryStorageUuid: string;
  dstPrimaryStorageUuid: string;
  allocatedBytes?: number;
  copiedTo?: string;
  switched?: boolean;
};

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function migrateVolume(failAtCopy: boolean): FlowChain<MigrateVolume> {
  const allocate: Flow<MigrateVolume> = {
    name: 'allocate-space',
    run(trigger, data) {
      // Callback style, as in ZStack: call next() or fail() exactly once.
      setTimeout(() => {
        data.allocatedBytes = 10 * 2 ** 30;
        trigger.next();
      }, 20);
    },
    rollback(trigger, data) {
      delete data.allocatedBytes;
      trigger.rollback();
    },
  };
  const copy: Flow<MigrateVolume> = {
    name: 'copy',
    timeoutMs: 5_000,
    async run(_trigger, data) {
      // Promise style: resolve to go on, throw to fail.
      await pause(40);
      if (failAtCopy) throw new Error(`network to ${data.dstPrimaryStorageUuid} dropped mid-copy`);
      data.copiedTo = data.dstPrimaryStorageUuid;
    },
    async rollback(_trigger, data) {
      await pause(10);
      delete data.copiedTo;
    },
  };
  const switchOver: Flow<MigrateVolume> = {
    name: 'switch',
    async run(_trigger, data) {
      await pause(10);
      data.switched = true;
    },
    async rollback(_trigger, data) {
      data.switched = false;
    },
  };
  const cleanUp: Flow<MigrateVolume> = {
    name: 'clean-up-source',
    async run() {
      await pause(10);
    },
  };
  return new FlowChain<MigrateVolume>({
    name: 'migrate-volume',
    data: {
      volumeUuid: '6b2b2a2c5e7e4d8f9a0b1c2d3e4f5a6b',
      srcPrimaryStorageUuid: 'a1f4c2e0b3d94c6e8f7a6b5c4d3e2f10',
      dstPrimaryStorageUuid: 'f0e1d2c3b4a5968778695a4b3c2d1e0f',
    },
  })
    .flow(allocate)
    .flow(copy)
    .flow(switchOver)
    .flow(cleanUp);
}

function printTrace(trace: FlowTraceEntry[]): void {
  for (const entry of trace) {
    const ran = entry.durationMs === undefined ? '' : ` ran ${Math.round(entry.durationMs)} ms`;
    const undone =
      entry.rollbackDurationMs === undefined ? '' : `, rollback ${Math.round(entry.rollbackDurationMs)} ms`;
    console.log(`  ${String(entry.index + 1).padStart(2)}. ${entry.name.padEnd(16)} ${entry.outcome}${ran}${undone}`);
  }
}

async function main(): Promise<void> {
  console.log('1) migrate-volume, everything works:');
  const ok = migrateVolume(false);
  const data = await ok.start();
  printTrace(ok.trace);
  console.log(`  -> succeeded, data: ${JSON.stringify(data)}\n`);

  console.log('2) migrate-volume, the copy fails:');
  const failing = migrateVolume(true);
  const order: string[] = [];
  failing.on('rollback:done', (name) => order.push(name));
  try {
    await failing.start();
  } catch (error) {
    printTrace(failing.trace);
    console.log(`  -> failed: ${(error as Error).message}`);
    console.log(`  -> rolled back, in this order: ${order.join(' → ')}`);
    console.log(`  -> data after rollback: ${JSON.stringify(failing.data)}`);
  }
}

await main();
