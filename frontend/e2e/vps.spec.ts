import { expect, test, type APIRequestContext, type Page } from '@playwright/test';
import { PASSWORD, createProduct, grantCoins, register, unique } from './api';

test.beforeEach(async ({ page }) => {
  page.on('pageerror', (e) => {
    throw e;
  });
});

/** Registers through the page's own context (its cookies sign the page in) and gives the
 * account `coins` from the admin, who signs in through a separate context. */
async function userWithCoins(page: Page, request: APIRequestContext, coins: number) {
  const me = await register(page.request, 'v');
  await grantCoins(request, me.id, coins);
}

test('a VPS session checklist fills in live, shows how to connect, and stops', async ({ page, request }) => {
  await userWithCoins(page, request, 100);
  const { name: product } = await createProduct(request, 'Small ', 7);
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
  // Leaving while it is on screen asks first.
  const asked = new Promise<string>((resolve) =>
    page.once('dialog', (d) => {
      resolve(d.type());
      void d.dismiss();
    }),
  );
  await page.close({ runBeforeUnload: true });
  expect(await asked).toBe('beforeunload');
  await expect(page.getByTestId('new-token')).toBeVisible();
  await page.getByRole('button', { name: 'I have saved it' }).click();
  await expect(page.getByTestId('new-token')).toHaveCount(0);
  // Never shown again, not even after a reload.
  await page.reload();
  await expect(page.getByTestId('token-row').filter({ hasText: 'laptop' })).toBeVisible();
  await expect(page.getByTestId('new-token')).toHaveCount(0);
  await expect(page.getByText(/tsr_at_/)).toHaveCount(0);
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
  // The other device is signed out at once: its live link is closed (4403), and the page
  // goes to sign-in by itself, remembering where it was.
  await expect(second).toHaveURL(/\/signin\?next=%2Fwallet/, { timeout: 10_000 });
  await expect(second.getByRole('button', { name: 'Sign out' })).toHaveCount(0);
  await other.close();
});

test('a reload and a lost live link mid-provisioning: the checklist resumes, nothing missed or doubled', async ({
  page,
  request,
}) => {
  await userWithCoins(page, request, 100);
  const { name: product } = await createProduct(request, 'Resume ', 5);

  // Every socket of the page goes through here: what the page asks for, and what the server
  // sends, per socket. After the reload, the socket carrying the checklist is closed from
  // the server's side after three changes, and the next one is held back a moment before
  // it reaches the server, so changes happen while the page is not listening.
  type Seen = { socket: number; seq: number; snapshot: boolean };
  const asked: { socket: number; afterSeq: number | null }[] = [];
  const delivered: Seen[] = [];
  let sockets = 0;
  // Sockets numbered above this were opened by the reloaded page.
  let reloadedAfter = Number.POSITIVE_INFINITY;
  let cut = 0;
  await page.routeWebSocket(/\/graphql\/ws$/, (ws) => {
    const n = ++sockets;
    const holdBack = cut > 0;
    const server = ws.connectToServer();
    ws.onMessage(async (raw) => {
      const msg = JSON.parse(String(raw));
      if (msg.type === 'connection_init' && holdBack) await new Promise((r) => setTimeout(r, 1500));
      if (msg.type === 'subscribe' && String(msg.payload.query).includes('vpsSessionProgress')) {
        asked.push({ socket: n, afterSeq: msg.payload.variables.afterSeq ?? null });
      }
      server.send(raw);
    });
    server.onMessage((raw) => {
      // What the server still sends on the closed one never reaches the page.
      if (n === cut) return;
      ws.send(raw);
      const msg = JSON.parse(String(raw));
      const event = msg.type === 'next' ? msg.payload?.data?.vpsSessionProgress : undefined;
      if (!event) return;
      delivered.push({ socket: n, seq: event.seq, snapshot: event.snapshot });
      const changes = delivered.filter((d) => d.socket === n && !d.snapshot).length;
      if (n > reloadedAfter && !cut && changes === 3) {
        cut = n;
        void ws.close({ code: 1012, reason: 'restarting' });
      }
    });
  });

  await page.goto('/vps');
  const card = page.locator('form', { has: page.getByRole('heading', { name: product }) });
  await card.getByLabel('Hours').fill('2');
  await card.getByRole('button', { name: 'Start' }).click();
  await expect(page).toHaveURL(/\/vps\/sessions\//);
  // Reload once the first step is done: the page starts again from a snapshot.
  await expect(page.locator('[data-testid="step"][data-status="done"]').first()).toBeVisible();
  reloadedAfter = sockets;
  await page.reload();
  await expect(page.getByText('Live updates are reconnecting…')).toBeVisible({ timeout: 15_000 });
  await page.screenshot({ path: test.info().outputPath('vps-reconnecting.png'), fullPage: true });
  await expect(page.getByTestId('vps-status')).toHaveText('running', { timeout: 20_000 });
  await expect(page.getByText('Live updates are reconnecting…')).toBeHidden();
  await expect(page.getByTestId('step')).toHaveCount(7);
  await expect(page.locator('[data-testid="step"][data-status="done"]')).toHaveCount(7);

  // The checklist socket after the reload began with a snapshot; the one after the cut
  // asked for what followed the last change the page had, and got exactly that.
  const progressSockets = [...new Set(asked.map((a) => a.socket))];
  expect(progressSockets.length).toBeGreaterThanOrEqual(3);
  const [afterReload, afterCut] = progressSockets.slice(-2);
  const before = delivered.filter((d) => d.socket === afterReload);
  expect(before[0].snapshot).toBe(true);
  expect(before.length).toBe(4);
  const resumedFrom = asked.find((a) => a.socket === afterCut)?.afterSeq;
  expect(resumedFrom).toBe(before[before.length - 1].seq);
  const after = delivered.filter((d) => d.socket === afterCut);
  expect(after.length).toBeGreaterThan(0);
  expect(after.every((d) => !d.snapshot)).toBe(true);
  // Consecutive from the snapshot on: nothing missing, nothing twice.
  const seqs = [...before, ...after].map((d) => d.seq);
  expect(seqs).toEqual(seqs.map((_, i) => seqs[0] + i));
});
