import { expect, test, type APIRequestContext } from '@playwright/test';
import { PASSWORD, gql, unique } from './api';

test.beforeEach(async ({ page }) => {
  page.on('pageerror', (e) => {
    throw e;
  });
});

// The SMTP fake's inbox (server.sh: the server's port + 3).
const INBOX = `http://127.0.0.1:${Number(process.env.E2E_PORT ?? 18480) + 3}/messages`;

/** The text of the newest mail to `to` that matches `pattern`, waiting for it. */
async function mailTo(request: APIRequestContext, to: string, pattern: RegExp): Promise<RegExpMatchArray> {
  for (let i = 0; i < 50; i++) {
    const all: { to: string[]; text: string }[] = await (await request.get(INBOX)).json();
    const found = all
      .filter((m) => m.to.includes(to))
      .map((m) => m.text.match(pattern))
      .filter((m): m is RegExpMatchArray => m !== null)
      .pop();
    if (found) return found;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no mail to ${to} matching ${pattern}`);
}

test('a one-time code signs in (and opens an account for a new address)', async ({ page, request }) => {
  const email = `${unique('code')}@example.com`;
  await page.goto('/wallet');
  await expect(page).toHaveURL(/\/signin\?next=%2Fwallet/);
  await page.getByRole('button', { name: 'Email me a sign-in code' }).click();
  await page.getByLabel('Email').fill(email);
  await page.getByRole('button', { name: 'Email me a code' }).click();
  await expect(page.getByRole('status')).toContainText('six-digit code');
  // A wrong code is refused in words, and nothing signs in.
  await page.getByLabel('Code').fill('000000');
  await page.getByRole('button', { name: 'Sign in with the code' }).click();
  await expect(page.getByRole('alert')).toBeVisible();
  const [, code] = await mailTo(request, email, /sign-in code is (\d{6})/);
  await page.getByLabel('Code').fill(code);
  await page.getByRole('button', { name: 'Sign in with the code' }).click();
  await expect(page).toHaveURL(/\/wallet$/);
  await expect(page.getByTestId('balance')).toHaveText('0');
});

test('a forgotten password is reset from the mailed link', async ({ page, request }) => {
  const name = unique('f');
  const email = `${name}@example.com`;
  await gql(request, null, 'mutation($i: RegisterInput!) { register(input: $i) { user { id } } }', {
    i: { email, username: name, password: PASSWORD },
  });
  await page.goto('/signin');
  await page.getByRole('button', { name: 'Forgot your password?' }).click();
  await page.getByLabel('Email').fill(email);
  await page.getByRole('button', { name: 'Send the link' }).click();
  await expect(page.getByRole('status')).toContainText('a link to set a new password');
  const [link] = await mailTo(request, email, /http:\/\/\S+\/reset-password\?token=\S+/);
  await page.goto(link);
  // The app's own page (its header is there), and the token has left the address bar.
  await expect(page.getByRole('heading', { name: 'Set a new password' })).toBeVisible();
  await expect(page.getByRole('link', { name: 'Tessera' })).toBeVisible();
  await expect(page).toHaveURL(/\/reset-password$/);
  const fresh = 'lantern-quiet-harbor-42';
  await page.getByLabel('New password', { exact: true }).fill(fresh);
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('status')).toContainText('Your password is changed');
  await page.goto('/signin');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toContainText('do not match');
  await page.getByLabel('Password').fill(fresh);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(/\/wallet$/);
});

test('the mailed link verifies the address; a used or bogus link is refused in words', async ({ page, request }) => {
  const name = unique('v');
  const email = `${name}@example.com`;
  await page.goto('/register');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(/\/wallet$/);
  await page.goto('/account');
  await expect(page.getByText('not verified yet')).toBeVisible();
  const [link] = await mailTo(request, email, /http:\/\/\S+\/verify-email\?token=\S+/);
  await page.goto(link);
  await expect(page.getByRole('status')).toHaveText('Your email address is verified.');
  await expect(page).toHaveURL(/\/verify-email$/);
  await page.getByRole('link', { name: 'Go to your account' }).click();
  await expect(page.getByText(`${email} · verified`)).toBeVisible();
  // The same link again, and one that was never issued: refused, said in words.
  for (const url of [link, '/verify-email?token=tsr_ev_bogus']) {
    await page.goto(url);
    await expect(page.getByRole('alert')).toContainText('invalid or has expired');
  }
  await page.goto('/verify-email');
  await expect(page.getByRole('alert')).toContainText('This link has no token');
});

const PORT = Number(process.env.E2E_PORT ?? 18480);
// The sign-in fakes (server.sh: the server's port + 4, 5, 6).
const PROVIDERS = [
  { name: 'Google', base: `http://127.0.0.1:${PORT + 4}` },
  { name: 'Discord', base: `http://127.0.0.1:${PORT + 5}` },
  { name: 'GitHub', base: `http://127.0.0.1:${PORT + 6}` },
];

test('each provider signs in through its round trip and returns to the page asked for', async ({ page, request }) => {
  for (const { name, base } of PROVIDERS) {
    const who = unique(name.toLowerCase());
    // The account the provider's consent screen approves as.
    const set = await request.post(`${base}/_control/user`, {
      data: { subject: who, email: `${who}@example.com`, email_verified: true, username: who, name: who },
    });
    expect(set.status()).toBe(204);
    await page.context().clearCookies();
    await page.goto('/earn');
    await expect(page).toHaveURL(/\/signin\?next=%2Fearn/);
    await page.getByRole('link', { name: `Continue with ${name}` }).click();
    await expect(page).toHaveURL(/\/earn$/);
    await expect(page.getByRole('button', { name: 'Sign out' })).toBeVisible();
    await page.goto('/account');
    await expect(page.getByText(`${who}@example.com`)).toBeVisible();
  }
});

test('a sign-in refused at the provider comes back to the sign-in page, said in words', async ({ page, request }) => {
  const google = PROVIDERS[0].base;
  expect((await request.post(`${google}/_control/deny`)).status()).toBe(204);
  await page.goto('/signin');
  await page.getByRole('link', { name: 'Continue with Google' }).click();
  await expect(page).toHaveURL(/\/signin\?.*auth_error=access_denied/);
  await expect(page.getByRole('alert')).toHaveText('The sign-in was cancelled at the provider.');
  await expect(page.getByRole('button', { name: 'Sign out' })).toHaveCount(0);
});

test('too many wrong passwords: refused in words with a countdown that runs', async ({ page, request }) => {
  const name = unique('limit');
  await gql(request, null, 'mutation($i: RegisterInput!) { register(input: $i) { user { id } } }', {
    i: { email: `${name}@example.com`, username: name, password: PASSWORD },
  });
  await page.goto('/signin');
  await page.getByLabel('Email').fill(`${name}@example.com`);
  // Five a minute per address (the server's default): the sixth is refused.
  for (let i = 0; i < 5; i++) {
    await page.getByLabel('Password').fill(`wrong-password-${i}`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert')).toHaveText('That email and password do not match.');
  }
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('Too many attempts');
  await expect(alert).toContainText(/Try again in \d+ s\./);
  const first = Number(await page.getByTestId('countdown').textContent());
  expect(first).toBeGreaterThan(1);
  await expect.poll(async () => Number(await page.getByTestId('countdown').textContent())).toBeLessThan(first);
  // Even the right password waits: still signed out.
  await expect(page.getByRole('button', { name: 'Sign out' })).toHaveCount(0);
});
