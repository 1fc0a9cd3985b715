import { useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import { Link, Redirect, useLocation, useSearch } from 'wouter';
import { Field, ProblemAlert } from '../components';
import { describe, describeReason } from '../errors';
import { graphql } from '../gql';
import { useSession } from '../session';

const LOGIN = graphql(`
  mutation Login($email: String!, $password: String!) {
    login(email: $email, password: $password) {
      user {
        id
        username
      }
    }
  }
`);

const REQUEST_CODE = graphql(`
  mutation RequestLoginCode($email: String!) {
    requestLoginCode(email: $email)
  }
`);

const LOGIN_WITH_CODE = graphql(`
  mutation LoginWithCode($email: String!, $code: String!) {
    loginWithCode(email: $email, code: $code) {
      user {
        id
        username
      }
    }
  }
`);

const REQUEST_RESET = graphql(`
  mutation RequestPasswordReset($email: String!) {
    requestPasswordReset(email: $email)
  }
`);

const REGISTER = graphql(`
  mutation Register($input: RegisterInput!) {
    register(input: $input) {
      user {
        id
        username
      }
    }
  }
`);

const PROVIDERS = graphql(`
  query Providers {
    authProviders {
      kind
      name
      loginUrl
    }
  }
`);

/** After a successful sign-in or registration: remember the viewer, go where asked. */
function useSignedIn() {
  const { setViewer } = useSession();
  const [, navigate] = useLocation();
  const next = useNext();
  return {
    next,
    done: (user: { id: string; username: string } | undefined) => {
      if (!user) return;
      setViewer({ id: user.id, username: user.username });
      navigate(next);
    },
  };
}

/** Where to go after signing in: `?next=` when it is a path here. */
function useNext(): string {
  const search = new URLSearchParams(useSearch());
  const next = search.get('next') ?? '/wallet';
  return next.startsWith('/') && !next.startsWith('//') ? next : '/wallet';
}

function Providers({ next }: { next: string }) {
  const [{ data }] = useQuery({ query: PROVIDERS });
  if (!data?.authProviders.length) return null;
  return (
    <div className="providers">
      {data.authProviders.map((p) => (
        // Back to this page either way: it goes on to `next` when signed in, and says what
        // went wrong when the provider round trip failed (`auth_error`).
        <a
          key={p.kind}
          className="button"
          href={`${p.loginUrl}?redirect_to=${encodeURIComponent(`/signin?next=${encodeURIComponent(next)}`)}`}
        >
          Continue with {p.name}
        </a>
      ))}
    </div>
  );
}

type Mode = 'password' | 'code' | 'forgot';

export function SignIn() {
  const { next, done: signedIn } = useSignedIn();
  const { viewer } = useSession();
  const authError = new URLSearchParams(useSearch()).get('auth_error');
  const [mode, setMode] = useState<Mode>('password');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [codeSent, setCodeSent] = useState(false);
  const [resetSent, setResetSent] = useState(false);
  const [result, login] = useMutation(LOGIN);
  const [requested, requestCode] = useMutation(REQUEST_CODE);
  const [coded, loginWithCode] = useMutation(LOGIN_WITH_CODE);
  const [reset, requestReset] = useMutation(REQUEST_RESET);
  const problem =
    describe(result.error ?? requested.error ?? coded.error ?? reset.error) ??
    (authError ? describeReason(authError) : undefined);
  const switchTo = (m: Mode) => {
    setMode(m);
    setCodeSent(false);
    setResetSent(false);
  };
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (mode === 'password') {
      signedIn((await login({ email, password })).data?.login.user);
    } else if (mode === 'code' && !codeSent) {
      if ((await requestCode({ email })).data) setCodeSent(true);
    } else if (mode === 'code') {
      signedIn((await loginWithCode({ email, code: code.trim() })).data?.loginWithCode.user);
    } else if ((await requestReset({ email })).data) {
      setResetSent(true);
    }
  };
  const busy = result.fetching || requested.fetching || coded.fetching || reset.fetching;
  // Back from a provider with the session cookies set (or simply signed in already).
  if (viewer && !authError) return <Redirect to={next} />;
  return (
    <section className="card narrow">
      <h1>{mode === 'forgot' ? 'Reset your password' : 'Sign in'}</h1>
      {mode !== 'forgot' && <Providers next={next} />}
      <form onSubmit={submit}>
        <Field label="Email" type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        {mode === 'password' && (
          <Field
            label="Password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        )}
        {mode === 'code' && codeSent && (
          <>
            <p role="status">If the address can receive mail, a six-digit code is on its way (valid 10 minutes).</p>
            <Field
              label="Code"
              inputMode="numeric"
              autoComplete="one-time-code"
              pattern="[0-9]{6}"
              required
              value={code}
              onChange={(e) => setCode(e.target.value)}
            />
          </>
        )}
        {mode === 'forgot' && resetSent && (
          <p role="status">If an account uses this address, a link to set a new password is on its way.</p>
        )}
        <ProblemAlert problem={problem} />
        <button type="submit" disabled={busy}>
          {mode === 'password'
            ? 'Sign in'
            : mode === 'forgot'
              ? 'Send the link'
              : codeSent
                ? 'Sign in with the code'
                : 'Email me a code'}
        </button>
      </form>
      <p className="actions">
        {mode !== 'password' && (
          <button type="button" className="link" onClick={() => switchTo('password')}>
            Use my password
          </button>
        )}
        {mode !== 'code' && (
          <button type="button" className="link" onClick={() => switchTo('code')}>
            Email me a sign-in code
          </button>
        )}
        {mode !== 'forgot' && (
          <button type="button" className="link" onClick={() => switchTo('forgot')}>
            Forgot your password?
          </button>
        )}
      </p>
      <p>
        New here? <Link href={`/register?next=${encodeURIComponent(next)}`}>Create an account</Link>
      </p>
    </section>
  );
}

export function Register() {
  const { next, done: signedIn } = useSignedIn();
  const [email, setEmail] = useState('');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [result, register] = useMutation(REGISTER);
  const problem = describe(result.error);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    signedIn((await register({ input: { email, username, password } })).data?.register.user);
  };
  return (
    <section className="card narrow">
      <h1>Create an account</h1>
      <form onSubmit={submit}>
        <Field label="Email" type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <Field label="Username" autoComplete="username" required value={username} onChange={(e) => setUsername(e.target.value)} />
        <Field
          label="Password"
          type="password"
          autoComplete="new-password"
          required
          minLength={10}
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        <ProblemAlert problem={problem} />
        <button type="submit" disabled={result.fetching}>
          Create account
        </button>
      </form>
      <p>
        Have an account? <Link href={`/signin?next=${encodeURIComponent(next)}`}>Sign in</Link>
      </p>
    </section>
  );
}
