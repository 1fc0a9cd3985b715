import { expect, test, type Browser } from '@playwright/test';
import { PASSWORD, gql, grantCoins, unique } from './api';

test.beforeEach(async ({ page }) => {
  page.on('pageerror', (e) => {
    throw e;
  });
});

/** A new browser with an account signed in through the page; the GraphQL operations it sends
 * are counted by name. */
async function signedIn(browser: Browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const name = unique('r');
  const sent: string[] = [];
  page.on('request', (r) => {
    if (r.url().endsWith('/graphql') && r.method() === 'POST') sent.push(r.postData() ?? '');
  });
  await page.goto('/register');
  await page.getByLabel('Email').fill(`${name}@example.com`);
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByTestId('balance')).toHaveText('0');
  const me = await gql(page.request, null, '{ me { id } }');
  return { context, page, sent, userId: me.me.id as string, refreshes: () => sent.filter((b) => b.includes('refreshSession')).length };
}

test('an expired access token is refreshed once, over HTTP and on the live link, and the page goes on', async ({
  browser,
  request,
}) => {
  test.setTimeout(90_000);
  const http = await signedIn(browser);
  const live = await signedIn(browser);
  // The live one's socket goes through here, so it can be closed once the token expired.
  const closes: { code: number | undefined; reason: string | undefined }[] = [];
  const socket: { close?: () => Promise<void> } = {};
  await live.page.routeWebSocket(/\/graphql\/ws$/, (ws) => {
    const server = ws.connectToServer();
    server.onClose((code, reason) => {
      closes.push({ code, reason });
      void ws.close({ code, reason });
    });
    socket.close = () => ws.close({ code: 1012, reason: 'restarting' });
  });
  await live.page.reload();
  await expect(live.page.getByTestId('balance')).toHaveText('0');
  expect(http.refreshes() + live.refreshes()).toBe(0);

  // Past the access token's 30 s (server.sh).
  await new Promise((r) => setTimeout(r, 31_000));

  // HTTP: the next query finds the token expired, refreshes once, and is answered.
  await http.page.getByRole('link', { name: 'Earn' }).click();
  await expect(http.page.getByRole('heading', { name: 'Earn coins' })).toBeVisible();
  await http.page.getByRole('link', { name: 'Wallet' }).click();
  await expect(http.page.getByTestId('balance')).toHaveText('0');
  expect(http.refreshes()).toBe(1);
  await expect(http.page).toHaveURL(/\/wallet$/);

  // The live link drops; reconnecting with the expired cookie is refused (4403
  // token_expired), the page refreshes once and connects again: live updates go on.
  await socket.close?.();
  await expect.poll(() => closes.some((c) => c.code === 4403 && c.reason?.includes('token_expired'))).toBe(true);
  await expect.poll(() => live.refreshes()).toBe(1);
  await grantCoins(request, live.userId, 12);
  await expect(live.page.getByTestId('balance')).toHaveText('12', { timeout: 10_000 });
  await expect(live.page).toHaveURL(/\/wallet$/);
  expect(live.refreshes()).toBe(1);
  await http.context.close();
  await live.context.close();
});
