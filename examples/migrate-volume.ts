/**
 * The volume-migration FlowChain the demo runs as a job: allocate space on the
 * destination, copy, switch the volume over, clean up the source.
 */
import { FlowChain } from 'flowchain';

/** The job's input, as ZStack's APIPrimaryStorageMigrateVolumeMsg carries it. */
export interface MigrateVolumeJobData {
  volumeUuid: string;
  srcPrimaryStorageUuid: string;
  dstPrimaryStorageUuid: string;
  type: 'NFSTONFSVOLUME';
}

/** The chain's shared data, which becomes the job's result. */
export interface MigrateVolumeData extends MigrateVolumeJobData {
  allocatedBytes?: number;
  copiedTo?: string;
  switched?: boolean;
}

const pause = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true });
  });

/** Builds the chain; `failAt` names a flow that fails, to show the rollback. */
export function migrateVolumeChain(
  jobData: MigrateVolumeJobData,
  options: { failAt?: string; log?: (line: string) => void } = {},
): FlowChain<MigrateVolumeData> {
  const log = options.log ?? (() => {});
  const failIf = (flow: string) => {
    if (options.failAt === flow) throw new Error(`${flow} failed: storage network to ${jobData.dstPrimaryStorageUuid} dropped`);
  };
  return new FlowChain<MigrateVolumeData>({ name: 'migrate-volume', data: { ...jobData } })
    .flow({
      name: 'allocate-space',
      async run(trigger, data) {
        await pause(150, trigger.signal);
        failIf('allocate-space');
        data.allocatedBytes = 20 * 2 ** 30;
      },
      async rollback(_trigger, data) {
        log(`  rollback allocate-space: released ${data.allocatedBytes} bytes on ${data.dstPrimaryStorageUuid}`);
        delete data.allocatedBytes;
      },
    })
    .flow({
      name: 'copy',
      timeoutMs: 60_000,
      async run(trigger, data) {
        await pause(400, trigger.signal);
        failIf('copy');
        data.copiedTo = data.dstPrimaryStorageUuid;
      },
      async rollback(_trigger, data) {
        log(`  rollback copy: deleted the partial copy of ${data.volumeUuid}`);
        delete data.copiedTo;
      },
    })
    .flow({
      name: 'switch',
      async run(trigger, data) {
        await pause(150, trigger.signal);
        failIf('switch');
        data.switched = true;
      },
      async rollback(_trigger, data) {
        log('  rollback switch: pointed the volume back at the source');
        data.switched = false;
      },
    })
    .flow({
      name: 'clean-up-source',
      async run(trigger) {
        await pause(150, trigger.signal);
        failIf('clean-up-source');
      },
    });
}
