// The client against a real `switchyard serve` and simulated providers.

import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import {
  AllFailedError,
  AmbiguousError,
  ExistsError,
  ForbiddenError,
  OverloadedError,
  Switchyard,
  UnauthorizedError,
  ValidationError,
} from '@switchyard/client';
import { startProviders, startServer } from './harness.mjs';

let providers;
let server;
let sy;

before(async () => {
  providers = await startProviders();
  server = await startServer(providers.base);
  sy = new Switchyard({ url: server.url, token: server.token, product: 'shop', env: 'dev' });
});

after(async () => {
  await server?.stop();
  await providers?.close();
});

beforeEach(() => providers.reset());

const checkout = (ctx) => {
  ctx.primary('main').app('pay-main').action('charge').input({ amount: '$Input{amount}', order: '$Input{order}' }).output({ id: '$Response{id}', status: '$Response{status}' });
  ctx.fallback('backup').app('pay-backup').action('charge').input({ amount: '$Input{amount}', order: '$Input{order}' }).output({ id: '$Response{id}', status: '$Response{status}' });
};

test('define, run, fetch, update, run again', async () => {
  const defined = await sy.fallback.define({
    tag: 'checkout',
    name: 'Checkout',
    description: 'main account first',
    input: { amount: { type: 'integer' }, order: { type: 'string' } },
    handler: checkout,
  });
  assert.equal(defined.tag, 'checkout');

  const first = await sy.fallback.run({ tag: 'checkout', input: { amount: 1099, order: 'o-1' } });
  assert.equal(first.provider, 'main');
  assert.match(first.output.id, /^pay-main_/);
  assert.equal(first.output.status, 'succeeded');
  assert.match(first.idempotencyKey, /^[0-9a-f-]{36}$/);
  assert.equal(first.trace.served_by, 'main');
  assert.equal(first.sends, 1);
  assert.deepEqual(providers.state.bodies['pay-main'][0], { amount: 1099, order: 'o-1' });
  assert.deepEqual(providers.state.keys['pay-main'], [first.idempotencyKey]);

  const fetched = await sy.fallback.fetch('checkout');
  assert.equal(fetched.name, 'Checkout');
  assert.deepEqual(fetched.options.map((o) => o.provider), ['main', 'backup']);
  assert.equal(fetched.options[0].app, 'pay-main');

  const live = await sy.fallback.fetch('checkout', { env: 'dev' });
  assert.ok(live.options[0].states.dev, 'fetch with an env carries each option\'s live state');
  assert.equal(live.options[0].states.dev.breaker.state, 'closed');

  const all = await sy.fallback.fetchAll();
  assert.ok(all.some((d) => d.tag === 'checkout'));

  // The reference's update(tag, {description, options}): the backup first now.
  const updated = await sy.fallback.update('checkout', {
    description: 'backup account first',
    options: [fetched.options[1], fetched.options[0]],
  });
  assert.equal(updated.description, 'backup account first');
  assert.equal(updated.name, 'Checkout', 'fields the update does not name stay');

  const second = await sy.fallback.run({ tag: 'checkout', input: { amount: 5, order: 'o-2' } });
  assert.equal(second.provider, 'backup');

  // define again replaces (the code-first API runs at every start)
  await sy.fallback.define({ tag: 'checkout', input: { amount: { type: 'integer' }, order: { type: 'string' } }, handler: checkout });
  assert.equal((await sy.fallback.run({ tag: 'checkout', input: { amount: 5, order: 'o-3' } })).provider, 'main');
});

test('a quota splits by weight, and its providers show their state', async () => {
  await sy.quota.define({
    tag: 'sms',
    input: { phone: { type: 'string' }, message: { type: 'string' } },
    handler: (ctx) => {
      ctx.provider('a').weight(70).app('sms-a').action('send').mapInput((input) => ({ to: input.phone, text: `Hi: ${input.message}` })).mapOutput((res) => ({ messageId: res.id }));
      ctx.provider('b').weight(30).app('sms-b').action('send').mapInput((input) => ({ to: input.phone, text: `Hi: ${input.message}` })).mapOutput((res) => ({ messageId: res.id }));
    },
  });
  const stored = await sy.quota.fetch('sms');
  assert.deepEqual(stored.providers[0].input, { to: '$Input{phone}', text: 'Hi: $Input{message}' });
  assert.deepEqual(stored.providers[0].output, { messageId: '$Response{id}' });

  const served = { a: 0, b: 0 };
  for (let i = 0; i < 20; i++) {
    const r = await sy.quota.run({ tag: 'sms', input: { phone: '+15550100', message: `n${i}` } });
    served[r.provider] += 1;
    assert.match(r.output.messageId, /^sms-[ab]_/);
  }
  assert.deepEqual(served, { a: 14, b: 6 });
  assert.deepEqual(providers.state.bodies['sms-a'][0], { to: '+15550100', text: 'Hi: n0' });

  const states = await sy.quota.providers('sms');
  assert.deepEqual(states.map((s) => s.provider).sort(), ['a', 'b']);
  assert.equal(states.find((s) => s.provider === 'a').weight, 70);
});

