import { useCallback, useEffect, useRef, useState } from 'react';
import { useMutation, useQuery, useSubscription } from 'urql';
import { Countdown, ProblemAlert } from '../components';
import { describe, type Problem } from '../errors';
import { coinAmount, coins } from '../format';
import { graphql } from '../gql';
import type { AdProvider } from '../gql/graphql';
import { useSession } from '../session';
import { CLIENT_SIGNING_KEY, signedClaim } from '../signing';

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
      turnstileScriptUrl
      clientSigningRequired
      imaSdkUrl
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

const WALLET = graphql(`
  subscription EarnWallet {
    walletChanged {
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

interface TurnstileApi {
  render: (element: HTMLElement, options: Record<string, unknown>) => string;
  reset: (id: string) => void;
  remove: (id: string) => void;
}

const turnstileApi = () => (window as unknown as { turnstile?: TurnstileApi }).turnstile;

/**
 * The Turnstile challenge (explicit rendering, action `ads_prepare`). A solved one hands its
 * token up; tokens are single-use, so each new `round` draws the challenge again.
 */
function Challenge({
  siteKey,
  scriptUrl,
  round,
  onToken,
}: {
  siteKey: string;
  scriptUrl: string;
  round: number;
  onToken: (token: string | null) => void;
}) {
  const box = useRef<HTMLDivElement>(null);
  const widget = useRef<string | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let gone = false;
    loadScript(scriptUrl)
      .then(() => {
        const api = turnstileApi();
        if (gone || !box.current) return;
        if (!api) throw new Error('no turnstile');
        widget.current = api.render(box.current, {
          sitekey: siteKey,
          action: 'ads_prepare',
          callback: (token: string) => onToken(token),
          'expired-callback': () => onToken(null),
          'error-callback': () => onToken(null),
        });
      })
      .catch(() => setFailed(true));
    return () => {
      gone = true;
      if (widget.current) turnstileApi()?.remove(widget.current);
      widget.current = null;
    };
  }, [siteKey, scriptUrl, onToken]);
  useEffect(() => {
    if (round > 0 && widget.current) turnstileApi()?.reset(widget.current);
  }, [round]);
  if (failed) {
    return (
      <p role="alert" className="error">
        The challenge could not be loaded, so ads cannot start. Reload the page to try again.
      </p>
    );
  }
  return <div ref={box} data-testid="turnstile" />;
}

/** The part of Google's IMA HTML5 SDK this page uses (`google.ima`). */
interface ImaEvent {
  getAdsManager?: (video: HTMLVideoElement) => ImaAdsManager;
  getError?: () => { getMessage: () => string; getErrorCode: () => number };
}
interface ImaEmitter {
  addEventListener: (type: string, listener: (event: ImaEvent) => void) => void;
}
interface ImaAdsManager extends ImaEmitter {
  init: (width: number, height: number, mode: string) => void;
  start: () => void;
  destroy: () => void;
}
interface ImaSdk {
  AdDisplayContainer: new (container: HTMLElement, video: HTMLVideoElement) => { initialize: () => void; destroy: () => void };
  AdsLoader: new (display: unknown) => ImaEmitter & { requestAds: (request: unknown) => void; destroy: () => void };
  AdsRequest: new () => { adTagUrl: string; linearAdSlotWidth: number; linearAdSlotHeight: number };
  AdsManagerLoadedEvent: { Type: { ADS_MANAGER_LOADED: string } };
  AdEvent: { Type: { ALL_ADS_COMPLETED: string } };
  AdErrorEvent: { Type: { AD_ERROR: string } };
  ViewMode: { NORMAL: string };
}

const imaSdk = () => (window as unknown as { google?: { ima?: ImaSdk } }).google?.ima;

/**
 * Plays a GMA ad tag with Google's IMA SDK (loaded from `sdkUrl` when first needed). The
 * reward does not come from here: once the ad has played, Google's server calls ours back
 * (SSV), and the wallet moves by itself.
 */
function ImaAd({ sdkUrl, adTagUrl, onEnd }: { sdkUrl: string; adTagUrl: string; onEnd: (error?: string) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const video = useRef<HTMLVideoElement>(null);
  // The latest callback, read when the ad ends: a new one from the parent must not restart
  // the ad.
  const ended = useRef(onEnd);
  useEffect(() => {
    ended.current = onEnd;
  }, [onEnd]);
  useEffect(() => {
    let gone = false;
    let cleanup = () => {};
    const end = (error?: string) => {
      if (!gone) ended.current(error);
    };
    loadScript(sdkUrl)
      .then(() => {
        const ima = imaSdk();
        if (gone || !box.current || !video.current) return;
        if (!ima) throw new Error('no IMA SDK');
        const display = new ima.AdDisplayContainer(box.current, video.current);
        display.initialize();
        const loader = new ima.AdsLoader(display);
        let manager: ImaAdsManager | null = null;
        cleanup = () => {
          manager?.destroy();
          loader.destroy();
          display.destroy();
        };
        const failed = (event: ImaEvent) => end(event.getError?.().getMessage() ?? 'the ad failed');
        loader.addEventListener(ima.AdErrorEvent.Type.AD_ERROR, failed);
        loader.addEventListener(ima.AdsManagerLoadedEvent.Type.ADS_MANAGER_LOADED, (event) => {
          if (!event.getAdsManager || !video.current) return;
          manager = event.getAdsManager(video.current);
          manager.addEventListener(ima.AdErrorEvent.Type.AD_ERROR, failed);
          manager.addEventListener(ima.AdEvent.Type.ALL_ADS_COMPLETED, () => end());
          manager.init(640, 360, ima.ViewMode.NORMAL);
          manager.start();
        });
        const request = new ima.AdsRequest();
        request.adTagUrl = adTagUrl;
        request.linearAdSlotWidth = 640;
        request.linearAdSlotHeight = 360;
        loader.requestAds(request);
      })
      .catch(() => end('the ad player could not be loaded'));
    return () => {
      gone = true;
      cleanup();
    };
  }, [sdkUrl, adTagUrl]);
  return (
    <div className="player ima" ref={box} role="region" aria-label="Video ad">
      <video ref={video} playsInline muted />
    </div>
  );
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
  // A GMA ad tag that the IMA SDK is playing.
  const [imaTag, setImaTag] = useState<string | null>(null);
  const lastTicket = useRef<string | null>(null);
  const { viewer } = useSession();
  // A solved Turnstile challenge, when the server asks for one; spent by each prepare.
  const [challengeToken, setChallengeToken] = useState<string | null>(null);
  const [round, setRound] = useState(0);
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
  // A reward that lands by itself (Google's callback after a video ad) moves the wallet:
  // count it here too.
  const [wallet] = useSubscription({ query: WALLET });
  useEffect(() => {
    if (wallet.data) refresh({ requestPolicy: 'network-only' });
  }, [wallet.data, refresh]);
  const imaEnded = useCallback(
    (error?: string) => {
      setImaTag(null);
      if (error) {
        setMessage('');
        setProblem({ message: 'The video ad could not be shown. Try again later.', code: 'AD' });
      } else {
        setMessage('The ad has played.');
      }
      refresh({ requestPolicy: 'network-only' });
    },
    [refresh],
  );
  const status = data?.adRewardStatus;
  const required = status?.requiredSeconds ?? 0;
  const reload = useCallback(() => refresh({ requestPolicy: 'network-only' }), [refresh]);
  const challenge =
    status?.turnstileSiteKey && status.turnstileScriptUrl
      ? { siteKey: status.turnstileSiteKey, scriptUrl: status.turnstileScriptUrl }
      : null;

  const watch = async (provider: AdProvider) => {
    setProblem(undefined);
    setMessage('');
    const turnstileToken = challengeToken ?? undefined;
    if (challenge) {
      setChallengeToken(null);
      setRound((r) => r + 1);
    }
    const signed =
      status?.clientSigningRequired && CLIENT_SIGNING_KEY && viewer
        ? await signedClaim(CLIENT_SIGNING_KEY, viewer.id, 'earn')
        : {};
    const prepared = await prepare({ input: { provider, placement: 'earn', turnstileToken, ...signed } });
    const ticket = prepared.data?.prepareAdReward;
    if (!ticket) {
      setProblem(describe(prepared.error));
      return;
    }
    lastTicket.current = ticket.ticket;
    if (provider === 'GMA') {
      // The ad tag's player reports to the ad network, whose server calls ours back: the
      // IMA SDK for a real tag, the development player's page for the dev fakes' tag.
      if (status?.imaSdkUrl) setImaTag(ticket.adTagUrl ?? null);
      else setPlayer(ticket.adTagUrl ?? null);
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
  // The server wants signed requests and this build carries no key: nothing can start.
  const unsigned = status.clientSigningRequired && !CLIENT_SIGNING_KEY;
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
        {unsigned && (
          <p role="alert" className="error">
            This server only takes ads from a signed app, and this build of the app has no signing key.
          </p>
        )}
        {challenge && status.providers.length > 0 && (
          <>
            <p className="muted">{challengeToken ? 'Ready.' : 'First show that you are a person:'}</p>
            <Challenge siteKey={challenge.siteKey} scriptUrl={challenge.scriptUrl} round={round} onToken={setChallengeToken} />
          </>
        )}
        <div className="actions">
          {status.providers.map((p) => (
            <button
              key={p}
              type="button"
              disabled={
                phase !== 'idle' ||
                player !== null ||
                imaTag !== null ||
                capped ||
                unsigned ||
                status.cooldownSeconds > 0 ||
                (challenge !== null && !challengeToken)
              }
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
        {imaTag && status.imaSdkUrl && <ImaAd sdkUrl={status.imaSdkUrl} adTagUrl={imaTag} onEnd={imaEnded} />}
      </div>
    </section>
  );
}
