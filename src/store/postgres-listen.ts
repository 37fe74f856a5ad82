import type { ListenClient, PgNotificationLike } from './postgres-driver.js';
import { quoteIdent } from './postgres-sql.js';

/*
 * The LISTEN side of PostgresJobStore's change notifications (reliability.md §2.5): one
 * dedicated connection, open only while someone is subscribed, re-established with backoff
 * when it drops, and kept alive with a query so that a half-open socket is noticed.
 * Notifications are hints: the ones sent while it is reconnecting are lost, and the
 * manager's polling covers them.
 */

export type { ListenClient };

/** A connection the listener holds exclusively. @internal */
export interface ListenConnection {
  client: ListenClient;
  /** Closes the connection (never throws, never hangs). */
  close(): Promise<void>;
}

/** How the listener connects and reports. @internal */
export interface ChangeListenerOptions {
  channel: string;
  connect(): Promise<ListenConnection>;
  onPayload(payload: string): void;
  onError(error: unknown, context: string): void;
  /** Interval of the keep-alive query, which must also answer within it. */
  keepAliveMs: number;
}

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 5_000;

/** One LISTEN connection, open while {@link ChangeListener.start} is in effect. @internal */
export class ChangeListener {
  private running = false;
  /** Bumped by every start and stop: work of an older generation discards itself. */
  private generation = 0;
  private current: { connection: ListenConnection; detach: () => void } | undefined;
  private readonly attempts = new Set<Promise<void>>();
  private firstAttempt: Promise<void> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private keepAliveTimer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;

  constructor(private readonly options: ChangeListenerOptions) {}

  /** Starts listening (idempotent). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.generation++;
    this.failures = 0;
    this.firstAttempt = this.attempt(this.generation);
  }

  /**
   * Resolves once the first connection attempt since {@link start} has settled, either way:
   * a write issued after that is seen by a connected listener.
   */
  ready(): Promise<void> | undefined {
    return this.firstAttempt;
  }

  /** Stops listening and closes the connection, including one still being opened. */
  async stop(): Promise<void> {
    this.running = false;
    this.generation++;
    this.firstAttempt = undefined;
    this.clearTimers();
    const current = this.current;
    this.current = undefined;
    if (current !== undefined) {
      current.detach();
      await current.connection.close();
    }
    await Promise.all([...this.attempts]);
  }

  private attempt(generation: number): Promise<void> {
    const attempt = this.connect(generation).finally(() => this.attempts.delete(attempt));
    this.attempts.add(attempt);
    return attempt;
  }

  private async connect(generation: number): Promise<void> {
    let connection: ListenConnection;
    try {
      connection = await this.options.connect();
    } catch (error) {
      this.retry(generation, error, 'connecting the change listener');
      return;
    }
    if (generation !== this.generation) {
      await connection.close();
      return;
    }
    const onNotification = (message: PgNotificationLike): void => {
      if (message.channel === this.options.channel && typeof message.payload === 'string') {
        this.options.onPayload(message.payload);
      }
    };
    const onError = (error: Error): void => this.lost(connection, error);
    const onEnd = (): void => this.lost(connection, new Error('the LISTEN connection ended'));
    const { client } = connection;
    const detach = (): void => {
      client.removeListener('notification', onNotification);
      client.removeListener('error', onError);
      client.removeListener('end', onEnd);
      // A late error from a connection we let go of must not become an unhandled 'error'.
      client.on('error', ignore);
    };
    client.on('notification', onNotification);
    client.on('error', onError);
    client.on('end', onEnd);
    try {
      await client.query(`LISTEN ${quoteIdent(this.options.channel)}`);
    } catch (error) {
      detach();
      await connection.close();
      this.retry(generation, error, 'starting LISTEN');
      return;
    }
    if (generation !== this.generation) {
      detach();
      await connection.close();
      return;
    }
    this.current = { connection, detach };
    this.failures = 0;
    this.scheduleKeepAlive(connection);
  }

  /** The connection dropped (terminated, network, failed keep-alive): reconnect. */
  private lost(connection: ListenConnection, error: unknown): void {
    const current = this.current;
    if (current === undefined || current.connection !== connection) return;
    this.current = undefined;
    current.detach();
    if (this.keepAliveTimer !== undefined) clearTimeout(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
    void connection.close();
    this.retry(this.generation, error, 'the change listener lost its connection');
  }

  private retry(generation: number, error: unknown, context: string): void {
    if (generation !== this.generation || !this.running) return;
    this.options.onError(error, context);
    const delay = Math.min(FIRST_RETRY_MS * 2 ** this.failures, MAX_RETRY_MS);
    this.failures++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (generation === this.generation && this.running) void this.attempt(generation);
    }, delay);
    this.retryTimer.unref?.();
  }

  private scheduleKeepAlive(connection: ListenConnection): void {
    const ms = this.options.keepAliveMs;
    this.keepAliveTimer = setTimeout(() => {
      this.keepAliveTimer = undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the LISTEN connection did not answer a keep-alive within ${ms} ms`)), ms);
        timer.unref?.();
      });
      Promise.race([connection.client.query('SELECT 1'), timeout]).then(
        () => {
          clearTimeout(timer);
          if (this.current?.connection === connection) this.scheduleKeepAlive(connection);
        },
        (error: unknown) => {
          clearTimeout(timer);
          this.lost(connection, error);
        },
      );
    }, ms);
    this.keepAliveTimer.unref?.();
  }

  private clearTimers(): void {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (this.keepAliveTimer !== undefined) clearTimeout(this.keepAliveTimer);
    this.retryTimer = this.keepAliveTimer = undefined;
  }
}

function ignore(): void {
  // Intentionally empty: see detach().
}
