import { expect, test, type APIRequestContext, type Page } from '@playwright/test';
import { PASSWORD, admin, gql, unique } from './api';

test.beforeEach(async ({ page }) => {
  page.on('pageerror', (e) => {
    throw e;
  });
});

/** Registers through the page's own context (its cookies sign the page in) and gives the
 * account `coins` from the admin, who signs in through a separate context. */
async function userWithCoins(page: Page, request: APIRequestContext, coins: number) {
  const name = unique('v');
  const data = await gql(
    page.request,
    null,
    'mutation($i: RegisterInput!) { register(input: $i) { user { id } } }',
    { i: { email: `${name}@example.com`, username: name, password: PASSWORD } },
  );
  const token = await admin(request);
  await gql(request, token, 'mutation($u: ID!, $a: Int!) { grantCoins(userId: $u, amount: $a, reason: "e2e") { id } }', {
    u: data.register.user.id,
    a: coins,
  });
  return token;
}

test('a VPS session checklist fills in live, shows how to connect, and stops', async ({ page, request }) => {
  const adminToken = await userWithCoins(page, request, 100);
  const product = unique('Small ');
  await gql(
    request,
    adminToken,
    'mutation($i: VpsProductInput!) { createVpsProduct(input: $i) { id } }',
    { i: { name: product, vcpu: 1, memoryMb: 1024, diskGb: 20, region: 'test-1', pricePerHour: 7 } },
  );
  await page.goto('/vps');
  const card = page.locator('form', { has: page.getByRole('heading', { name: product }) });
  await card.getByLabel('Hours').fill('3');
  await expect(card).toContainText('Cost 21 coins');
  await card.getByRole('button', { name: 'Start' }).click();
  await expect(page).toHaveURL(/\/vps\/sessions\//);
  await expect(page.getByTestId('step')).toHaveCount(7);
  // Steps turn done one after another as the worker reports them.
  await expect(page.getByTestId('vps-status')).toHaveText('running', { timeout: 20_000 });
  await expect(page.locator('[data-testid="step"][data-status="done"]')).toHaveCount(7);
  await expect(page.getByTestId('connection')).toContainText('ssh ');
  await page.screenshot({ path: test.info().outputPath('vps.png'), fullPage: true });
  await page.getByRole('button', { name: 'Stop' }).click();
  await expect(page.getByTestId('vps-status')).toHaveText(/stopping|stopped/, { timeout: 10_000 });
  await page.getByRole('link', { name: 'Wallet' }).click();
  // 21 paid, the unused whole hours (2) refunded: 100 − 21 + 14.
  await expect(page.getByTestId('balance')).toHaveText('93', { timeout: 10_000 });
});

test('an access token is shown once, listed, and revoked', async ({ page, request }) => {
  await userWithCoins(page, request, 50);
  await page.goto('/tokens');
  await page.getByLabel('Duration').selectOption('1');
  await page.getByLabel('Name (optional)').fill('laptop');
  await page.getByRole('button', { name: 'Buy' }).click();
  await expect(page.getByTestId('new-token')).toHaveText(/^tsr_at_/);
  await page.getByRole('button', { name: 'I have saved it' }).click();
  await expect(page.getByTestId('new-token')).toHaveCount(0);
  const row = page.getByTestId('token-row').filter({ hasText: 'laptop' });
  await expect(row).toContainText('active');
  await expect(row).toContainText(/min left/);
  await row.getByRole('button', { name: 'Revoke' }).click();
  await expect(row).toContainText('revoked');
  await page.getByRole('link', { name: 'Wallet' }).click();
  await expect(page.getByTestId('balance')).toHaveText('40');
});

test('another device is listed and signed out from the account page', async ({ page, browser }) => {
  const name = unique('s');
  await page.goto('/register');
  await page.getByLabel('Email').fill(`${name}@example.com`);
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('heading', { name: 'Wallet' })).toBeVisible();

  const other = await browser.newContext({ userAgent: 'OtherDevice/1.0' });
  const second = await other.newPage();
  await second.goto('/signin');
  await second.getByLabel('Email').fill(`${name}@example.com`);
  await second.getByLabel('Password').fill(PASSWORD);
  await second.getByRole('button', { name: 'Sign in' }).click();
  await expect(second.getByRole('heading', { name: 'Wallet' })).toBeVisible();

  await page.getByRole('link', { name: 'Account' }).click();
  await expect(page.getByTestId('session-row')).toHaveCount(2);
  const row = page.getByTestId('session-row').filter({ hasText: 'OtherDevice/1.0' });
  await row.getByRole('button', { name: 'Sign out there' }).click();
  await expect(page.getByTestId('session-row')).toHaveCount(1);
  // The other device is signed out: its next page load asks it to sign in.
  await second.goto('/wallet');
  await expect(second).toHaveURL(/\/signin/, { timeout: 20_000 });
  await other.close();
});
