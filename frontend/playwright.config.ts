import { defineConfig, devices } from '@playwright/test';

// The real server (debug build, embedded SQLite, dev ad fakes) serves the built app; the
// tests drive Debian's Chromium (Playwright's own download is not used).
const port = Number(process.env.E2E_PORT ?? 18480);

export default defineConfig({
  testDir: './e2e',
  outputDir: './test-results',
  forbidOnly: !!process.env.CI,
  workers: 1,
  retries: 0,
  reporter: [['list']],
  timeout: 60_000,
  use: { baseURL: `http://127.0.0.1:${port}`, trace: 'retain-on-failure' },
  projects: [
    {
      name: 'chromium',
      use: {
        ...devices['Desktop Chrome'],
        headless: true,
        launchOptions: { executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium' },
      },
    },
  ],
  webServer: {
    command: `bash e2e/server.sh ${port}`,
    url: `http://127.0.0.1:${port}/ready`,
    reuseExistingServer: false,
    timeout: 60_000,
  },
});
