import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from '@playwright/test';
import { PASSWORD, unique } from './api';

// A second server with nothing optional configured: no sign-in providers, no Stripe, no
// ad network (and no dev ad fakes), on its own port and database.
const HERE = dirname(fileURLToPath(import.meta.url));
const PORT = Number(process.env.E2E_PORT ?? 18480) + 20;
const BASE = `http://127.0.0.1:${PORT}`;
let server: ChildProcess | undefined;
let work = '';

test.beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'tessera-bare-'));
  const bin = process.env.TESSERA_BIN ?? join(HERE, '..', '..', 'target', 'debug', 'tessera');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    LISTEN_ADDR: `127.0.0.1:${PORT}`,
    PUBLIC_URL: BASE,
    DATABASE_URL: `sqlite://${work}/tessera.db?mode=rwc`,
    DATA_DIR: join(work, 'data'),
    SPA_DIR: process.env.E2E_SPA_DIR ?? join(HERE, '..', 'dist'),
    ADS_DEV_FAKES: 'false',
    EMBEDDED_WORKER: 'false',
    ARGON2_MEMORY_KIB: '64',
    ARGON2_ITERATIONS: '1',
    RUST_LOG: 'warn',
  };
  server = spawn(bin, ['serve'], { env, stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${BASE}/ready`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the bare server did not become ready');
});

test.afterAll(() => {
  server?.kill();
  if (work) rmSync(work, { recursive: true, force: true });
});

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
