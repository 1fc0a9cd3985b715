import { useEffect, useRef, useState, type FormEvent } from 'react';
import { useMutation } from 'urql';
import { Link } from 'wouter';
import { Field, ProblemAlert } from '../components';
import { describe } from '../errors';
import { graphql } from '../gql';
import { useSession } from '../session';

const VERIFY_EMAIL = graphql(`
  mutation VerifyEmail($token: String!) {
    verifyEmail(token: $token) {
      id
      emailVerified
    }
  }
`);

const RESET_PASSWORD = graphql(`
  mutation ResetPassword($token: String!, $password: String!) {
    resetPassword(token: $token, newPassword: $password)
  }
`);

/**
 * The token a mail link carried, read once; the address bar loses it at once, so it is
 * neither kept in history nor shown to whoever looks at the screen next.
 */
function useLinkToken(): string | null {
  const [token] = useState(() => new URLSearchParams(window.location.search).get('token'));
  useEffect(() => {
    if (window.location.search) window.history.replaceState(null, '', window.location.pathname);
  }, []);
  return token;
}

/** `/verify-email?token=…`: confirms the address as soon as the page opens. */
export function VerifyEmailPage() {
  const token = useLinkToken();
  const { viewer } = useSession();
  const [result, verify] = useMutation(VERIFY_EMAIL);
  const sent = useRef(false);
  useEffect(() => {
    // Once, even under StrictMode's double effects: a link's token is single use.
    if (!token || sent.current) return;
    sent.current = true;
    void verify({ token });
  }, [token, verify]);
  const problem = describe(result.error);
  return (
    <section aria-labelledby="verify-title" className="narrow">
      <h1 id="verify-title">Email address</h1>
      {!token ? (
        <p role="alert" className="error">
          This link has no token. Open the link from the mail again.
        </p>
      ) : result.data?.verifyEmail.emailVerified ? (
        <p role="status" className="ok">
          Your email address is verified.
        </p>
      ) : problem ? (
        <ProblemAlert problem={problem} />
      ) : (
        <p role="status">Checking the link…</p>
      )}
      <p>
        {viewer ? <Link href="/account">Go to your account</Link> : <Link href="/signin">Sign in</Link>}
      </p>
    </section>
  );
}

/** `/reset-password?token=…`: a new password, then every session is signed out. */
export function ResetPasswordPage() {
  const token = useLinkToken();
  const { setViewer } = useSession();
  const [password, setPassword] = useState('');
  const [result, reset] = useMutation(RESET_PASSWORD);
  const done = result.data?.resetPassword === true;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (!token) return;
    void reset({ token, password }).then((r) => {
      // The server signed every session out, this browser's included.
      if (r.data?.resetPassword) setViewer(null);
    });
  };
  return (
    <section aria-labelledby="reset-title" className="narrow">
      <h1 id="reset-title">Set a new password</h1>
      {!token ? (
        <p role="alert" className="error">
          This link has no token. Ask for a new one from the sign-in page.
        </p>
      ) : done ? (
        <p role="status" className="ok">
          Your password is changed, and every session was signed out. <Link href="/signin">Sign in</Link> with
          the new password.
        </p>
      ) : (
        <form onSubmit={submit}>
          <Field
            label="New password"
            type="password"
            autoComplete="new-password"
            minLength={10}
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
          <button type="submit" disabled={result.fetching}>
            Save
          </button>
          <ProblemAlert problem={describe(result.error)} />
        </form>
      )}
    </section>
  );
}
