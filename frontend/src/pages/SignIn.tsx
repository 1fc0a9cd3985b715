import { useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import { Link, useLocation, useSearch } from 'wouter';
import { Field, ProblemAlert } from '../components';
import { describe } from '../errors';
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
        <a key={p.kind} className="button" href={`${p.loginUrl}?redirect_to=${encodeURIComponent(next)}`}>
          Continue with {p.name}
        </a>
      ))}
    </div>
  );
}

export function SignIn() {
  const { next, done: signedIn } = useSignedIn();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [result, login] = useMutation(LOGIN);
  const problem = describe(result.error);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    signedIn((await login({ email, password })).data?.login.user);
  };
  return (
    <section className="card narrow">
      <h1>Sign in</h1>
      <Providers next={next} />
      <form onSubmit={submit}>
        <Field label="Email" type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <Field
          label="Password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        <ProblemAlert problem={problem} />
        <button type="submit" disabled={result.fetching}>
          Sign in
        </button>
      </form>
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
