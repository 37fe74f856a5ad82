import { FlowChainError, FlowChainErrorCode } from '../errors.js';

/**
 * The states of a {@link LongJob}, as ZStack's `LongJobState`. `Succeeded`, `Failed` and
 * `Canceled` are final.
 *
 * @example
 * ```ts
 * import { LongJobState } from 'flowchain';
 * const active = (state: LongJobState) => state === LongJobState.Running || state === LongJobState.Canceling;
 * ```
 */
export const LongJobState = {
  Waiting: 'Waiting',
  Suspended: 'Suspended',
  Running: 'Running',
  Canceling: 'Canceling',
  Succeeded: 'Succeeded',
  Failed: 'Failed',
  Canceled: 'Canceled',
} as const;

/** One of the {@link LongJobState} values. */
export type LongJobState = (typeof LongJobState)[keyof typeof LongJobState];

/**
 * The events that move a job between states, as ZStack's `LongJobStateEvent`.
 *
 * @example
 * ```ts
 * import { LongJobStateEvent, nextLongJobState } from 'flowchain';
 * nextLongJobState('Running', LongJobStateEvent.canceling); // 'Canceling'
 * ```
 */
export const LongJobStateEvent = {
  start: 'start',
  succeed: 'succeed',
  fail: 'fail',
  resume: 'resume',
  suspend: 'suspend',
  canceling: 'canceling',
  canceled: 'canceled',
} as const;

/** One of the {@link LongJobStateEvent} values. */
export type LongJobStateEvent = (typeof LongJobStateEvent)[keyof typeof LongJobStateEvent];

/** Every state, in declaration order. */
export const LONG_JOB_STATES: readonly LongJobState[] = Object.values(LongJobState);

/** Every event, in declaration order. */
export const LONG_JOB_STATE_EVENTS: readonly LongJobStateEvent[] = Object.values(LongJobStateEvent);

/** The final states: a job in one of them absorbs every event and never changes again. */
export const FINAL_LONG_JOB_STATES: readonly LongJobState[] = ['Succeeded', 'Failed', 'Canceled'];

/**
 * ZStack's transition table (`LongJobState.java`), as data: state → event → next state.
 * A missing cell is an undefined transition; final states have no cells and absorb events.
 * Canceling + succeed → Succeeded (a job that completes anyway after a cancel request
 * reports success) and Waiting + canceling → Canceled (nothing ran, nothing to undo).
 *
 * @example
 * ```ts
 * import { LONG_JOB_TRANSITIONS } from 'flowchain';
 * console.log(LONG_JOB_TRANSITIONS.Canceling.succeed); // 'Succeeded'
 * ```
 */
export const LONG_JOB_TRANSITIONS: Readonly<
  Record<LongJobState, Readonly<Partial<Record<LongJobStateEvent, LongJobState>>>>
> = {
  Waiting: { start: 'Running', fail: 'Failed', canceling: 'Canceled', canceled: 'Canceled' },
  Suspended: { fail: 'Failed', resume: 'Running', suspend: 'Suspended', canceling: 'Canceling', canceled: 'Canceled' },
  Running: {
    succeed: 'Succeeded',
    fail: 'Failed',
    resume: 'Running',
    suspend: 'Suspended',
    canceling: 'Canceling',
    canceled: 'Canceled',
  },
  Canceling: { succeed: 'Succeeded', fail: 'Canceled', suspend: 'Canceling', canceling: 'Canceling', canceled: 'Canceled' },
  Succeeded: {},
  Failed: {},
  Canceled: {},
};

/** Whether `state` is final (Succeeded, Failed or Canceled). */
export function isFinalState(state: LongJobState): boolean {
  return state === 'Succeeded' || state === 'Failed' || state === 'Canceled';
}

/**
 * The state `event` moves a job in `state` to. A final state absorbs every event (returns
 * itself); an undefined transition throws `INVALID_TRANSITION`.
 *
 * @example
 * ```ts
 * import { nextLongJobState } from 'flowchain';
 * nextLongJobState('Waiting', 'canceling'); // 'Canceled'
 * nextLongJobState('Failed', 'start');      // 'Failed'
 * ```
 */
export function nextLongJobState(state: LongJobState, event: LongJobStateEvent, jobUuid?: string): LongJobState {
  if (isFinalState(state)) return state;
  const next = LONG_JOB_TRANSITIONS[state]?.[event];
  if (next === undefined) {
    throw new FlowChainError(
      FlowChainErrorCode.INVALID_TRANSITION,
      `A job in state ${state} cannot take event "${event}"${jobUuid ? ` (job ${jobUuid})` : ''}. Allowed from ${state}: ${
        Object.keys(LONG_JOB_TRANSITIONS[state] ?? {}).join(', ') || 'none'
      }.`,
      { details: { state, event, ...(jobUuid ? { uuid: jobUuid } : {}) } },
    );
  }
  return next;
}
