import { useEffect, useMemo, useState } from 'react';
import { useMutation, useQuery } from 'urql';
import { ProblemAlert } from '../components';
import { describe } from '../errors';
import { coinAmount, coins, coinsMissing, dateTime, timeLeft } from '../format';
import { graphql } from '../gql';

const TOKENS = graphql(`
  query AccessTokens {
    accessTokenPrices {
      durationHours
      price
    }
    accessProxy {
      configured
      baseUrl
    }
    me {
      id
      wallet {
        available
      }
      accessTokens(first: 50, activeOnly: false) {
        edges {
          node {
            id
            name
            durationHours
            status
            expiresAt
            lastUsedAt
          }
        }
      }
    }
  }
`);

const BUY = graphql(`
  mutation BuyAccessToken($input: PurchaseAccessTokenInput!) {
    purchaseAccessToken(input: $input) {
      token
      accessToken {
        id
      }
    }
  }
`);

const REVOKE = graphql(`
  mutation RevokeAccessToken($id: ID!) {
    revokeAccessToken(id: $id) {
      id
      status
    }
  }
`);

/** Prices, buying (the token is shown once), the list with time left, revoking. */
export function TokensPage() {
  const [{ data, error }, refresh] = useQuery({ query: TOKENS, requestPolicy: 'cache-and-network' });
  const [bought, buy] = useMutation(BUY);
  const [revoked, revoke] = useMutation(REVOKE);
  const [hours, setHours] = useState<number | null>(null);
  const [name, setName] = useState('');
  const [shown, setShown] = useState<string | null>(null);
  const [copied, setCopied] = useState(false);
  const key = useMemo(() => crypto.randomUUID(), [shown]);
  // The token exists only on this page: warn before it is left.
  useEffect(() => {
    if (!shown) return;
    const warn = (e: BeforeUnloadEvent) => e.preventDefault();
    window.addEventListener('beforeunload', warn);
    return () => window.removeEventListener('beforeunload', warn);
  }, [shown]);
  const prices = data?.accessTokenPrices ?? [];
  const chosen = hours ?? prices[0]?.durationHours ?? 1;
  const price = prices.find((p) => p.durationHours === chosen)?.price ?? 0;
  const available = data?.me?.wallet.available ?? 0;
  const problem = describe(error ?? bought.error ?? revoked.error);
  return (
    <section>
      <h1>Access tokens</h1>
      <ProblemAlert problem={problem} />
      {shown ? (
        <div className="card" role="region" aria-label="New token">
          <p>
            <strong>Copy your token now.</strong> It is shown once and cannot be shown again.
          </p>
          <code data-testid="new-token" className="token">
            {shown}
          </code>
          <div className="actions">
            <button
              type="button"
              onClick={() => void navigator.clipboard?.writeText(shown).then(() => setCopied(true))}
            >
              {copied ? 'Copied' : 'Copy'}
            </button>
            <button type="button" onClick={() => setShown(null)}>
              I have saved it
            </button>
          </div>
        </div>
      ) : (
        <form
          className="card"
          onSubmit={(e) => {
            e.preventDefault();
            void buy({ input: { durationHours: chosen, name: name || null, idempotencyKey: key } }).then((done) => {
              const token = done.data?.purchaseAccessToken.token;
              if (token) {
                setCopied(false);
                setShown(token);
                setName('');
                refresh({ requestPolicy: 'network-only' });
              }
            });
          }}
        >
          <label>
            Duration
            <select value={chosen} onChange={(e) => setHours(Number(e.target.value))}>
              {prices.map((p) => (
                <option key={p.durationHours} value={p.durationHours}>
                  {p.durationHours} h · {coins(p.price)}
                </option>
              ))}
            </select>
          </label>
          <label>
            Name (optional)
            <input maxLength={64} value={name} onChange={(e) => setName(e.target.value)} />
          </label>
          <p>
            {coins(price)}; you have {coinAmount(available)}.
            {price > available && <span className="error"> {coinsMissing(price, available)}</span>}
          </p>
          <button type="submit" disabled={bought.fetching || price > available}>
            Buy
          </button>
        </form>
      )}
      {data?.accessProxy.configured && data.accessProxy.baseUrl && (
        <p>
          Use it at <code>{data.accessProxy.baseUrl}</code> with the <code>X-Access-Token</code> header.
        </p>
      )}
      <table className="history">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Status</th>
            <th scope="col">Time left</th>
            <th scope="col">Last used</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {data?.me?.accessTokens.edges.map(({ node }) => (
            <tr key={node.id} data-testid="token-row">
              <td>{node.name ?? `${node.durationHours} h token`}</td>
              <td>{node.status.toLowerCase()}</td>
              <td>{node.status === 'ACTIVE' ? timeLeft(node.expiresAt) : '—'}</td>
              <td>{node.lastUsedAt ? dateTime(node.lastUsedAt) : 'never'}</td>
              <td>
                {node.status === 'ACTIVE' && (
                  <button type="button" onClick={() => void revoke({ id: node.id })}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
