import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

/** A server of its own for tests that need another configuration than server.sh's: the
 * same binary and app, a fresh SQLite database, `env` on top of the bare minimum. */
export async function startServer(port: number, env: Record<string, string>) {
  const work = mkdtempSync(join(tmpdir(), 'tessera-e2e-'));
  const base = `http://127.0.0.1:${port}`;
  const bin = process.env.TESSERA_BIN ?? join(HERE, '..', '..', 'target', 'debug', 'tessera');
  const child = spawn(bin, ['serve'], {
    env: {
      PATH: process.env.PATH,
      LISTEN_ADDR: `127.0.0.1:${port}`,
      PUBLIC_URL: base,
      DATABASE_URL: `sqlite://${work}/tessera.db?mode=rwc`,
      DATA_DIR: join(work, 'data'),
      SPA_DIR: process.env.E2E_SPA_DIR ?? join(HERE, '..', 'dist'),
      EMBEDDED_WORKER: 'false',
      ARGON2_MEMORY_KIB: '64',
      ARGON2_ITERATIONS: '1',
      RUST_LOG: 'warn',
      ...env,
    },
    stdio: 'ignore',
  });
  const stop = () => {
    child.kill();
    rmSync(work, { recursive: true, force: true });
  };
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${base}/ready`)).ok) return { base, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  stop();
  throw new Error(`the server on ${base} did not become ready`);
}

/** One of the loopback fakes (`tessera-fakes NAME ARGS…`), ready when it says so. */
export async function startFake(name: string, args: string[]) {
  const bin = process.env.TESSERA_FAKES_BIN ?? join(HERE, '..', '..', 'target', 'debug', 'tessera-fakes');
  const child = spawn(bin, [name, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    child.stdout.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes('ready ')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`tessera-fakes ${name} exited (${code})`)));
  });
  return { stop: () => child.kill() };
}
