import { expect, test } from '@playwright/test';
import { createProduct, gql, grantCoins, register } from './api';

test.beforeEach(async ({ page }) => {
  page.on('pageerror', (e) => {
    throw e;
  });
});

test('too few coins: the cost says how many are missing and nothing can be bought', async ({ page, request }) => {
  const me = await register(page.request, 'poor');
  await grantCoins(request, me.id, 10);
  const { name: product } = await createProduct(request, 'Pricey ', 4);
  await page.goto('/vps');
  const card = page.locator('form', { has: page.getByRole('heading', { name: product }) });
  await expect(card.getByRole('button', { name: 'Start' })).toBeEnabled();
  await card.getByLabel('Hours').fill('3');
  await expect(card).toContainText('2 coins missing.');
  await expect(card.getByRole('button', { name: 'Start' })).toBeDisabled();
  await page.getByRole('link', { name: 'Wallet' }).click();
  await expect(page.getByTestId('balance')).toHaveText('10');
});

test("another user's session in the address is a not-found page", async ({ page, browser, request }) => {
  // Someone else starts a session.
  const other = await browser.newContext();
  const theirs = await other.newPage();
  const owner = await register(theirs.request, 'own');
  await grantCoins(request, owner.id, 50);
  const product = await createProduct(request, 'Theirs ', 1);
  const started = await gql(
    theirs.request,
    null,
    'mutation($p: ID!) { startVpsSession(input: { productId: $p, hours: 1 }) { id } }',
    { p: product.id },
  );
  const id = started.startVpsSession.id as string;
  await other.close();

  await register(page.request, 'nosy');
  for (const path of [`/vps/sessions/${id}`, '/vps/sessions/00000000-0000-7000-8000-000000000000']) {
    await page.goto(path);
    await expect(page.getByRole('heading', { name: 'Not found' })).toBeVisible();
    await expect(page.getByRole('alert')).toHaveText('There is no server session here, or it is not yours.');
    await expect(page.getByTestId('step')).toHaveCount(0);
  }
  await page.getByRole('link', { name: 'Back to servers' }).click();
  await expect(page.getByRole('heading', { name: 'Virtual servers' })).toBeVisible();
});
