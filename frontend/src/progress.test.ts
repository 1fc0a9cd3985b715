import { describe, expect, it } from 'vitest';
import type { StepStatus, VpsSessionStatus } from './gql/graphql';
import { initialProgress, isTerminal, orderedSteps, reduceProgress, type Progress, type ProgressEvent, type Step } from './progress';

const KEYS = ['reserve_capacity', 'create_vm', 'boot', 'configure_network', 'install_agent', 'health_check', 'ready'] as const;
type Key = (typeof KEYS)[number];

function step(key: Key, status: StepStatus = 'PENDING', message: string | null = null): Step {
  return { key, title: key.replace(/_/g, ' '), position: KEYS.indexOf(key), status, message, updatedAt: null };
}

function session(status: VpsSessionStatus, extra: Partial<ProgressEvent['session']> = {}): ProgressEvent['session'] {
  return { id: 's1', status, hours: 2, endsAt: null, failureReason: null, product: { name: 'Small' }, connection: null, ...extra };
}

function snapshot(seq: number, status: VpsSessionStatus, steps: Step[]): ProgressEvent {
  return { seq, snapshot: true, session: session(status), changedSteps: steps };
}

function event(seq: number, status: VpsSessionStatus, ...changedSteps: Step[]): ProgressEvent {
  return { seq, snapshot: false, session: session(status), changedSteps };
}

const reduce = (events: ProgressEvent[], from: Progress = initialProgress) => events.reduce(reduceProgress, from);

const statuses = (p: Progress) => Object.fromEntries(orderedSteps(p).map((s) => [s.key, s.status]));

/** The session's log as the server stores it: seq 1..9, one change each. */
const LOG: ProgressEvent[] = [
  event(1, 'PROVISIONING', step('reserve_capacity', 'RUNNING')),
  event(2, 'PROVISIONING', step('reserve_capacity', 'DONE'), step('create_vm', 'RUNNING')),
  event(3, 'PROVISIONING', step('create_vm', 'DONE'), step('boot', 'RUNNING')),
  event(4, 'PROVISIONING', step('boot', 'DONE'), step('configure_network', 'RUNNING')),
  event(5, 'PROVISIONING', step('configure_network', 'DONE'), step('install_agent', 'RUNNING')),
  event(6, 'PROVISIONING', step('install_agent', 'DONE'), step('health_check', 'RUNNING')),
  event(7, 'PROVISIONING', step('health_check', 'DONE'), step('ready', 'RUNNING')),
  event(8, 'RUNNING', step('ready', 'DONE')),
  event(9, 'STOPPED'),
];

/** What a subscription without `afterSeq` starts with at `seq`: the whole checklist. */
function snapshotAt(seq: number): ProgressEvent {
  const state = reduce(LOG.filter((e) => e.seq <= seq), {
    seq: 0,
    session: null,
    steps: Object.fromEntries(KEYS.map((k) => [k, step(k)])),
  });
  return snapshot(seq, state.session?.status ?? 'QUEUED', Object.values(state.steps));
}

