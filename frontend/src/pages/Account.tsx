import { useMutation, useQuery } from 'urql';
import { ProblemAlert } from '../components';
import { describe } from '../errors';
import { dateTime } from '../format';
import { graphql } from '../gql';

const SESSIONS = graphql(`
  query MySessions {
    me {
      id
      email
      emailVerified
      sessions {
        id
        userAgent
        ip
        lastUsedAt
        current
      }
    }
  }
`);

const REVOKE = graphql(`
  mutation RevokeSession($id: ID!) {
    revokeSession(id: $id)
  }
`);

/** The signed-in devices, each revocable (this one signs out from the header). */
export function AccountPage() {
  const [{ data, error }, refresh] = useQuery({ query: SESSIONS, requestPolicy: 'cache-and-network' });
  const [revoked, revoke] = useMutation(REVOKE);
  const me = data?.me;
  return (
    <section>
      <h1>Account</h1>
      <ProblemAlert problem={describe(error ?? revoked.error)} />
      {me && (
        <p>
          {me.email} · {me.emailVerified ? 'verified' : 'not verified yet'}
        </p>
      )}
      <h2>Signed-in devices</h2>
      <table className="history">
        <thead>
          <tr>
            <th scope="col">Device</th>
            <th scope="col">Address</th>
            <th scope="col">Last used</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {me?.sessions.map((s) => (
            <tr key={s.id} data-testid="session-row">
              <td>
                {s.userAgent ?? 'Unknown device'}
                {s.current && <strong> (this device)</strong>}
              </td>
              <td>{s.ip ?? '—'}</td>
              <td>{dateTime(s.lastUsedAt)}</td>
              <td>
                {!s.current && (
                  <button
                    type="button"
                    onClick={() => void revoke({ id: s.id }).then(() => refresh({ requestPolicy: 'network-only' }))}
                  >
                    Sign out there
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
