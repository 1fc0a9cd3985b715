import { expect, test } from '@playwright/test';
import { signUpToEarn } from './api';
import { startFake, startServer } from './spawn';

// A server whose GMA ads come from an ad tag (not the dev player): the page plays it with
// the IMA SDK, here the stand-in the Google fake serves along with the ad server (VAST)
// and SSV keys. When the ad completes, the fake's ad server calls our /ads/ssv, signed.
const PORT = Number(process.env.E2E_PORT ?? 18480) + 22;
const GOOGLE = PORT + 1;
const UNIT = '/21775744923/tessera/rewarded';
let server: Awaited<ReturnType<typeof startServer>> | undefined;
let google: Awaited<ReturnType<typeof startFake>> | undefined;

test.beforeAll(async () => {
  google = await startFake('google-ssv', [
    '--listen',
    `127.0.0.1:${GOOGLE}`,
    '--ssv-url',
    `http://127.0.0.1:${PORT}/ads/ssv`,
    '--ad-seconds',
    '2',
  ]);
  const tag = new URL(`http://127.0.0.1:${GOOGLE}/gampad/ads`);
  tag.search = new URLSearchParams({ iu: UNIT, sz: '640x360', output: 'vast', env: 'vp', gdfp_req: '1' }).toString();
  server = await startServer(PORT, {
    ENABLE_MONETAG: 'false',
    AD_TAG_BASE: tag.toString(),
    IMA_SDK_URL: `http://127.0.0.1:${GOOGLE}/js/sdkloader/ima3.js`,
    ADS_SSV_KEYS_URL: `http://127.0.0.1:${GOOGLE}/admob/reward/verifier-keys.json`,
    ADS_SSV_AD_UNITS: UNIT,
    MIN_INTERVAL: '0',
  });
});

test.afterAll(() => {
  server?.stop();
  google?.stop();
});

test('a video ad from an ad tag plays through the IMA SDK and its reward arrives by SSV', async ({ page }) => {
  const violations: string[] = [];
  // The SDK, the ad tag and its pixels must all be allowed by the page's policy.
  page.on('console', (m) => {
    if (m.text().includes('Content Security Policy')) violations.push(m.text());
  });
  await signUpToEarn(page, server!.base, 'ima');
  await expect(page.getByRole('button', { name: 'Watch an ad' })).toHaveCount(0);

  await page.getByRole('button', { name: 'Watch a video ad' }).click();
  const player = page.getByRole('region', { name: 'Video ad' });
  await expect(player.getByTestId('ima-ad')).toContainText('Advertisement');
  await expect(page.getByRole('button', { name: 'Watch a video ad' })).toBeDisabled();
  await expect(page.getByTestId('ad-result')).toHaveText('The ad has played.', { timeout: 15_000 });
  await expect(player).toHaveCount(0);
  await expect(page.getByTestId('today')).toHaveText('1');
  await page.getByRole('link', { name: 'Wallet' }).click();
  await expect(page.getByTestId('balance')).toHaveText('5');
  await expect(page.getByTestId('transfer').first()).toContainText('ad reward');
  expect(violations).toEqual([]);
});

test('an ad tag with no ad says so and credits nothing', async ({ page }) => {
  await signUpToEarn(page, server!.base, 'noad');
  // The ad server has nothing for the next request (an unfilled slot: empty VAST).
  expect((await fetch(`http://127.0.0.1:${GOOGLE}/_control/unfilled`, { method: 'POST' })).ok).toBe(true);
  await page.getByRole('button', { name: 'Watch a video ad' }).click();
  await expect(page.getByRole('alert')).toContainText('The video ad could not be shown');
  await expect(page.getByRole('button', { name: 'Watch a video ad' })).toBeEnabled();
  await expect(page.getByTestId('today')).toHaveText('0');
});
