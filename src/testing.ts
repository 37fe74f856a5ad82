/**
 * `flowchain/testing`: the job-store conformance suite and helpers for tests that write
 * their own store or mock job storage. Runs under your own test runner; bundles none.
 */
export { describeJobStoreContract, type ContractRunner, type JobStoreContractOptions } from './testing/contract-suite.js';
export { makeStoredJob, onFaultPoint, sampleInventory } from './testing/fixtures.js';
