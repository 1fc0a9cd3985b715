import { useCallback, useEffect, useRef, useState } from 'react';
import { useMutation, useQuery } from 'urql';
import { Countdown, ProblemAlert } from '../components';
import { describe, type Problem } from '../errors';
import { coinAmount, coins } from '../format';
import { graphql } from '../gql';
import type { AdProvider } from '../gql/graphql';

const STATUS = graphql(`
  query AdStatus {
    adRewardStatus {
      providers
      defaultProvider
      amount
      requiredSeconds
      cooldownSeconds
      todayCount
      dailyCap
      placements
      turnstileSiteKey
    }
  }
`);

const PREPARE = graphql(`
  mutation PrepareAd($input: PrepareAdRewardInput!) {
    prepareAdReward(input: $input) {
      provider
      nonce
      ticket
      requiredDurationSec
      monetag {
        zoneId
        scriptUrl
        ymid
      }
      adTagUrl
    }
  }
`);

const COMPLETE = graphql(`
  mutation CompleteAd($input: CompleteAdRewardInput!) {
    completeAdReward(input: $input) {
      status
      credited
      balance
    }
  }
`);

type MonetagShow = (options: { ymid: string }) => Promise<unknown>;

const loaded = new Map<string, Promise<void>>();

/** Loads a provider's script once, only when that provider is used. */
function loadScript(src: string): Promise<void> {
  let done = loaded.get(src);
  if (!done) {
    done = new Promise<void>((resolve, reject) => {
      const script = document.createElement('script');
      script.src = src;
      script.async = true;
      script.onload = () => resolve();
      script.onerror = () => reject(new Error(`could not load ${src}`));
      document.head.appendChild(script);
    });
    loaded.set(src, done);
  }
  return done;
}

/** Seconds the page was visible since `start()`; hidden time does not count. */
function useVisibleSeconds() {
  const [seconds, setSeconds] = useState(0);
  const timer = useRef<number | undefined>(undefined);
  const start = useCallback(() => {
    window.clearInterval(timer.current);
    setSeconds(0);
    let last = performance.now();
    timer.current = window.setInterval(() => {
      const now = performance.now();
      if (document.visibilityState === 'visible') setSeconds((s) => s + (now - last) / 1000);
      last = now;
    }, 250);
  }, []);
  const stop = useCallback(() => window.clearInterval(timer.current), []);
  useEffect(() => stop, [stop]);
  return { seconds, start, stop };
}

export function EarnPage() {
  const [{ data, error }, refresh] = useQuery({ query: STATUS, requestPolicy: 'network-only' });
  const [, prepare] = useMutation(PREPARE);
  const [, complete] = useMutation(COMPLETE);
  const visible = useVisibleSeconds();
  const [phase, setPhase] = useState<'idle' | 'watching' | 'finishing' | 'completing'>('idle');
  const [problem, setProblem] = useState<Problem | undefined>();
  const [message, setMessage] = useState<string>('');
  const [player, setPlayer] = useState<string | null>(null);
  const lastTicket = useRef<string | null>(null);
  // The dev GMA player says when its ad ended; the credit arrives by SSV meanwhile.
  useEffect(() => {
    const ended = (e: MessageEvent) => {
      if (e.origin !== location.origin || (e.data as { type?: string } | null)?.type !== 'tessera-dev-ad-ended') return;
      setPlayer(null);
      setMessage('The ad has played.');
      refresh({ requestPolicy: 'network-only' });
    };
    window.addEventListener('message', ended);
    return () => window.removeEventListener('message', ended);
  }, [refresh]);
  const status = data?.adRewardStatus;
  const required = status?.requiredSeconds ?? 0;
  const reload = useCallback(() => refresh({ requestPolicy: 'network-only' }), [refresh]);

  const watch = async (provider: AdProvider) => {
    setProblem(undefined);
    setMessage('');
    const prepared = await prepare({ input: { provider, placement: 'earn' } });
    const ticket = prepared.data?.prepareAdReward;
    if (!ticket) {
      setProblem(describe(prepared.error));
      return;
    }
    lastTicket.current = ticket.ticket;
    if (provider === 'GMA') {
      // The ad tag's player reports to the ad network, whose server calls ours back.
      setPlayer(ticket.adTagUrl ?? null);
      setMessage('The reward arrives once the ad has played.');
      return;
    }
    const monetag = ticket.monetag;
    if (!monetag) return;
    setPhase('watching');
    visible.start();
    try {
      await loadScript(monetag.scriptUrl);
      const show = (window as unknown as Record<string, MonetagShow | undefined>)[`show_${monetag.zoneId}`];
      if (!show) throw new Error('the ad script did not load');
      await show({ ymid: monetag.ymid });
    } catch {
      visible.stop();
      setPhase('idle');
      setProblem({ message: 'The ad could not be shown. Try again later.', code: 'AD' });
      return;
    }
    setPhase('finishing');
  };

  // Completes once the ad closed and the page was visible long enough.
  useEffect(() => {
    if (phase !== 'finishing' || visible.seconds < required) return;
    visible.stop();
    const ticket = lastTicket.current;
    lastTicket.current = null;
    if (!ticket) return;
    // Once: later renders see 'completing'.
    setPhase('completing');
    void complete({ input: { ticket, durationSec: Math.floor(visible.seconds) } }).then((done) => {
      setPhase('idle');
      const result = done.data?.completeAdReward;
      if (result?.status === 'CREDITED') setMessage(`+${coins(result.credited)}`);
      else if (result?.status === 'PENDING') setMessage('Waiting for the ad network to confirm.');
      else if (result) setMessage('This ad was already counted.');
      else setProblem(describe(done.error));
      reload();
    });
  }, [phase, visible, required, complete, reload]);


  if (error) return <p role="alert">{describe(error)?.message}</p>;
  if (!status) return <p className="muted">Loading…</p>;
  const capped = status.todayCount >= status.dailyCap;
  return (
    <section>
      <h1>Earn coins</h1>
      <div className="card">
        <p>
          Watch an ad to the end for <strong>{coinAmount(status.amount)}</strong> coins. Today:{' '}
          <span data-testid="today">{status.todayCount}</span> of {status.dailyCap}.
        </p>
        {status.cooldownSeconds > 0 && (
          <p>
            Next ad in <Countdown seconds={status.cooldownSeconds} onDone={reload} /> s.
          </p>
        )}
        {status.providers.length === 0 && <p>No ad provider is configured on this server.</p>}
        <div className="actions">
          {status.providers.map((p) => (
            <button
              key={p}
              type="button"
              disabled={phase !== 'idle' || player !== null || capped || status.cooldownSeconds > 0}
              onClick={() => void watch(p)}
            >
              Watch {p === 'MONETAG' ? 'an ad' : 'a video ad'}
            </button>
          ))}
        </div>
        {phase !== 'idle' && (
          <p role="status">
            Watching… {Math.floor(visible.seconds)} of {required} s
          </p>
        )}
        {message && (
          <p role="status" data-testid="ad-result">
            {message}
          </p>
        )}
        <ProblemAlert problem={problem} onRetry={reload} />
        {player && <iframe title="Video ad" src={player} className="player" />}
      </div>
    </section>
  );
}
