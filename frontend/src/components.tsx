import type { InputHTMLAttributes } from 'react';
import type { Problem } from './errors';

/** A refusal, in words, announced to assistive technology. */
export function ProblemAlert({ problem }: { problem: Problem | undefined }) {
  if (!problem) return null;
  return (
    <p role="alert" className="error">
      {problem.message}
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
