import { expect, test } from '@playwright/test';
import { signUpToEarn } from './api';
import { startServer } from './spawn';

// A server with the ad limits in reach: one ad a day, a minute between ads.
const PORT = Number(process.env.E2E_PORT ?? 18480) + 21;
let server: Awaited<ReturnType<typeof startServer>> | undefined;

test.beforeAll(async () => {
  server = await startServer(PORT, {
    ADS_DEV_FAKES: 'true',
    ADS_DEV_AD_SECONDS: '1',
    REQUIRED_DURATION: '1',
    MIN_INTERVAL: '60',
    DAILY_CAP_USER: '1',
  });
});

test.afterAll(() => server?.stop());

test('after an ad the cooldown counts down, and the daily cap stops the next', async ({ page }) => {
  await signUpToEarn(page, server!.base, 'cap');
  await expect(page.getByText('of 1.')).toBeVisible();
  await page.getByRole('button', { name: 'Watch an ad' }).click();
  await expect(page.getByTestId('ad-result')).toHaveText(/^\+\d+ coins$/, { timeout: 15_000 });
  await expect(page.getByTestId('today')).toHaveText('1');
  // A minute to wait, counting down; nothing can start meanwhile, nor after (cap of 1).
  const left = Number(await page.getByTestId('countdown').textContent());
  expect(left).toBeGreaterThan(50);
  expect(left).toBeLessThanOrEqual(60);
  await expect.poll(async () => Number(await page.getByTestId('countdown').textContent())).toBeLessThan(left);
  for (const provider of ['Watch an ad', 'Watch a video ad']) {
    await expect(page.getByRole('button', { name: provider })).toBeDisabled();
  }
  // Reloaded, the server still says so.
  await page.reload();
  await expect(page.getByTestId('today')).toHaveText('1');
  await expect(page.getByRole('button', { name: 'Watch an ad' })).toBeDisabled();
});
