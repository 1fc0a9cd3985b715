import { Client, cacheExchange, fetchExchange, subscriptionExchange } from 'urql';
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';

/** Connection state of the live (WebSocket) link, for the banner. */
export type LinkState = 'idle' | 'connected' | 'lost';

const REFRESH = 'mutation Refresh { refreshSession { user { id } } }';

/**
 * fetch for urql: cookies only (the page never holds a token); when the access token has
 * expired, `refreshSession` once (the refresh cookie), then the request again.
 */
export async function fetchWithRefresh(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const send = () => fetch(input, { ...init, credentials: 'same-origin' });
  const response = await send();
  let expired = false;
  try {
    const body = (await response.clone().json()) as { errors?: { extensions?: { code?: string; reason?: string } }[] };
    expired = (body.errors ?? []).some(
      (e) => e.extensions?.code === 'UNAUTHENTICATED' && e.extensions?.reason === 'token_expired',
    );
  } catch {
    return response;
  }
  if (!expired) return response;
  return (await refreshOnce()) ? send() : response;
}

let refreshing: Promise<boolean> | null = null;

/** One `refreshSession` for every request that found the token expired at the same time:
 * a refresh token is single-use, and presenting a used one ends the session. */
function refreshOnce(): Promise<boolean> {
  refreshing ??= fetch('/graphql', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: REFRESH }),
  })
    .then(async (r) => r.ok && !((await r.json()) as { errors?: unknown[] }).errors)
    .catch(() => false)
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

/** Whether a response says the session is gone (revoked, expired past refreshing, signed
 * out elsewhere): UNAUTHENTICATED for any reason but a wrong password or code. */
export function sessionGone(errors: readonly { extensions?: { code?: unknown; reason?: unknown } }[] | undefined): boolean {
  return (errors ?? []).some((e) => e.extensions?.code === 'UNAUTHENTICATED' && e.extensions?.reason !== 'invalid_credentials');
}

/** A client for one signed-in (or anonymous) state; rebuilt when that changes.
 * `onSignedOut` runs when the server says the session is gone, over HTTP or by closing the
 * live link with 4403. */
export function makeClient(
  onLink: (state: LinkState, source: WsClient) => void,
  onSignedOut: () => void,
): { client: Client; ws: WsClient } {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  let attempts = 0;
  // An expired access token closed the link: refresh before the next attempt (once).
  let refreshFirst = false;
  let refreshTried = false;
  // Events name their client, so a replaced one cannot move the banner.
  const report = (state: LinkState) => onLink(state, ws);
  const ws: WsClient = createWsClient({
    url: `${scheme}://${location.host}/graphql/ws`,
    // The session cookie authenticates the upgrade.
    connectionParams: {},
    retryAttempts: Number.POSITIVE_INFINITY,
    // Never after 4403 (forbidden: signed out or revoked), except once for an access token
    // that expired: refresh it, then connect again. Back off otherwise.
    shouldRetry: (event) => {
      const close = typeof event === 'object' && event !== null && 'code' in event ? (event as CloseEvent) : null;
      if (close?.code !== 4403) return true;
      if (close.reason.includes('token_expired') && !refreshTried) {
        refreshTried = true;
        refreshFirst = true;
        return true;
      }
      // Refused again after a refresh, or refused for good: signed out.
      if (refreshTried) onSignedOut();
      return false;
    },
    retryWait: async () => {
      if (refreshFirst) {
        refreshFirst = false;
        if (!(await refreshOnce())) {
          onSignedOut();
          throw new Error('the session could not be refreshed');
        }
        return;
      }
      attempts += 1;
      const wait = Math.min(30_000, 500 * 2 ** Math.min(attempts, 6)) * (0.5 + Math.random() / 2);
      await new Promise((resolve) => setTimeout(resolve, wait));
    },
    on: {
      // Only a retry means the link was lost; a lazy close (no subscription left) is not.
      connecting: (isRetry) => {
        if (isRetry) report('lost');
      },
      connected: () => {
        attempts = 0;
        refreshTried = false;
        report('connected');
      },
      closed: (event) => {
        const code = (event as CloseEvent | undefined)?.code;
        if (code === 1000) report('idle');
        const reason = (event as CloseEvent | undefined)?.reason ?? '';
        if (code === 4403 && !reason.includes('token_expired')) onSignedOut();
      },
    },
  });
  const client = new Client({
    url: '/graphql',
    fetch: async (input, init) => {
      const response = await fetchWithRefresh(input, init);
      try {
        const body = (await response.clone().json()) as { errors?: { extensions?: { code?: unknown; reason?: unknown } }[] };
        if (sessionGone(body.errors)) onSignedOut();
      } catch {
        // Not JSON: nothing to learn from it here.
      }
      return response;
    },
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription: (request) => ({
          subscribe: (sink) => ({ unsubscribe: ws.subscribe({ ...request, query: request.query ?? '' }, sink) }),
        }),
      }),
    ],
  });
  return { client, ws };
}
