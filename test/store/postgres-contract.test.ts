import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresJobStore } from '../../src/postgres.js';
import { describeJobStoreContract } from '../../src/testing.js';
import { PG_URL, TEST_PREFIX, adminPool, connectionsOf, describePg, dropSchema, testName } from '../helpers/pg.js';

// S3: the conformance suite on a real PostgreSQL, each test in a schema of its own that is
// dropped after it, with a check that the store left no connection open.
describePg('PostgresJobStore', () => {
  let admin: pg.Pool;
  beforeAll(() => {
    admin = adminPool();
  });
  afterAll(async () => {
    expect(await connectionsOf(admin, TEST_PREFIX)).toBe(0);
    await admin.end();
  });

  describeJobStoreContract(
    'PostgresJobStore',
    () => {
      const name = testName();
      return new PostgresJobStore({ connectionString: PG_URL, schema: name, applicationName: name, poolSize: 4 });
    },
    {
      runner: { describe, it },
      destroy: async (store) => {
        await store.close();
        await dropSchema(admin, store.schema);
        expect(await connectionsOf(admin, store.schema), 'connections left open by the store').toBe(0);
      },
      corrupt: async (store, uuid, field, rawValue) => {
        const column = field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
        if (!/^[a-z_]+$/.test(column)) throw new Error(`unexpected field ${field}`);
        const table = `"${store.schema}".jobs`;
        // The schema refuses a NULL name; a foreign writer may not have had that schema.
        if (rawValue === null) await admin.query(`ALTER TABLE ${table} ALTER COLUMN ${column} DROP NOT NULL`);
        const result = await admin.query(`UPDATE ${table} SET ${column} = $1 WHERE uuid = $2`, [rawValue, uuid]);
        expect(result.rowCount).toBe(1);
      },
    },
  );
});
