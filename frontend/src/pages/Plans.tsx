import { useEffect, useState } from 'react';
import { useMutation, useQuery, useSubscription } from 'urql';
import { useSearch } from 'wouter';
import { ProblemAlert } from '../components';
import { describe } from '../errors';
import { coinAmount, coins, date, money } from '../format';
import { graphql } from '../gql';

const PLANS = graphql(`
  query Plans {
    billingConfigured
    plans {
      id
      name
      tier
      description
      priceCents
      currency
      interval
      coinAllowance
    }
    me {
      id
      subscription {
        id
        status
        active
        cancelAtPeriodEnd
        currentPeriodEnd
        plan {
          id
          name
        }
      }
      payments(first: 10) {
        edges {
          node {
            id
            amountCents
            currency
            coinAllowance
            hostedInvoiceUrl
            paidAt
          }
        }
      }
    }
  }
`);

const CHANGED = graphql(`
  subscription SubscriptionChanged {
    subscriptionChanged {
      id
      status
    }
  }
`);

const CHECKOUT = graphql(`
  mutation StartCheckout($planId: ID!) {
    startCheckout(planId: $planId) {
      url
    }
  }
`);

const PREVIEW = graphql(`
  query PreviewPlanChange($planId: ID!) {
    previewPlanChange(planId: $planId) {
      amountDueCents
      currency
      lines {
        description
        amountCents
      }
    }
  }
`);

const CHANGE = graphql(`
  mutation ChangePlan($planId: ID!) {
    changePlan(planId: $planId) {
      id
      plan {
        id
        name
      }
    }
  }
`);

const CANCEL = graphql(`
  mutation CancelSubscription {
    cancelSubscription(atPeriodEnd: true) {
      id
      cancelAtPeriodEnd
    }
  }
`);

const RESUME = graphql(`
  mutation ResumeSubscription {
    resumeSubscription {
      id
      cancelAtPeriodEnd
    }
  }
`);

const PORTAL = graphql(`
  mutation OpenBillingPortal {
    openBillingPortal {
      url
    }
  }
`);

const RUNNING = ['ACTIVE', 'TRIALING', 'PAST_DUE', 'PAUSED'];

const RETURNS: Record<string, string> = {
  success: 'Thank you: your subscription has started.',
  pending: 'Your payment is being confirmed; this page updates when it is.',
  canceled: 'Checkout was canceled; nothing was charged.',
  unknown: 'That checkout could not be found.',
  unavailable: 'Billing is unavailable right now.',
};

/** Plans, the current subscription (live), Checkout, plan changes with a preview,
 * cancel and resume, the Billing Portal, and recent payments. */
