import { createRequire } from 'node:module';
import { FlowChainError, FlowChainErrorCode, describeThrown } from '../errors.js';
import type { SqliteDatabaseLike } from './sqlite.js';

/** better-sqlite3's default export, as far as the store uses it. @internal */
export type SqliteDatabaseConstructor = new (filename: string, options: { timeout: number }) => SqliteDatabaseLike;

/**
 * Loads better-sqlite3 on first use, never at import time, from either build. The CommonJS
 * build requires it next to its own file (synchronous, and it keeps CommonJS-only test
 * runners such as Jest working, where `import()` needs an experimental flag); the ESM
 * build uses `import()`, where Node hands the CommonJS package over as the `default`
 * export.
 * @internal
 */
export async function loadBetterSqlite3(): Promise<SqliteDatabaseConstructor> {
  let loaded: unknown;
  try {
    // `__filename` exists only in CommonJS (bundlers rewrite a bare `require`, not this).
    loaded =
      typeof __filename === 'string' ? createRequire(__filename)('better-sqlite3') : await import('better-sqlite3');
  } catch (error) {
    throw new FlowChainError(
      FlowChainErrorCode.STORE_FAILURE,
      `SqliteJobStore could not load better-sqlite3 (${describeThrown(error)}). Install it next to flowchain (npm install better-sqlite3@12), or pass your own connection as { database }.`,
      { cause: error, details: { module: 'better-sqlite3' } },
    );
  }
  const candidate = typeof loaded === 'function' ? loaded : (loaded as { default?: unknown } | null)?.default;
  if (typeof candidate !== 'function') {
    throw new FlowChainError(
      FlowChainErrorCode.STORE_FAILURE,
      'SqliteJobStore loaded better-sqlite3, but it exports no Database constructor. Install better-sqlite3@12.',
      { details: { module: 'better-sqlite3' } },
    );
  }
  return candidate as SqliteDatabaseConstructor;
}