test('a failover is in the trace, and all-failed lists every attempt', async () => {
  await sy.fallback.define({ tag: 'pay', input: { amount: { type: 'integer' }, order: { type: 'string' } }, handler: checkout });
  providers.state.mode['pay-main'] = 'fail';
  const r = await sy.fallback.run({ tag: 'pay', input: { amount: 1, order: 'f-1' } });
  assert.equal(r.provider, 'backup');
  const tried = r.trace.attempts.map((a) => a.provider);
  assert.deepEqual(tried, ['main', 'backup']);

  providers.state.mode['pay-backup'] = 'fail';
  await assert.rejects(sy.fallback.run({ tag: 'pay', input: { amount: 1, order: 'f-2' } }), (e) => {
    assert.ok(e instanceof AllFailedError, e.stack);
    assert.equal(e.code, 'all-failed');
    assert.equal(e.status, 502);
    assert.deepEqual(e.attempts.map((a) => a.provider), ['main', 'backup']);
    assert.ok(e.idempotencyKey);
    return true;
  });
});

test('overloaded: Retry-After is honoured by the client, or surfaced when retries are off', async () => {
  await sy.fallback.define({
    tag: 'limited',
    input: { amount: { type: 'integer' } },
    handler: (ctx) => ctx.primary('slow').app('slow').action('charge'),
  });
  const admission = await sy.admission('slow');
  await sy.setAdmission('slow', { ...admission.config, rate_per_sec: 1, burst: 1, queue_timeout_ms: 1 });

  await sy.fallback.run({ tag: 'limited', input: { amount: 1 } });
  await assert.rejects(sy.fallback.run({ tag: 'limited', input: { amount: 2 }, retry: false }), (e) => {
    assert.ok(e instanceof OverloadedError, e.stack);
    assert.equal(e.status, 503);
    assert.ok(e.retryAfterMs > 0 && e.retryAfterMs <= 2000, `retryAfterMs ${e.retryAfterMs}`);
    return true;
  });
  const r = await sy.fallback.run({ tag: 'limited', input: { amount: 3 } });
  assert.ok(r.sends >= 2, `sent ${r.sends} times`);
  assert.ok(r.latencyMs >= 200, `waited ${r.latencyMs} ms`);
  assert.equal(providers.state.calls.slow, 2, 'the overloaded sends never reached the provider');
  // one key for every send of one run
  assert.equal(new Set(providers.state.keys.slow).size, 2);
});

test('an idempotent replay, and in-progress waits for the first run', async () => {
  await sy.fallback.define({ tag: 'once', input: { amount: { type: 'integer' }, order: { type: 'string' } }, handler: checkout });
  const a = await sy.fallback.run({ tag: 'once', input: { amount: 1, order: 'r' }, idempotencyKey: 'order-42' });
  const b = await sy.fallback.run({ tag: 'once', input: { amount: 1, order: 'r' }, idempotencyKey: 'order-42' });
  assert.equal(b.trace.replayed, true);
  assert.deepEqual(b.output, a.output);
  assert.equal(providers.state.calls['pay-main'], 1);

  providers.state.mode['pay-main'] = 700;
  const first = sy.fallback.run({ tag: 'once', input: { amount: 2, order: 'p' }, idempotencyKey: 'order-43' });
  await new Promise((r) => setTimeout(r, 200));
  const second = await sy.fallback.run({ tag: 'once', input: { amount: 2, order: 'p' }, idempotencyKey: 'order-43' });
  const firstResult = await first;
  assert.ok(second.sends >= 2, 'the second waited out in-progress');
  assert.equal(second.trace.replayed, true);
  assert.deepEqual(second.output, firstResult.output);
  assert.equal(providers.state.calls['pay-main'], 2, 'one call per key');
});

