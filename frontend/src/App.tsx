import { useEffect, useMemo, useRef, useState } from 'react';
import { Provider, useMutation, useQuery } from 'urql';
import { Link, Redirect, Route, Switch, useLocation } from 'wouter';
import type { Client as WsClient } from 'graphql-ws';
import { makeClient, type LinkState } from './client';
import { graphql } from './gql';
import { Live, Session, useSession, type Viewer } from './session';
import { SignIn, Register } from './pages/SignIn';
import { WalletPage } from './pages/Wallet';
import { EarnPage } from './pages/Earn';
import { TokensPage } from './pages/Tokens';
import { AccountPage } from './pages/Account';
import { VpsPage, VpsSessionPage } from './pages/Vps';
import { PlansPage } from './pages/Plans';
import { ResetPasswordPage, VerifyEmailPage } from './pages/EmailLinks';

const ME = graphql(`
  query Me {
    me {
      id
      username
    }
  }
`);

export function App() {
  const [viewer, setViewer] = useState<Viewer | null | undefined>(undefined);
  const [link, setLink] = useState<LinkState>('idle');
  // One client per signed-in state: the WebSocket authenticates with the cookie at upgrade.
  // Only the client in use moves the banner; a replaced one is disposed once replaced (not
  // in an effect cleanup, which StrictMode runs on a client that stays).
  const active = useRef<WsClient | null>(null);
  const { client, ws } = useMemo(
    () =>
      makeClient(
        (state, source) => {
          if (source === active.current) setLink(state);
        },
        // The session ended elsewhere (revoked, expired): back to signing in, and back here
        // after it (the guarded pages remember where they were).
        () => setViewer((v) => (v ? null : v)),
      ),
    [viewer?.id],
  );
  useEffect(() => {
    const previous = active.current;
    active.current = ws;
    if (previous && previous !== ws) void previous.dispose();
  }, [ws]);
  return (
    <Provider value={client}>
      <Live.Provider value={ws}>
        <Session.Provider value={{ viewer: viewer ?? null, setViewer }}>
          {viewer === undefined ? <Probe onViewer={setViewer} /> : <Shell link={link} />}
        </Session.Provider>
      </Live.Provider>
    </Provider>
  );
}

/** Asks the server who is signed in (the cookie decides) before showing anything. */
function Probe({ onViewer }: { onViewer: (v: Viewer | null) => void }) {
  const [{ data, error, fetching }] = useQuery({ query: ME });
  useEffect(() => {
    if (!fetching) onViewer(data?.me ? { id: data.me.id, username: data.me.username } : null);
  }, [data, error, fetching, onViewer]);
  return <p className="muted">Loading…</p>;
}

function Shell({ link }: { link: LinkState }) {
  const { viewer } = useSession();
  return (
    <>
      <header className="top">
        <Link href="/" className="brand">
          Tessera
        </Link>
        {viewer && (
          <nav aria-label="Main">
            <Link href="/wallet">Wallet</Link>
            <Link href="/earn">Earn</Link>
            <Link href="/vps">Servers</Link>
            <Link href="/tokens">Access tokens</Link>
            <Link href="/plans">Plans</Link>
            <Link href="/account">Account</Link>
          </nav>
        )}
        <Account />
      </header>
      {link === 'lost' && (
        <div className="banner" role="status">
          Live updates are reconnecting…
        </div>
      )}
      <main>
        <Switch>
          <Route path="/signin" component={SignIn} />
          <Route path="/register" component={Register} />
          <Route path="/verify-email" component={VerifyEmailPage} />
          <Route path="/reset-password" component={ResetPasswordPage} />
          <Route path="/wallet">
            <Guarded>
              <WalletPage />
            </Guarded>
          </Route>
          <Route path="/earn">
            <Guarded>
              <EarnPage />
            </Guarded>
          </Route>
          <Route path="/vps">
            <Guarded>
              <VpsPage />
            </Guarded>
          </Route>
          <Route path="/vps/sessions/:id">
            {(params) => (
              <Guarded>
                {/* Keyed: another session's page starts from nothing, not from this one's. */}
                <VpsSessionPage key={params.id} id={params.id} />
              </Guarded>
            )}
          </Route>
          <Route path="/account">
            <Guarded>
              <AccountPage />
            </Guarded>
          </Route>
          <Route path="/tokens">
            <Guarded>
              <TokensPage />
            </Guarded>
          </Route>
          <Route path="/plans">
            <Guarded>
              <PlansPage />
            </Guarded>
          </Route>
          <Route path="/">{viewer ? <Redirect to="/wallet" /> : <Redirect to="/signin" />}</Route>
          <Route>
            <p>Page not found.</p>
          </Route>
        </Switch>
      </main>
    </>
  );
}

/** A signed-out visit goes to sign-in and comes back here after it. */
function Guarded({ children }: { children: React.ReactNode }) {
  const { viewer } = useSession();
  const [location] = useLocation();
  if (!viewer) return <Redirect to={`/signin?next=${encodeURIComponent(location)}`} />;
  return <>{children}</>;
}

const LOGOUT = graphql(`
  mutation Logout {
    logout
  }
`);

function Account() {
  const { viewer, setViewer } = useSession();
  const [, navigate] = useLocation();
  const [, logout] = useMutation(LOGOUT);
  if (!viewer) return null;
  return (
    <div className="account">
      <span aria-label="Signed in as">{viewer.username}</span>
      <button
        type="button"
        onClick={() =>
          void logout({}).then(() => {
            setViewer(null);
            navigate('/signin');
          })
        }
      >
        Sign out
      </button>
    </div>
  );
}
