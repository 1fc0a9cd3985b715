import { expect, type APIRequestContext, type Page } from '@playwright/test';

export const PASSWORD = 'plum-orbit-cascade-91';

export function unique(prefix: string) {
  return `${prefix}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** A new account made through the register page of the server at `base`, landing on
 * Earn (page errors fail the test). */
export async function signUpToEarn(page: Page, base: string, prefix: string) {
  page.on('pageerror', (e) => {
    throw e;
  });
  const name = unique(prefix);
  await page.goto(`${base}/register?next=%2Fearn`);
  await page.getByLabel('Email').fill(`${name}@example.com`);
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('heading', { name: 'Earn coins' })).toBeVisible();
  return name;
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

/** The test admin (ADMIN_EMAILS in server.sh), signed in over the API. Its token is kept
 * for 20 s (access tokens last 30 s in server.sh): sign-ins are rate limited per address. */
let adminToken: { token: string; at: number } | null = null;

export async function admin(request: APIRequestContext): Promise<string> {
  if (adminToken && Date.now() - adminToken.at < 20_000) return adminToken.token;
  const email = 'e2e-admin@example.com';
  const login = await request.post('/graphql', {
    data: {
      query: 'mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }',
      variables: { e: email, p: PASSWORD },
    },
  });
  const body = await login.json();
  let token: string;
  if (!body.errors) {
    token = body.data.login.accessToken;
  } else if (body.errors[0]?.extensions?.reason === 'invalid_credentials') {
    // No admin yet on this server: the first call makes it.
    const data = await gql(request, null, 'mutation($i: RegisterInput!) { register(input: $i) { accessToken } }', {
      i: { email, username: 'e2eadmin', password: PASSWORD },
    });
    token = data.register.accessToken;
  } else {
    throw new Error(`the admin cannot sign in: ${JSON.stringify(body.errors)}`);
  }
  adminToken = { token, at: Date.now() };
  return token;
}

/** A new account, registered through `request`: a page's own request context (`page.request`)
 * signs that page in with the cookies it gets. */
export async function register(request: APIRequestContext, prefix = 'u') {
  const name = unique(prefix);
  const email = `${name}@example.com`;
  const data = await gql(request, null, 'mutation($i: RegisterInput!) { register(input: $i) { user { id } } }', {
    i: { email, username: name, password: PASSWORD },
  });
  return { id: data.register.user.id as string, name, email };
}

/** Coins for `userId`, granted by the admin (signed in through `request`, never a page's). */
export async function grantCoins(request: APIRequestContext, userId: string, amount: number, reason = 'e2e') {
  const token = await admin(request);
  await gql(request, token, 'mutation($u: ID!, $a: Int!, $r: String!) { grantCoins(userId: $u, amount: $a, reason: $r) { id } }', {
    u: userId,
    a: amount,
    r: reason,
  });
}

/** A VPS product from the admin, named `prefix` plus something unique. */
export async function createProduct(request: APIRequestContext, prefix: string, pricePerHour: number, description?: string) {
  const token = await admin(request);
  const name = unique(prefix);
  const data = await gql(request, token, 'mutation($i: VpsProductInput!) { createVpsProduct(input: $i) { id } }', {
    i: { name, description, vcpu: 1, memoryMb: 1024, diskGb: 20, region: 'test-1', pricePerHour },
  });
  return { id: data.createVpsProduct.id as string, name };
}
