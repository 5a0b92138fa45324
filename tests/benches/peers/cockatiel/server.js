// The peer of `cargo bench -p switchyard --bench load`: what a team would
// write instead of Switchyard for the same job. POST /run with
// {"input": {"to", "text"}} sends an SMS through the primary provider
// (cockatiel: 2 retries with exponential backoff, a circuit breaker that
// opens after 5 consecutive failures), falls back to the backup provider
// (its own breaker), and answers {"output": {"message_id"}, "provider"}.
// One keep-alive agent pools the provider connections.
//
//   node server.js PRIMARY_URL BACKUP_URL   -> prints "listening http://127.0.0.1:PORT"
//   WORKERS=2 node server.js …               -> the same in 2 worker processes (node:cluster)
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');

const workers = Number(process.env.WORKERS || 1);
if (workers > 1 && cluster.isPrimary) {
  let told = false;
  cluster.on('listening', (_worker, address) => {
    if (!told) {
      told = true;
      console.log(`listening http://127.0.0.1:${address.port}`);
    }
  });
  for (let i = 0; i < workers; i++) cluster.fork();
  return;
}
const {
  retry, circuitBreaker, handleAll, ExponentialBackoff, ConsecutiveBreaker, wrap,
} = require('cockatiel');

const [primaryUrl, backupUrl] = process.argv.slice(2);
if (!primaryUrl || !backupUrl) {
  console.error('usage: node server.js PRIMARY_URL BACKUP_URL');
  process.exit(2);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

class ProviderError extends Error {}

function post(base, path, body) {
  const data = JSON.stringify(body);
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = http.request({
      agent, method: 'POST', hostname: url.hostname, port: url.port, path: url.pathname,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode >= 500 || res.statusCode === 429) {
          reject(new ProviderError(`status ${res.statusCode}`));
        } else {
          try { resolve(JSON.parse(text)); } catch (e) { reject(e); }
        }
      });
    });
    req.setTimeout(10000, () => req.destroy(new ProviderError('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

function provider(name, base, retries) {
  const breaker = circuitBreaker(handleAll, {
    halfOpenAfter: 30000,
    breaker: new ConsecutiveBreaker(5),
  });
  const policy = retries > 0
    ? wrap(retry(handleAll, {
      maxAttempts: retries,
      backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 5000 }),
    }), breaker)
    : breaker;
  return { name, base, policy };
}

const providers = [provider('primary', primaryUrl, 2), provider('backup', backupUrl, 0)];

async function run(input) {
  const body = { to: input.to, text: input.text };
  const errors = [];
  for (const p of providers) {
    try {
      const r = await p.policy.execute(() => post(p.base, '/v1/messages', body));
      return { status: 200, body: { output: { message_id: r.id }, provider: p.name } };
    } catch (e) {
      errors.push(`${p.name}: ${e.message}`);
    }
  }
  return { status: 502, body: { code: 'all-failed', message: errors.join('; ') } };
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/run') {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    let out;
    try {
      const { input } = JSON.parse(Buffer.concat(chunks).toString());
      out = await run(input || {});
    } catch (e) {
      out = { status: 400, body: { code: 'invalid-body', message: e.message } };
    }
    const text = JSON.stringify(out.body);
    res.writeHead(out.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
});
server.keepAliveTimeout = 60000;
server.maxRequestsPerSocket = 0;
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  if (workers === 1) console.log(`listening http://127.0.0.1:${server.address().port}`);
});