export function PlansPage() {
  const search = useSearch();
  const returned = new URLSearchParams(search).get('checkout');
  const [{ data, error }, refresh] = useQuery({ query: PLANS, requestPolicy: 'cache-and-network' });
  const [live] = useSubscription({ query: CHANGED });
  const [checkout, startCheckout] = useMutation(CHECKOUT);
  const [changed, changePlan] = useMutation(CHANGE);
  const [canceled, cancel] = useMutation(CANCEL);
  const [resumed, resume] = useMutation(RESUME);
  const [portal, openPortal] = useMutation(PORTAL);
  const [target, setTarget] = useState<string | null>(null);
  const [preview] = useQuery({ query: PREVIEW, variables: { planId: target ?? '' }, pause: !target, requestPolicy: 'network-only' });
  // Every change of the subscription (a webhook, another tab) reloads the page's data. A
  // paid invoice is recorded by a webhook of its own and announced on the same stream, but
  // that announcement can come while the stream is not open (on the way back from Checkout,
  // or while it reconnects): look again a few times shortly after each change and return.
  useEffect(() => {
    if (!live.data && !returned) return;
    const again = () => refresh({ requestPolicy: 'network-only' });
    if (live.data) again();
    const timers = [1000, 3000, 6000].map((ms) => setTimeout(again, ms));
    return () => timers.forEach(clearTimeout);
  }, [live.data, returned, refresh]);
  const sub = data?.me?.subscription;
  const running = sub && RUNNING.includes(sub.status) ? sub : null;
  const problem = describe(error ?? checkout.error ?? changed.error ?? canceled.error ?? resumed.error ?? portal.error ?? preview.error);
  const go = (url: string | undefined) => {
    if (url) window.location.assign(url);
  };
  return (
    <section>
      <h1>Plans</h1>
      {returned && RETURNS[returned] && (
        <p className="banner" role="status" data-testid="checkout-return">
          {RETURNS[returned]}
        </p>
      )}
      {data && !data.billingConfigured && (
        <p className="card" role="status" data-testid="billing-unavailable">
          Billing is unavailable on this server.
        </p>
      )}
      <ProblemAlert problem={problem} />
      {running && (
        <div className="card" data-testid="subscription">
          <h2>Your plan: {running.plan?.name ?? 'unknown plan'}</h2>
          <p>
            <span data-testid="subscription-status">{running.status.replace('_', ' ').toLowerCase()}</span>
            {running.active ? '' : ' (no access)'} ·{' '}
            {running.cancelAtPeriodEnd ? 'ends' : 'renews'} on {date(running.currentPeriodEnd)}
          </p>
          {running.status === 'PAST_DUE' && <p className="error">The last payment failed: update your card.</p>}
          <div className="actions">
            {running.cancelAtPeriodEnd ? (
              <button type="button" onClick={() => void resume({})} disabled={resumed.fetching}>
                Resume
              </button>
            ) : (
              <button type="button" onClick={() => void cancel({})} disabled={canceled.fetching}>
                Cancel at period end
              </button>
            )}
            <button type="button" onClick={() => void openPortal({}).then((r) => go(r.data?.openBillingPortal.url))} disabled={portal.fetching}>
              Cards and invoices
            </button>
          </div>
        </div>
      )}
      <div className="grid">
        {data?.plans.map((plan) => {
          const current = running?.plan?.id === plan.id;
          return (
            <div key={plan.id} className="card" data-testid="plan">
              <h2>{plan.name}</h2>
              <p>
                {money(plan.priceCents, plan.currency)} a {plan.interval.toLowerCase()} · {coins(plan.coinAllowance)} each{' '}
                {plan.interval.toLowerCase()}
              </p>
              {plan.description && <p className="muted">{plan.description}</p>}
              {current ? (
                <p>
                  <strong>Current plan</strong>
                </p>
              ) : running ? (
                <button type="button" onClick={() => setTarget(plan.id)} disabled={!data.billingConfigured}>
                  Change to {plan.name}
                </button>
              ) : (
                <button
                  type="button"
                  disabled={!data.billingConfigured || checkout.fetching}
                  onClick={() => void startCheckout({ planId: plan.id }).then((r) => go(r.data?.startCheckout.url))}
                >
                  Subscribe
                </button>
              )}
            </div>
          );
        })}
      </div>
      {target && preview.data && (
        <div className="card" role="region" aria-label="Plan change" data-testid="preview">
          <h2>Change plan</h2>
          <p>
            Due now: <strong data-testid="due-now">{money(preview.data.previewPlanChange.amountDueCents, preview.data.previewPlanChange.currency)}</strong>
            {preview.data.previewPlanChange.amountDueCents === 0 && ' (the new price starts with your next period)'}
          </p>
          <ul>
            {preview.data.previewPlanChange.lines.map((line, i) => (
              <li key={i}>
                {line.description}: {money(line.amountCents, preview.data!.previewPlanChange.currency)}
              </li>
            ))}
          </ul>
          <div className="actions">
            <button
              type="button"
              disabled={changed.fetching}
              onClick={() =>
                void changePlan({ planId: target }).then((r) => {
                  if (r.data) {
                    setTarget(null);
                    refresh({ requestPolicy: 'network-only' });
                  }
                })
              }
            >
              Confirm change
            </button>
            <button type="button" onClick={() => setTarget(null)}>
              Keep my plan
            </button>
          </div>
        </div>
      )}
      {!!data?.me?.payments.edges.length && (
        <>
          <h2>Payments</h2>
          <table className="history">
            <thead>
              <tr>
                <th scope="col">Paid</th>
                <th scope="col">Amount</th>
                <th scope="col">Coins</th>
                <th scope="col">Invoice</th>
              </tr>
            </thead>
            <tbody>
              {data.me.payments.edges.map(({ node }) => (
                <tr key={node.id} data-testid="payment-row">
                  <td>{date(node.paidAt)}</td>
                  <td>{money(node.amountCents, node.currency)}</td>
                  <td>{coinAmount(node.coinAllowance)}</td>
                  <td>{node.hostedInvoiceUrl ? <a href={node.hostedInvoiceUrl}>View</a> : '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
