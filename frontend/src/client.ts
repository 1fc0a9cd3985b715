import { Client, cacheExchange, fetchExchange, subscriptionExchange } from 'urql';
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';

/** Connection state of the live (WebSocket) link, for the banner. */
export type LinkState = 'idle' | 'connected' | 'lost';

const REFRESH = 'mutation Refresh { refreshSession { user { id } } }';

/** What a refresh came to: a new session, a refusal (the session is over), or no answer. */
export type Refresh = 'ok' | 'refused' | 'unavailable';

/**
 * fetch for urql: cookies only (the page never holds a token); when the access token has
 * expired, `refreshSession` once (the refresh cookie), then the request again. A refused
 * refresh calls `onRefused`; one that got no answer leaves things as they are.
 */
export async function fetchWithRefresh(
  input: RequestInfo | URL,
  init: RequestInit | undefined,
  onRefused: () => void,
): Promise<Response> {
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
  const outcome = await refreshOnce();
  if (outcome === 'ok') return send();
  if (outcome === 'refused') onRefused();
  return response;
}

let refreshing: Promise<Refresh> | null = null;

/**
 * One `refreshSession` for every request that found the token expired at the same time. A
 * refresh token is single-use and presenting a used one ends the session, so tabs take turns
 * too (a Web Lock): the second tab's refresh then carries the cookie the first one got.
 */
export function refreshOnce(): Promise<Refresh> {
  const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
  refreshing ??= (locks ? locks.request('tessera-session-refresh', sendRefresh) : sendRefresh()).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function sendRefresh(): Promise<Refresh> {
  try {
    const response = await fetch('/graphql', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: REFRESH }),
    });
    const body = (await response.json()) as { errors?: { extensions?: { code?: string } }[] };
    if (!body.errors?.length) return 'ok';
    const refused = body.errors.some((e) => e.extensions?.code === 'UNAUTHENTICATED' || e.extensions?.code === 'FORBIDDEN');
    return refused ? 'refused' : 'unavailable';
  } catch {
    return 'unavailable';
  }
}

/** Whether a response says the session is gone (revoked, signed out elsewhere):
 * UNAUTHENTICATED for any reason but a wrong password or code, or an expired token (which
 * the refresh above deals with). */
export function sessionGone(errors: readonly { extensions?: { code?: unknown; reason?: unknown } }[] | undefined): boolean {
  return (errors ?? []).some(
    (e) =>
      e.extensions?.code === 'UNAUTHENTICATED' &&
      e.extensions?.reason !== 'invalid_credentials' &&
      e.extensions?.reason !== 'token_expired',
  );
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
  // An expired access token closed the link: refresh before the next attempt. When the
  // last refresh was moments ago and the token is refused again, the session is over.
  let refreshFirst = false;
  let lastRefresh = 0;
  // Events name their client, so a replaced one cannot move the banner.
  const report = (state: LinkState) => onLink(state, ws);
  const ws: WsClient = createWsClient({
    url: `${scheme}://${location.host}/graphql/ws`,
    // The session cookie authenticates the upgrade.
    connectionParams: {},
    retryAttempts: Number.POSITIVE_INFINITY,
    // The one place a 4403 (forbidden) is decided: never again after it (signed out or
    // revoked), except for an access token that expired: refresh it, then connect again.
    // Back off after anything else.
    shouldRetry: (event) => {
      const close = typeof event === 'object' && event !== null && 'code' in event ? (event as CloseEvent) : null;
      if (close?.code !== 4403) return true;
      if (close.reason.includes('token_expired') && Date.now() - lastRefresh > 10_000) {
        refreshFirst = true;
        return true;
      }
      onSignedOut();
      return false;
    },
    // Never throws: graphql-ws would leave the client stuck.
    retryWait: async () => {
      if (refreshFirst) {
        refreshFirst = false;
        lastRefresh = Date.now();
        const outcome = await refreshOnce();
        if (outcome === 'refused') onSignedOut();
        if (outcome !== 'unavailable') return;
        // No answer: try the refresh again after a pause.
        lastRefresh = 0;
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
        report('connected');
      },
      closed: (event) => {
        if ((event as CloseEvent | undefined)?.code === 1000) report('idle');
      },
    },
  });
  const client = new Client({
    url: '/graphql',
    fetch: async (input, init) => {
      const response = await fetchWithRefresh(input, init, onSignedOut);
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
          subscribe: (sink) => ({
            unsubscribe: ws.subscribe(
              { ...request, query: request.query ?? '' },
              {
                ...sink,
                // A live stream refused for want of a session: signed out elsewhere.
                next: (result) => {
                  if (sessionGone(result.errors)) onSignedOut();
                  sink.next(result as Parameters<typeof sink.next>[0]);
                },
              },
            ),
          }),
        }),
      }),
    ],
  });
  return { client, ws };
}
