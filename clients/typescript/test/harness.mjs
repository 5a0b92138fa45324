// A real `switchyard serve` and simulated providers on loopback, for the
// client's tests. The providers are one node:http server; each app's base
// URL is a path under it (`/sms-a`, `/pay-main`, …), and each can be told to
// fail, stall or drop the connection.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../..');

/** The switchyard binary: $SWITCHYARD_BIN or the workspace's debug build. */
export const BIN = process.env.SWITCHYARD_BIN ?? join(repo, 'target/debug/switchyard');

/** Simulated providers: `mode[app]` is `ok`, `fail` (503), `drop` (connection closed after the request), or a delay in ms. */
export async function startProviders() {
  const state = { mode: {}, calls: {}, keys: {}, bodies: {} };
  let n = 0;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const [, app, ...rest] = (req.url ?? '/').split('?')[0].split('/');
      const path = `/${rest.join('/')}`;
      const mode = state.mode[app] ?? 'ok';
      if (path === '/health') {
        res.writeHead(mode === 'fail' ? 503 : 200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ status: mode === 'fail' ? 'down' : 'ok' }));
      }
      state.calls[app] = (state.calls[app] ?? 0) + 1;
      (state.keys[app] ??= []).push(req.headers['idempotency-key']);
      let body = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      } catch {}
      (state.bodies[app] ??= []).push(body);
      const answer = () => {
        if (mode === 'fail') {
          res.writeHead(503, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ error: { message: 'temporarily down' } }));
        }
        if (mode === 'drop') return req.socket.destroy();
        n += 1;
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: `${app}_${n}`, sid: `SM${n}`, 'message-id': `m-${n}`, status: 'succeeded', received: body }));
      };
      if (typeof mode === 'number') setTimeout(answer, mode);
      else answer();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    state,
    reset() {
      state.mode = {};
      state.calls = {};
      state.keys = {};
      state.bodies = {};
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

// The apps (shared with the Python client's tests).
const APPS = Object.fromEntries(
  Object.entries(JSON.parse(readFileSync(join(repo, 'clients/testdata/apps.json'), 'utf8'))).filter(([k]) => k !== '_'),
);

function config(dir, base, product) {
  const lines = [
    '[server]',
    `store = "${join(dir, 'switchyard.db')}"`,
    'token_env = "SY_TEST_ADMIN_TOKEN"',
    'healthchecks = true',
    '',
    '[[server.tokens]]',
    'name = "runner"',
    'role = "run"',
    `products = ["${product}"]`,
    'token = { env = "SY_TEST_RUN_TOKEN" }',
    '',
    `[products.${product}]`,
    'envs = ["dev", "prd"]',
  ];
  for (const [app, actions] of Object.entries(APPS)) {
    const list = JSON.stringify(actions.map(([name, method, path, idempotency]) => ({ name, method, path, idempotency })));
    lines.push('', `[products.${product}.apps.${app}]`, 'plugin = "bundled:http"');
    for (const env of ['dev', 'prd']) {
      lines.push(
        `[products.${product}.apps.${app}.envs.${env}]`,
        `allow = ["${base}"]`,
        `config = { base_url = "${base}/${app}", ping_path = "/health", idempotency_header = "Idempotency-Key", actions = '${list}' }`,
      );
    }
  }
  return lines.join('\n') + '\n';
}

/** Start `switchyard serve` on a free loopback port with the apps above under `product`. */
export async function startServer(base, { product = 'shop' } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-client-'));
  const file = join(dir, 'switchyard.toml');
  writeFileSync(file, config(dir, base, product));
  const token = randomBytes(24).toString('hex');
  const runToken = randomBytes(24).toString('hex');
  const child = spawn(BIN, ['serve', file, '--listen', '127.0.0.1:0'], {
    env: { ...process.env, SY_TEST_ADMIN_TOKEN: token, SY_TEST_RUN_TOKEN: runToken },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`switchyard serve did not start within 60 s:\n${log}`)), 60_000);
    const read = (d) => {
      log += d;
      const m = /switchyard serving on (https?:\/\/[^\s]+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    };
    // the address is on stdout, the loading report on stderr
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`switchyard serve exited (${code}) before serving (binary ${BIN}; build it with cargo build -p switchyard):\n${log}`));
    });
  });
  return {
    url,
    token,
    runToken,
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
