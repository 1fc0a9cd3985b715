import { expect, test, type Page } from '@playwright/test';
import { admin, createProduct, gql, grantCoins, register, unique } from './api';

// Every page at a desktop and a phone size, into e2e/screenshots/ (not kept in git; a chosen
// few are copied to docs/screenshots/ by hand). Each page is also checked to have drawn.
const SIZES = [
  { name: 'desktop', width: 1280, height: 800 },
  { name: 'phone', width: 390, height: 844 },
];

async function shoot(page: Page, name: string) {
  for (const size of SIZES) {
    await page.setViewportSize({ width: size.width, height: size.height });
    await page.screenshot({ path: `e2e/screenshots/${name}-${size.name}.png`, fullPage: true });
  }
}

test('every page, at both sizes', async ({ page, request }) => {
  test.setTimeout(90_000);
  page.on('pageerror', (e) => {
    throw e;
  });
  await page.goto('/signin');
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await shoot(page, 'signin');
  await page.goto('/register');
  await expect(page.getByRole('button', { name: 'Create account' })).toBeVisible();
  await shoot(page, 'register');
  await page.goto('/reset-password?token=tsr_pr_example');
  await expect(page.getByLabel('New password', { exact: true })).toBeVisible();
  await shoot(page, 'reset-password');

  // A signed-in account with some history: coins granted, a product to start.
  const me = await register(page.request, 'shot');
  await grantCoins(request, me.id, 250, 'welcome');
  const { name: product } = await createProduct(request, 'Standard ', 6, '2 vCPU, 2 GiB, 40 GB');
  await page.goto('/wallet');
  await expect(page.getByTestId('balance')).toHaveText('250');
  await shoot(page, 'wallet');
  await page.goto('/earn');
  await expect(page.getByRole('heading', { name: 'Earn coins' })).toBeVisible();
  await shoot(page, 'earn');
  await page.goto('/tokens');
  await expect(page.getByRole('heading', { name: 'Access tokens' })).toBeVisible();
  await shoot(page, 'tokens');
  const plan = unique('Starter ');
  await gql(request, await admin(request), 'mutation($i: PlanInput!) { createPlan(input: $i) { id } }', {
    i: { name: plan, tier: 1, priceCents: 900, coinAllowance: 400, description: '400 coins a month' },
  });
  await page.goto('/plans');
  await expect(page.getByTestId('plan').filter({ hasText: plan })).toBeVisible();
  await shoot(page, 'plans');
  await page.goto('/account');
  await expect(page.getByText(me.email)).toBeVisible();
  await shoot(page, 'account');
  await page.goto('/vps');
  const card = page.locator('form', { has: page.getByRole('heading', { name: product }) });
  await card.getByLabel('Hours').fill('2');
  await shoot(page, 'vps');
  await card.getByRole('button', { name: 'Start' }).click();
  await expect(page.getByTestId('vps-status')).toHaveText('running', { timeout: 20_000 });
  await shoot(page, 'vps-session');
  await page.goto('/no/such/page');
  await expect(page.getByText('Page not found.')).toBeVisible();
  await shoot(page, 'not-found');
});
