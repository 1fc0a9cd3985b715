import { useEffect, useState, type InputHTMLAttributes } from 'react';
import type { Problem } from './errors';
import { countdownSeconds } from './format';

/** Whole seconds counting down to zero, then `onDone`. */
export function Countdown({ seconds, onDone }: { seconds: number; onDone?: () => void }) {
  const [left, setLeft] = useState(() => countdownSeconds(seconds));
  useEffect(() => setLeft(countdownSeconds(seconds)), [seconds]);
  useEffect(() => {
    if (left <= 0) {
      onDone?.();
      return;
    }
    const t = window.setTimeout(() => setLeft((l) => l - 1), 1000);
    return () => window.clearTimeout(t);
  }, [left, onDone]);
  return <span data-testid="countdown">{left}</span>;
}

/** A refusal, in words, announced to assistive technology; with a countdown when the
 * server said when to try again (RATE_LIMITED, UNAVAILABLE). */
export function ProblemAlert({ problem, onRetry }: { problem: Problem | undefined; onRetry?: () => void }) {
  if (!problem) return null;
  return (
    <p role="alert" className="error">
      {problem.message}
      {problem.retryAfter ? (
        <>
          {' '}
          Try again in <Countdown seconds={problem.retryAfter} onDone={onRetry} /> s.
        </>
      ) : null}
    </p>
  );
}

/** A labelled input. */
export function Field({ label, ...input }: { label: string } & InputHTMLAttributes<HTMLInputElement>) {
  return (
    <label>
      {label}
      <input {...input} />
    </label>
  );
}
