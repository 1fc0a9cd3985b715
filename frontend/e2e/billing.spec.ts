import { expect, test } from '@playwright/test';
import { PASSWORD, admin, gql, unique } from './api';

test.beforeEach(async ({ page }) => {
  page.on('pageerror', (e) => {
    throw e;
  });
});

/** Two plans from the admin (synced to the local Stripe on creation). */
async function plans(request: Parameters<typeof admin>[0]) {
  const token = await admin(request);
  const basic = unique('Basic ');
  const pro = unique('Pro ');
  for (const [name, tier, cents, coins] of [
    [basic, 1, 1000, 500],
    [pro, 2, 3000, 2000],
  ] as const) {
    await gql(request, token, 'mutation($i: PlanInput!) { createPlan(input: $i) { id } }', {
      i: { name, tier, priceCents: cents, coinAllowance: coins, description: `${name} for tests` },
    });
  }
  return { basic, pro };
}

test('subscribe through Checkout, come back to the plan, upgrade with a preview, cancel and resume', async ({
  page,
  request,
}) => {
  const { basic, pro } = await plans(request);
  const name = unique('b');
  await gql(page.request, null, 'mutation($i: RegisterInput!) { register(input: $i) { user { id } } }', {
    i: { email: `${name}@example.com`, username: name, password: PASSWORD },
  });
  await page.goto('/plans');
  const card = page.getByTestId('plan').filter({ has: page.getByRole('heading', { name: basic }) });
  await expect(card).toContainText('500 coins');
  await card.getByRole('button', { name: 'Subscribe' }).click();
  // Stripe's hosted page (the local fake), then back through /billing/return.
  await expect(page).toHaveURL(/\/checkout\/cs_/);
  await page.getByRole('button', { name: /Pay/ }).click();
  await expect(page).toHaveURL(/\/plans\?checkout=success/);
  await expect(page.getByTestId('checkout-return')).toContainText('has started');
  await expect(page.getByTestId('subscription')).toContainText(basic);
  await expect(page.getByTestId('subscription-status')).toHaveText('active');
  // The allowance arrives with the paid invoice's webhook.
  await expect(page.getByTestId('payment-row')).toHaveCount(1, { timeout: 10_000 });

  const proCard = page.getByTestId('plan').filter({ has: page.getByRole('heading', { name: pro }) });
  await proCard.getByRole('button', { name: `Change to ${pro}` }).click();
  await expect(page.getByTestId('due-now')).not.toHaveText(/^\D*0[.,]00/);
  await page.getByRole('button', { name: 'Confirm change' }).click();
  await expect(page.getByTestId('subscription')).toContainText(pro);
  await expect(page.getByTestId('payment-row')).toHaveCount(2, { timeout: 10_000 });

  await page.getByRole('button', { name: 'Cancel at period end' }).click();
  await expect(page.getByTestId('subscription')).toContainText('ends on');
  await page.getByRole('button', { name: 'Resume' }).click();
  await expect(page.getByTestId('subscription')).toContainText('renews on');
  await page.screenshot({ path: test.info().outputPath('plans.png'), fullPage: true });

  await page.getByRole('button', { name: 'Cards and invoices' }).click();
  await expect(page).toHaveURL(/\/portal\/bps_/);
});

test('a canceled Checkout says so and charges nothing', async ({ page, request }) => {
  const { basic } = await plans(request);
  const name = unique('c');
  await gql(page.request, null, 'mutation($i: RegisterInput!) { register(input: $i) { user { id } } }', {
    i: { email: `${name}@example.com`, username: name, password: PASSWORD },
  });
  await page.goto('/plans');
  const card = page.getByTestId('plan').filter({ has: page.getByRole('heading', { name: basic }) });
  await card.getByRole('button', { name: 'Subscribe' }).click();
  await expect(page).toHaveURL(/\/checkout\/cs_/);
  await page.getByRole('link', { name: /Cancel/ }).click();
  await expect(page).toHaveURL(/\/plans\?checkout=canceled/);
  await expect(page.getByTestId('checkout-return')).toContainText('nothing was charged');
  await expect(page.getByTestId('subscription')).toHaveCount(0);
});
