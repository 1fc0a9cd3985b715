import { useMemo, useReducer, useState, type FormEvent } from 'react';
import { useMutation, useQuery, useSubscription } from 'urql';
import { Link, useLocation } from 'wouter';
import { ProblemAlert } from '../components';
import { describe } from '../errors';
import { graphql } from '../gql';
import type { ChecklistStep, VpsSessionProgressSubscription } from '../gql/graphql';

const PRODUCTS = graphql(`
  query VpsProducts {
    vpsProducts {
      id
      name
      description
      vcpu
      memoryMb
      diskGb
      region
      pricePerHour
    }
    me {
      id
      wallet {
        available
      }
      vpsSessions(first: 20) {
        edges {
          node {
            id
            status
            hours
            createdAt
            product {
              name
            }
          }
        }
      }
    }
  }
`);

const START = graphql(`
  mutation StartVps($input: StartVpsSessionInput!) {
    startVpsSession(input: $input) {
      id
    }
  }
`);

/** Products, the cost of a start against the balance, and the viewer's sessions. */
export function VpsPage() {
  const [{ data, error }] = useQuery({ query: PRODUCTS, requestPolicy: 'cache-and-network' });
  const [hours, setHours] = useState<Record<string, number>>({});
  const [result, start] = useMutation(START);
  const [, navigate] = useLocation();
  // One key per page visit and product: a double click starts (and pays for) one session.
  const keys = useMemo(() => new Map<string, string>(), []);
  const available = data?.me?.wallet.available ?? 0;
  const problem = describe(result.error ?? error);
  const submit = async (e: FormEvent, productId: string) => {
    e.preventDefault();
    if (!keys.has(productId)) keys.set(productId, crypto.randomUUID());
    const done = await start({
      input: { productId, hours: hours[productId] ?? 1, idempotencyKey: keys.get(productId) },
    });
    const id = done.data?.startVpsSession.id;
    if (id) navigate(`/vps/sessions/${id}`);
  };
  return (
    <section>
      <h1>Virtual servers</h1>
      <ProblemAlert problem={problem} />
      <div className="grid">
        {data?.vpsProducts.map((p) => {
          const h = hours[p.id] ?? 1;
          const cost = h * p.pricePerHour;
          return (
            <form key={p.id} className="card" onSubmit={(e) => void submit(e, p.id)}>
              <h2>{p.name}</h2>
              <p className="muted">
                {p.vcpu} vCPU · {p.memoryMb} MB · {p.diskGb} GB · {p.region}
              </p>
              <p>{p.description}</p>
              <label>
                Hours
                <input
                  type="number"
                  min={1}
                  max={720}
                  value={h}
                  onChange={(e) => setHours({ ...hours, [p.id]: Math.max(1, Math.min(720, Number(e.target.value) || 1)) })}
                />
              </label>
              <p>
                Cost <strong>{cost}</strong> coins ({p.pricePerHour}/hour); you have {available}.
                {cost > available && <span className="error"> {cost - available} coins missing.</span>}
              </p>
              <button type="submit" disabled={result.fetching || cost > available}>
                Start
              </button>
            </form>
          );
        })}
        {data && data.vpsProducts.length === 0 && <p className="muted">No servers are on offer.</p>}
      </div>
      <h2>Your sessions</h2>
      <ul className="list">
        {data?.me?.vpsSessions.edges.map(({ node }) => (
          <li key={node.id}>
            <Link href={`/vps/sessions/${node.id}`}>{node.product?.name ?? 'Server'}</Link> · {node.hours} h ·{' '}
            <span data-testid="session-status">{node.status.toLowerCase()}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}

const PROGRESS = graphql(`
  subscription VpsSessionProgress($id: ID!, $afterSeq: Int) {
    vpsSessionProgress(sessionId: $id, afterSeq: $afterSeq) {
      seq
      snapshot
      session {
        id
        status
        hours
        endsAt
        failureReason
        product {
          name
        }
        connection {
          host
          port
          username
          password
          usesSshKey
        }
      }
      changedSteps {
        key
        title
        position
        status
        message
        updatedAt
      }
    }
  }
`);

type Event = VpsSessionProgressSubscription['vpsSessionProgress'];
type Step = Pick<ChecklistStep, 'key' | 'title' | 'position' | 'status' | 'message' | 'updatedAt'>;

export interface Progress {
  seq: number;
  session: Event['session'] | null;
  steps: Record<string, Step>;
}

/** The checklist as a reducer over events keyed by `seq`: a snapshot replaces the state,
 * an event at or below the current seq is one already applied (a resent one after a
 * reconnect) and changes nothing. */
export function reduceProgress(state: Progress, event: Event): Progress {
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

const STOP = graphql(`
  mutation StopVps($id: ID!) {
    stopVpsSession(id: $id) {
      id
      status
    }
  }
`);

const EXTEND = graphql(`
  mutation ExtendVps($id: ID!, $hours: Int!, $key: String) {
    extendVpsSession(id: $id, hours: $hours, idempotencyKey: $key) {
      id
      hours
      endsAt
    }
  }
`);

export function VpsSessionPage({ id }: { id: string }) {
  const [progress, apply] = useReducer(reduceProgress, { seq: -1, session: null, steps: {} });
  const [{ error }] = useSubscription({ query: PROGRESS, variables: { id } }, (_prev: unknown, data) => {
    apply(data.vpsSessionProgress);
    return data;
  });
  const [stopped, stop] = useMutation(STOP);
  const [extended, extend] = useMutation(EXTEND);
  const [more, setMore] = useState(1);
  const session = progress.session;
  const steps = Object.values(progress.steps).sort((a, b) => a.position - b.position);
  const problem = describe(error ?? stopped.error ?? extended.error);
  const live = session && !['STOPPED', 'FAILED', 'EXPIRED'].includes(session.status);
  return (
    <section>
      <h1>{session?.product?.name ?? 'Server'}</h1>
      <ProblemAlert problem={problem} />
      {session && (
        <p>
          Status: <strong data-testid="vps-status">{session.status.toLowerCase()}</strong>
          {session.endsAt && <> · ends {new Date(session.endsAt).toLocaleString()}</>}
          {session.failureReason && <> · {session.failureReason}</>}
        </p>
      )}
      <ol className="checklist" aria-label="Provisioning">
        {steps.map((s) => (
          <li key={s.key} data-status={s.status.toLowerCase()} data-testid="step">
            <span className="step-title">{s.title}</span> <span className="muted">{s.status.toLowerCase()}</span>
            {s.message && <div className="muted">{s.message}</div>}
          </li>
        ))}
      </ol>
      {session?.connection && (
        <div className="card" data-testid="connection">
          <h2>Connect</h2>
          <code>
            ssh {session.connection.username}@{session.connection.host} -p {session.connection.port}
          </code>
          {session.connection.password && (
            <p>
              One-time password: <code>{session.connection.password}</code>
            </p>
          )}
          {session.connection.usesSshKey && <p>Sign in with your SSH key.</p>}
        </div>
      )}
      {live && (
        <div className="actions">
          <label>
            Hours{' '}
            <input type="number" min={1} max={720} value={more} onChange={(e) => setMore(Number(e.target.value) || 1)} />
          </label>
          <button type="button" disabled={extended.fetching} onClick={() => void extend({ id, hours: more, key: crypto.randomUUID() })}>
            Extend
          </button>
          <button type="button" disabled={stopped.fetching} onClick={() => void stop({ id })}>
            Stop
          </button>
        </div>
      )}
      <p>
        <Link href="/vps">All servers</Link>
      </p>
    </section>
  );
}