test('ambiguous is never retried and names the app to reconcile', async () => {
  await sy.fallback.define({ tag: 'amb', input: { amount: { type: 'integer' }, order: { type: 'string' } }, handler: checkout });
  providers.state.mode['pay-main'] = 'drop';
  await assert.rejects(sy.fallback.run({ tag: 'amb', input: { amount: 1, order: 'x' }, idempotencyKey: 'amb-1' }), (e) => {
    assert.ok(e instanceof AmbiguousError, e.stack);
    assert.equal(e.reconcile.app, 'pay-main');
    assert.equal(e.reconcile.idempotencyKey, 'amb-1');
    return true;
  });
  assert.equal(providers.state.calls['pay-main'], 1);
  assert.equal(providers.state.calls['pay-backup'] ?? 0, 0, 'the key never went to a second account');
});

test('a bad definition names its field; a duplicate create is exists', async () => {
  await assert.rejects(
    sy.fallback.create({ tag: 'bad', options: [{ app: 'no-such-app', event: 'charge' }] }),
    (e) => {
      assert.ok(e instanceof ValidationError, e.stack);
      assert.equal(e.code, 'invalid-definition');
      assert.match(e.field, /options\[0\]\.app/);
      return true;
    },
  );
  // the reference's object form: event for action, an option named after its app
  const made = await sy.fallback.create({
    tag: 'objects',
    input: { amount: { type: 'integer' } },
    options: [{ type: 'ACTION', event: 'charge', app: 'pay-main', input: { amount: '$Input{amount}' }, output: { id: '$Response{id}' }, retries: 1 }],
  });
  assert.equal(made.options[0].provider, 'pay-main');
  assert.equal(made.options[0].action, 'charge');
  await assert.rejects(sy.fallback.create({ tag: 'objects', options: [{ app: 'pay-main', event: 'charge' }] }), ExistsError);
  await sy.fallback.delete('objects');

  await assert.rejects(
    sy.quota.define({ tag: 'x', handler: (ctx) => ctx.provider('a').app('sms-a').action('send').mapInput((i) => ({ amount: i.amount / 100 })) }),
    /providers\[0\]\.input: the mapping computes with \$Input\{amount\}/,
  );
});

test('tokens: unauthorized and forbidden are typed', async () => {
  const stranger = new Switchyard({ url: server.url, token: 'not-a-token-of-this-server', product: 'shop', env: 'dev' });
  await assert.rejects(stranger.fallback.fetchAll(), UnauthorizedError);
  const runner = new Switchyard({ url: server.url, token: server.runToken, product: 'shop', env: 'dev' });
  await assert.rejects(runner.fallback.create({ tag: 'nope', options: [{ app: 'pay-main', event: 'charge' }] }), (e) => {
    assert.ok(e instanceof ForbiddenError);
    assert.match(e.message, /define/);
    return true;
  });
  assert.equal((await runner.whoami()).role, 'run');
});

test('features, healthchecks and the event stream', async () => {
  await sy.fallback.define({ tag: 'step-pay', input: { amount: { type: 'integer' }, order: { type: 'string' } }, handler: checkout });
  await sy.features.create({
    tag: 'order',
    input: { amount: { type: 'integer' }, order: { type: 'string' } },
    steps: [{ name: 'pay', type: 'fallback', tag: 'step-pay' }],
    output: { paid: '$Sequence{pay}{id}' },
  });

  const events = sy.events();
  const seen = (async () => {
    for await (const ev of events) {
      if (ev.event === 'run' && ev.data.tag === 'order') return ev;
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  const r = await sy.features.run({ tag: 'order', input: { amount: 7, order: 'f' } });
  assert.match(r.output.paid, /^pay-main_/);
  const ev = await seen;
  assert.equal(ev.data.tag, 'order');

  await sy.healthcheck.define({
    tag: 'main-health',
    handler: (ctx) => {
      ctx.probe().app('stripe-app').action('health');
      ctx.interval(60000);
      ctx.retries(1);
      ctx.env('dev');
      ctx.env('prd');
    },
  });
  const hc = await sy.healthcheck.fetch('main-health');
  assert.deepEqual(Object.keys(hc.input).sort(), ['dev', 'prd']);
  await sy.healthcheck.check('main-health', { env: 'prd' });
  const status = await sy.healthcheck.status('main-health', { env: 'prd' });
  assert.equal(status.status, 'healthy');
});
