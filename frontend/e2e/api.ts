import type { APIRequestContext } from '@playwright/test';

export const PASSWORD = 'plum-orbit-cascade-91';

export function unique(prefix: string) {
  return `${prefix}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** A GraphQL call for test setup (admin actions), with a bearer token. */
export async function gql(request: APIRequestContext, token: string | null, query: string, variables = {}) {
  const response = await request.post('/graphql', {
    data: { query, variables },
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const body = await response.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

/** The test admin (ADMIN_EMAILS in server.sh), signed in over the API. */
export async function admin(request: APIRequestContext): Promise<string> {
  const email = 'e2e-admin@example.com';
  const login = await request.post('/graphql', {
    data: {
      query: 'mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }',
      variables: { e: email, p: PASSWORD },
    },
  });
  const body = await login.json();
  if (!body.errors) return body.data.login.accessToken;
  const data = await gql(
    request,
    null,
    'mutation($i: RegisterInput!) { register(input: $i) { accessToken } }',
    { i: { email, username: 'e2eadmin', password: PASSWORD } },
  );
  return data.register.accessToken;
}
