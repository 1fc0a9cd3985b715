import { expect, test } from '@playwright/test';
import { PASSWORD, unique } from './api';
import { startServer } from './spawn';

// A second server with nothing optional configured: no sign-in providers, no Stripe, no
// ad network (and no dev ad fakes).
const PORT = Number(process.env.E2E_PORT ?? 18480) + 20;
let server: Awaited<ReturnType<typeof startServer>> | undefined;
let BASE = '';

test.beforeAll(async () => {
  server = await startServer(PORT, { ADS_DEV_FAKES: 'false' });
  BASE = server.base;
});

test.afterAll(() => server?.stop());

test('what a server does not offer is hidden or said to be unavailable', async ({ page }) => {
  page.on('pageerror', (e) => {
    throw e;
  });
  await page.goto(`${BASE}/signin`);
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  // No providers configured: no buttons for them.
  await expect(page.getByRole('link', { name: /Continue with/ })).toHaveCount(0);
  const name = unique('bare');
  await page.goto(`${BASE}/register`);
  await page.getByLabel('Email').fill(`${name}@example.com`);
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(`${BASE}/wallet`);
  await page.goto(`${BASE}/plans`);
  await expect(page.getByTestId('billing-unavailable')).toHaveText('Billing is unavailable on this server.');
  await expect(page.getByRole('button', { name: 'Subscribe' })).toHaveCount(0);
  await page.goto(`${BASE}/earn`);
  await expect(page.getByText('No ad provider is configured on this server.')).toBeVisible();
  await expect(page.getByRole('button', { name: /Watch/ })).toHaveCount(0);
});
