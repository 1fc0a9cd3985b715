import { useEffect, useState } from 'react';
import { useQuery, useSubscription } from 'urql';
import { describe } from '../errors';
import { coinAmount, dateTime, signedCoins } from '../format';
import { graphql } from '../gql';
import { useLive } from '../session';
import type { TransferKind } from '../gql/graphql';

const WALLET = graphql(`
  query Wallet($first: Int!, $after: String, $kind: TransferKind) {
    me {
      id
      wallet {
        balance
        available
        transfers(first: $first, after: $after, kind: $kind) {
          edges {
            cursor
            node {
              id
              amount
              direction
              kind
              status
              counterparty
              balanceAfter
              createdAt
            }
          }
          pageInfo {
            hasNextPage
            endCursor
          }
        }
      }
    }
  }
`);

const CHANGED = graphql(`
  subscription WalletChanged {
    walletChanged {
      balance
      available
    }
  }
`);

const KINDS: TransferKind[] = ['AD_REWARD', 'GRANT', 'PLAN_ALLOWANCE', 'ACCESS_TOKEN', 'VPS_SESSION', 'REFUND'];
const PAGE = 20;

/** Balance and history; the history loads page by page, and every change arrives live. */
export function WalletPage() {
  const [kind, setKind] = useState<TransferKind | ''>('');
  const [pages, setPages] = useState<(string | null)[]>([null]);
  const ws = useLive();
  const [live] = useSubscription({ query: CHANGED });
  const [{ data }, refetch] = useQuery({ query: WALLET, variables: { first: 1 }, requestPolicy: 'cache-and-network' });
  // Whichever said it last: a live change, or the wallet as read (again).
  const [latest, setLatest] = useState<{ balance: number; available: number }>();
  useEffect(() => {
    if (live.data) setLatest(live.data.walletChanged);
  }, [live.data]);
  useEffect(() => {
    if (data?.me) setLatest(data.me.wallet);
  }, [data]);
  // Changes made while the live link was down were never sent: read the wallet again once
  // it is back.
  useEffect(
    () =>
      ws?.on('connected', (_socket, _payload, wasRetry) => {
        if (wasRetry) refetch({ requestPolicy: 'network-only' });
      }),
    [ws, refetch],
  );
  const balance = latest?.balance;
  const available = latest?.available;
  // A new filter starts from the first page.
  useEffect(() => setPages([null]), [kind]);
  return (
    <section>
      <h1>Wallet</h1>
      <div className="card balance">
        <div>
          <span className="label">Balance</span>
          <strong data-testid="balance">{balance == null ? '…' : coinAmount(balance)}</strong> coins
        </div>
        <div>
          <span className="label">Available</span>
          <span data-testid="available">{available == null ? '…' : coinAmount(available)}</span> coins
        </div>
      </div>
      <h2>History</h2>
      <label>
        Kind{' '}
        <select value={kind} onChange={(e) => setKind(e.target.value as TransferKind | '')}>
          <option value="">All</option>
          {KINDS.map((k) => (
            <option key={k} value={k}>
              {k.replace(/_/g, ' ').toLowerCase()}
            </option>
          ))}
        </select>
      </label>
      <table className="history">
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">What</th>
            <th scope="col">Amount</th>
            <th scope="col">Balance after</th>
          </tr>
        </thead>
        {pages.map((after, i) => (
          <HistoryPage
            key={`${kind}:${after ?? 'first'}`}
            kind={kind || null}
            after={after}
            version={live.data ? JSON.stringify(live.data) : ''}
            last={i === pages.length - 1}
            onMore={(cursor) => setPages((p) => [...p, cursor])}
          />
        ))}
      </table>
    </section>
  );
}

function HistoryPage(props: {
  kind: TransferKind | null;
  after: string | null;
  version: string;
  last: boolean;
  onMore: (cursor: string) => void;
}) {
  const [{ data, error, fetching }, refetch] = useQuery({
    query: WALLET,
    variables: { first: PAGE, after: props.after, kind: props.kind },
  });
  // A live change refreshes the first page (new transfers arrive at the top).
  useEffect(() => {
    if (props.version && props.after === null) refetch({ requestPolicy: 'network-only' });
  }, [props.version, props.after, refetch]);
  const problem = describe(error);
  const transfers = data?.me?.wallet.transfers;
  return (
    <tbody>
      {problem && (
        <tr>
          <td colSpan={4} role="alert">
            {problem.message}
          </td>
        </tr>
      )}
      {transfers?.edges.map(({ node }) => (
        <tr key={node.id} data-testid="transfer">
          <td>{dateTime(node.createdAt)}</td>
          <td>{(node.kind ?? 'transfer').replace(/_/g, ' ').toLowerCase()}</td>
          <td className={node.direction === 'CREDIT' ? 'plus' : 'minus'}>
            {signedCoins(node.direction, node.amount)}
          </td>
          <td>{coinAmount(node.balanceAfter)}</td>
        </tr>
      ))}
      {props.last && transfers?.pageInfo.hasNextPage && (
        <tr>
          <td colSpan={4}>
            <button type="button" disabled={fetching} onClick={() => props.onMore(transfers.pageInfo.endCursor!)}>
              Load more
            </button>
          </td>
        </tr>
      )}
      {props.last && transfers && transfers.edges.length === 0 && props.after === null && (
        <tr>
          <td colSpan={4} className="muted">
            Nothing yet.
          </td>
        </tr>
      )}
    </tbody>
  );
}
