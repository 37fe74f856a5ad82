import { describe, it } from 'vitest';
import { MemoryJobStore } from '../../src/index.js';
import { describeJobStoreContract } from '../../src/testing.js';

describeJobStoreContract('MemoryJobStore', () => new MemoryJobStore(), {
  runner: { describe, it },
  corrupt: async (store, uuid, field, value) => store.corrupt(uuid, field, value),
});