describe('reduceProgress', () => {
  it('starts empty, before any event', () => {
    expect(initialProgress).toEqual({ seq: -1, session: null, steps: {} });
    expect(orderedSteps(initialProgress)).toEqual([]);
  });

  it('a snapshot sets the seq, the session and the whole checklist', () => {
    const steps = [step('boot', 'RUNNING'), step('reserve_capacity', 'DONE'), step('create_vm', 'DONE')];
    const state = reduceProgress(initialProgress, snapshot(3, 'PROVISIONING', steps));
    expect(state.seq).toBe(3);
    expect(state.session?.status).toBe('PROVISIONING');
    // Keyed by step, shown in checklist order whatever order the snapshot listed them in.
    expect(orderedSteps(state).map((s) => s.key)).toEqual(['reserve_capacity', 'create_vm', 'boot']);
    expect(state.steps.boot.status).toBe('RUNNING');
  });

  it('a snapshot replaces what was there: steps it does not list are gone', () => {
    const before = reduce([snapshot(1, 'PROVISIONING', [step('reserve_capacity', 'RUNNING'), step('create_vm')])]);
    const after = reduceProgress(before, snapshot(4, 'PROVISIONING', [step('reserve_capacity', 'DONE')]));
    expect(Object.keys(after.steps)).toEqual(['reserve_capacity']);
    expect(after.seq).toBe(4);
  });

  it('events apply in seq order on top of the snapshot, changing only their steps', () => {
    const state = reduce([snapshotAt(2), LOG[2], LOG[3]]);
    expect(state.seq).toBe(4);
    expect(statuses(state)).toEqual({
      reserve_capacity: 'DONE',
      create_vm: 'DONE',
      boot: 'DONE',
      configure_network: 'RUNNING',
      install_agent: 'PENDING',
      health_check: 'PENDING',
      ready: 'PENDING',
    });
  });

  it('takes the session from each event', () => {
    const running = event(8, 'RUNNING', step('ready', 'DONE'));
    running.session = session('RUNNING', {
      endsAt: '2026-01-02T17:00:00Z',
      connection: { host: 'h', port: 22, username: 'u', password: 'p', usesSshKey: false },
    });
    const state = reduce([snapshotAt(7), running]);
    expect(state.session?.status).toBe('RUNNING');
    expect(state.session?.connection?.host).toBe('h');
    expect(state.session?.endsAt).toBe('2026-01-02T17:00:00Z');
  });

  it('does not change the state it was given', () => {
    const before = reduce([snapshotAt(2)]);
    const copy = structuredClone(before);
    reduceProgress(before, LOG[2]);
    expect(before).toEqual(copy);
  });

  it('a duplicate (same seq) changes nothing and returns the same state', () => {
    const state = reduce([snapshotAt(2), LOG[2]]);
    const resent = event(3, 'FAILED', step('create_vm', 'FAILED', 'should not show'));
    expect(reduceProgress(state, resent)).toBe(state);
    expect(reduceProgress(state, LOG[2])).toBe(state);
  });

  it('an older event changes nothing', () => {
    const state = reduce([snapshotAt(5)]);
    for (const old of LOG.slice(0, 5)) expect(reduceProgress(state, old)).toBe(state);
    expect(reduceProgress(state, event(0, 'PENDING', step('ready', 'FAILED')))).toBe(state);
  });

  it('an event right after the snapshot’s seq applies (none is skipped)', () => {
    const state = reduce([snapshotAt(4), LOG[4]]);
    expect(state.seq).toBe(5);
    expect(state.steps.install_agent.status).toBe('RUNNING');
  });

  it('a gap (seq > last + 1) is applied as it is: the reducer does not wait for the missing events', () => {
    // The server never sends one within a stream (it fills gaps from its table); if it did,
    // the steps that only the missing events changed would stay as they were.
    const state = reduce([snapshotAt(2), LOG[5]]); // 3, 4 and 5 are missing
    expect(state.seq).toBe(6);
    expect(state.steps.install_agent.status).toBe('DONE');
    expect(state.steps.create_vm.status).toBe('RUNNING'); // event 3 would have made it DONE
    expect(state.steps.boot.status).toBe('PENDING'); // events 3 and 4 would have made it DONE
    // And the missing events, arriving late, are now "older" and ignored.
    expect(reduceProgress(state, LOG[3])).toBe(state);
  });

  describe('after a reconnect', () => {
    const uninterrupted = reduce([snapshotAt(0), ...LOG]);

    it('resuming with afterSeq = the last seq applied continues without loss or repeats', () => {
      const first = reduce([snapshotAt(2), LOG[2], LOG[3]]); // the link drops at seq 4
      const afterSeq = first.seq;
      const resumed = LOG.filter((e) => e.seq > afterSeq); // what the server sends for afterSeq
      expect(resumed[0].seq).toBe(afterSeq + 1);
      const state = reduce(resumed, first);
      expect(state).toEqual(uninterrupted);
      expect(state.seq).toBe(9);
    });

    it('events sent again across the reconnect (an overlap) are not applied twice', () => {
      const first = reduce([snapshotAt(2), LOG[2], LOG[3], LOG[4]]);
      const states: Progress[] = [];
      let state = first;
      for (const e of LOG.filter((e) => e.seq >= 3)) {
        state = reduceProgress(state, e);
        states.push(state);
      }
      // 3, 4 and 5 were already applied: the state object stays the same for them.
      expect(states.slice(0, 3).every((s) => s === first)).toBe(true);
      expect(state).toEqual(uninterrupted);
    });

    it('resubscribing without afterSeq: the new snapshot replaces the state', () => {
      const first = reduce([snapshotAt(2), LOG[2]]);
      const state = reduce([snapshotAt(6), LOG[6], LOG[7], LOG[8]], first);
      expect(state).toEqual(uninterrupted);
    });
  });

  it('ends in a terminal status: a failure keeps the failed step and its message', () => {
    const failed = event(5, 'FAILED', step('configure_network', 'DONE'), step('install_agent', 'FAILED', 'agent did not start'));
    failed.session = session('FAILED', { failureReason: 'install_agent failed' });
    const state = reduce([snapshotAt(4), failed]);
    expect(isTerminal(state.session!.status)).toBe(true);
    expect(state.session?.failureReason).toBe('install_agent failed');
    expect(state.steps.install_agent).toMatchObject({ status: 'FAILED', message: 'agent did not start' });
    expect(orderedSteps(state).map((s) => s.status)).toEqual(['DONE', 'DONE', 'DONE', 'DONE', 'FAILED', 'PENDING', 'PENDING']);
  });

  it('a stopped session is terminal after a running one', () => {
    const state = reduce([snapshotAt(0), ...LOG]);
    expect(state.session?.status).toBe('STOPPED');
    expect(isTerminal(state.session!.status)).toBe(true);
    expect(Object.values(state.steps).every((s) => s.status === 'DONE')).toBe(true);
  });
});

describe('isTerminal', () => {
  it.each<[VpsSessionStatus, boolean]>([
    ['PENDING', false],
    ['QUEUED', false],
    ['PROVISIONING', false],
    ['RUNNING', false],
    ['STOPPING', false],
    ['STOPPED', true],
    ['FAILED', true],
    ['EXPIRED', true],
  ])('%s → %s', (status, terminal) => {
    expect(isTerminal(status)).toBe(terminal);
  });
});
