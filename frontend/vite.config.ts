/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run dev` proxies the server's routes so cookies stay same-origin.
const server = process.env.TESSERA_URL ?? 'http://127.0.0.1:8000';
const proxied = ['/graphql', '/auth', '/billing', '/ads', '/dev', '/access', '/proxy'];

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: Object.fromEntries(
      proxied.map((path) => [path, { target: server, changeOrigin: false, ws: path === '/graphql' }]),
    ),
  },
  build: { outDir: 'dist', assetsDir: 'assets', sourcemap: false },
  // Unit tests of the pure modules (`npm test`); e2e/*.spec.ts are Playwright's.
  test: { include: ['src/**/*.test.ts'], environment: 'node' },
});
