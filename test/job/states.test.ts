import { describe, expect, it } from 'vitest';
import {
  FINAL_LONG_JOB_STATES,
  LONG_JOB_STATES,
  LONG_JOB_STATE_EVENTS,
  LONG_JOB_TRANSITIONS,
  isFinalState,
  nextLongJobState,
  type LongJobState,
  type LongJobStateEvent,
} from '../../src/index.js';

// ZStack's table (reference/zstack.md §2.2), written out independently of the source.
// Columns: start, succeed, fail, resume, suspend, canceling, canceled. 'x' = undefined.
const EXPECTED: Record<string, string[]> = {
  Waiting: ['Running', 'x', 'Failed', 'x', 'x', 'Canceled', 'Canceled'],
  Suspended: ['x', 'x', 'Failed', 'Running', 'Suspended', 'Canceling', 'Canceled'],
  Running: ['x', 'Succeeded', 'Failed', 'Running', 'Suspended', 'Canceling', 'Canceled'],
  Canceling: ['x', 'Succeeded', 'Canceled', 'x', 'Canceling', 'Canceling', 'Canceled'],
};
const EVENTS: LongJobStateEvent[] = ['start', 'succeed', 'fail', 'resume', 'suspend', 'canceling', 'canceled'];

describe('J2 the LongJob state machine', () => {
  it('J2 exports the seven states, the seven events and the final states', () => {
    expect(LONG_JOB_STATES).toEqual(['Waiting', 'Suspended', 'Running', 'Canceling', 'Succeeded', 'Failed', 'Canceled']);
    expect(LONG_JOB_STATE_EVENTS).toEqual(EVENTS);
    expect(FINAL_LONG_JOB_STATES).toEqual(['Succeeded', 'Failed', 'Canceled']);
    expect(LONG_JOB_STATES.filter(isFinalState)).toEqual(['Succeeded', 'Failed', 'Canceled']);
  });

  for (const [state, row] of Object.entries(EXPECTED)) {
    EVENTS.forEach((event, column) => {
      const expected = row[column];
      if (expected === 'x') {
        it(`J2 ${state} + ${event} is undefined: INVALID_TRANSITION`, () => {
          expect(LONG_JOB_TRANSITIONS[state as LongJobState][event]).toBeUndefined();
          expect(() => nextLongJobState(state as LongJobState, event, 'b7e65467cffe4bcd9d7ca09ec77d35e8')).toThrowError(
            expect.objectContaining({
              code: 'INVALID_TRANSITION',
              details: { state, event, uuid: 'b7e65467cffe4bcd9d7ca09ec77d35e8' },
            }),
          );
        });
      } else {
        it(`J2 ${state} + ${event} → ${expected}`, () => {
          expect(LONG_JOB_TRANSITIONS[state as LongJobState][event]).toBe(expected);
          expect(nextLongJobState(state as LongJobState, event)).toBe(expected);
        });
      }
    });
  }

  for (const state of ['Succeeded', 'Failed', 'Canceled'] as const) {
    it(`J2 final state ${state} absorbs every event`, () => {
      expect(LONG_JOB_TRANSITIONS[state]).toEqual({});
      for (const event of EVENTS) expect(nextLongJobState(state, event)).toBe(state);
    });
  }

  it('J2 keeps ZStack\'s two notable cells: Canceling + succeed → Succeeded, Waiting + canceling → Canceled', () => {
    expect(nextLongJobState('Canceling', 'succeed')).toBe('Succeeded');
    expect(nextLongJobState('Waiting', 'canceling')).toBe('Canceled');
  });

  it('J2 names the state, the event and the allowed events in the INVALID_TRANSITION message', () => {
    expect(() => nextLongJobState('Waiting', 'succeed')).toThrowError(
      'A job in state Waiting cannot take event "succeed". Allowed from Waiting: start, fail, canceling, canceled.',
    );
  });
});
