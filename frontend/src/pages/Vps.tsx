import { useEffect, useMemo, useReducer, useState, type FormEvent } from 'react';
import { CombinedError, stringifyDocument, useMutation, useQuery } from 'urql';
import type { GraphQLFormattedError } from 'graphql';
import { Link, useLocation } from 'wouter';
import { ProblemAlert } from '../components';
import { describe } from '../errors';
import { graphql } from '../gql';
import { coinAmount, coinsMissing, dateTime } from '../format';
import { initialProgress, isTerminal, orderedSteps, reduceProgress, type Progress } from '../progress';
import type { VpsSessionProgressSubscription } from '../gql/graphql';
import { useLive } from '../session';

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
                Cost <strong>{coinAmount(cost)}</strong> coins ({coinAmount(p.pricePerHour)}/hour); you have {coinAmount(available)}.
                {cost > available && <span className="error"> {coinsMissing(cost, available)}</span>}
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

/**
 * The session's checklist, live: a snapshot first, then every change. The stream goes over
 * the WebSocket directly rather than through urql so that a reconnect resumes it with
 * `afterSeq` (graphql-ws sends the same subscribe payload again on every reconnect, and the
 * payload is kept at the last seq applied): the server then sends exactly what was missed,
 * and the reducer drops anything it has already seen.
 */
function useProgressStream(id: string): [Progress, CombinedError | undefined] {
  const ws = useLive();
  const [progress, apply] = useReducer(reduceProgress, initialProgress);
  const [error, setError] = useState<CombinedError>();
  useEffect(() => {
    if (!ws) return;
    const payload = {
      query: stringifyDocument(PROGRESS),
      variables: { id, afterSeq: null as number | null },
    };
    return ws.subscribe<VpsSessionProgressSubscription>(payload, {
      next: (result) => {
        if (result.errors?.length) {
          setError(new CombinedError({ graphQLErrors: [...result.errors] }));
          return;
        }
        const event = result.data?.vpsSessionProgress;
        if (!event) return;
        payload.variables.afterSeq = Math.max(payload.variables.afterSeq ?? -1, event.seq);
        setError(undefined);
        apply(event);
      },
      error: (e) => {
        const graphQLErrors = Array.isArray(e) ? (e as GraphQLFormattedError[]) : [];
        setError(
          new CombinedError(
            graphQLErrors.length ? { graphQLErrors } : { networkError: e instanceof Error ? e : new Error('the live link closed') },
          ),
        );
      },
      complete: () => {},
    });
  }, [ws, id]);
  return [progress, error];
}

export function VpsSessionPage({ id }: { id: string }) {
  const [progress, error] = useProgressStream(id);
  const [stopped, stop] = useMutation(STOP);
  const [extended, extend] = useMutation(EXTEND);
  const [more, setMore] = useState(1);
  const session = progress.session;
  const steps = orderedSteps(progress);
  const problem = describe(error ?? stopped.error ?? extended.error);
  const live = session && !isTerminal(session.status);
  // Someone else's session, or none: the server says NOT_FOUND either way.
  if (!session && problem?.code === 'NOT_FOUND') {
    return (
      <section className="narrow">
        <h1>Not found</h1>
        <p role="alert">There is no server session here, or it is not yours.</p>
        <Link href="/vps">Back to servers</Link>
      </section>
    );
  }
  return (
    <section>
      <h1>{session?.product?.name ?? 'Server'}</h1>
      <ProblemAlert problem={problem} />
      {session && (
        <p>
          Status: <strong data-testid="vps-status">{session.status.toLowerCase()}</strong>
          {session.endsAt && <> · ends {dateTime(session.endsAt)}</>}
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
