import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import { describe } from 'vitest';

/*
 * PostgreSQL for the store tests: the URL comes from FLOWCHAIN_PG_URL. Reachability is
 * checked once, when this module loads. An unreachable server skips the PostgreSQL suites
 * with a visible warning, except under CI=true, where it fails them: CI must never pass
 * by skipping the real engine.
 */

/** The server the PostgreSQL tests use. */
export const PG_URL = process.env.FLOWCHAIN_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** Every schema and application_name a test creates starts with this, for the leak checks. */
export const TEST_PREFIX = 'fc_test_';

const unreachable = await probe(PG_URL);

if (unreachable !== undefined && process.env.CI === 'true') {
  throw new Error(
    `PostgreSQL is not reachable at ${redact(PG_URL)} (${unreachable}) and CI=true: the PostgreSQL suites must run in CI. Start the server (scripts/ensure-postgres.sh) or set FLOWCHAIN_PG_URL.`,
  );
}

/** Whether the PostgreSQL suites run. */
export const pgAvailable = unreachable === undefined;

/**
 * `describe` for suites that need PostgreSQL: runs them when the server is reachable, and
 * otherwise skips them with a warning that names the URL and the reason.
 */
export function describePg(name: string, body: () => void): void {
  if (pgAvailable) {
    describe(name, body);
    return;
  }
  console.warn(
    `[flowchain] SKIPPING "${name}": PostgreSQL is not reachable at ${redact(PG_URL)} (${unreachable}). Start it (scripts/ensure-postgres.sh) or set FLOWCHAIN_PG_URL; under CI=true this fails instead.`,
  );
  describe.skip(name, body);
}

/** A fresh, unique schema (and application) name for one test. */
export function testName(): string {
  return `${TEST_PREFIX}${randomBytes(6).toString('hex')}`;
}

/** A pool for the tests' own raw SQL (set-up, inspection, corruption, cleanup). */
export function adminPool(): pg.Pool {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 4, application_name: 'flowchain-test-admin' });
  pool.on('error', () => {
    // An idle admin connection dropped: the pool replaces it.
  });
  return pool;
}

/** Drops a test schema and everything in it. */
export async function dropSchema(admin: pg.Pool, schema: string): Promise<void> {
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/**
 * How many server connections carry an application_name starting with `prefix`, waiting
 * (up to `timeoutMs`) for that number to drop to `expected`: a closed connection's backend
 * goes away a moment after the client side resolves.
 */
export async function connectionsOf(admin: pg.Pool, prefix: string, expected = 0, timeoutMs = 3_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await admin.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE $1 || '%' AND pid <> pg_backend_pid()`,
      [prefix],
    );
    const n = Number(rows[0]?.n);
    if (n === expected || Date.now() > deadline) return n;
    await sleep(50);
  }
}

/** Terminates every server connection whose application_name is exactly `name`; returns how many. */
export async function terminate(admin: pg.Pool, name: string): Promise<number> {
  const { rows } = await admin.query<{ ok: boolean }>(
    `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`,
    [name],
  );
  return rows.filter((row) => row.ok).length;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` until it holds, failing after `timeoutMs`. */
export async function eventually(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'a condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

async function probe(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  client.on('error', () => {
    // Reported through connect()/query() below.
  });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message || error.name : String(error);
  } finally {
    await client.end().catch(() => {});
  }
}

function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}

/**
 * A TCP proxy in front of the test server, to make the database "go away" for one store:
 * `stop()` refuses new connections and cuts open ones, `start()` brings it back on the
 * same port, `blackhole(true)` keeps sockets open but silently drops every byte (a
 * half-open connection, as a network partition leaves it).
 */
export interface PgProxy {
  /** PG_URL with the proxy's host and port. */
  readonly url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  blackhole(on: boolean): void;
  close(): Promise<void>;
}

export async function startProxy(): Promise<PgProxy> {
  const target = new URL(PG_URL);
  const targetPort = Number(target.port || 5432);
  const targetHost = target.hostname || '127.0.0.1';
  const sockets = new Set<net.Socket>();
  let dropping = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(client);
    sockets.add(upstream);
    const cleanup = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      from.on('data', (chunk) => {
        if (!dropping) to.write(chunk);
      });
      from.on('error', cleanup);
      from.on('close', cleanup);
    }
  });
  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(PG_URL);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  const stop = async (): Promise<void> => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    await closed;
  };
  return {
    url: url.toString(),
    stop,
    start: () => listen(port),
    blackhole: (on) => {
      dropping = on;
    },
    close: async () => {
      if (server.listening) await stop();
    },
  };
}
