import type { ChecklistStep, VpsSessionProgressSubscription, VpsSessionStatus } from './gql/graphql';

/** One event of `vpsSessionProgress` (the subscription is in pages/Vps.tsx). */
export type ProgressEvent = VpsSessionProgressSubscription['vpsSessionProgress'];
export type Step = Pick<ChecklistStep, 'key' | 'title' | 'position' | 'status' | 'message' | 'updatedAt'>;

export interface Progress {
  /** Seq of the last event applied; -1 before the first. */
  seq: number;
  session: ProgressEvent['session'] | null;
  steps: Record<string, Step>;
}

export const initialProgress: Progress = { seq: -1, session: null, steps: {} };

/** The checklist as a reducer over events keyed by `seq`: a snapshot replaces the state,
 * an event at or below the current seq is one already applied (a resent one after a
 * reconnect) and changes nothing. A later event is applied whatever its seq: the server
 * sends every event of a stream once and in order, so there is no gap to fill here. */
export function reduceProgress(state: Progress, event: ProgressEvent): Progress {
  if (event.snapshot) {
    return {
      seq: event.seq,
      session: event.session,
      steps: Object.fromEntries(event.changedSteps.map((s) => [s.key, s])),
    };
  }
  if (event.seq <= state.seq) return state;
  const steps = { ...state.steps };
  for (const s of event.changedSteps) steps[s.key] = s;
  return { seq: event.seq, session: event.session, steps };
}

/** The checklist in its order. */
export function orderedSteps(progress: Progress): Step[] {
  return Object.values(progress.steps).sort((a, b) => a.position - b.position);
}

const TERMINAL: readonly VpsSessionStatus[] = ['STOPPED', 'FAILED', 'EXPIRED'];

/** A session that has ended: nothing more happens to it (its stream ends too). */
export function isTerminal(status: VpsSessionStatus): boolean {
  return TERMINAL.includes(status);
}
