// The reference docs' own examples, changed only in the import and the
// constructor: `new ResilienceService({...})` / `new Ductape({...})` became
// `new Switchyard({ url, token, product, env })`. The apps they name
// (stripe-app, twilio-app, …) are `http` plugin apps on simulated providers.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DataTypes, FeatureEventTypes, Switchyard } from '@switchyard/client';
import { startProviders, startServer } from './harness.mjs';

let providers;
let server;
let resilience;
let ductape;

before(async () => {
  providers = await startProviders();
  server = await startServer(providers.base, { product: 'my-product' });
  // was: new ResilienceService({ workspace_id, public_key, user_id, token, env_type: 'prd' })
  resilience = new Switchyard({ url: server.url, token: server.token, product: 'my-product', env: 'prd' });
  // was: new Ductape({ accessKey: 'your-access-key' })
  ductape = new Switchyard({ url: server.url, token: server.token, product: 'my-product', env: 'prd' });
});

after(async () => {
  await server?.stop();
  await providers?.close();
});

test('resilience overview: healthchecks, a quota and a fallback, code-first', async () => {
  // Define a healthcheck
  const healthcheck = await resilience.healthcheck.define({
    product: 'my-product',
    tag: 'stripe-health',
    handler: async (ctx) => {
      ctx.probe().app('stripe-app').action('health');
      ctx.interval(30000); // Check every 30 seconds
      ctx.retries(2);
      ctx.env('prd');
    },
  });
  assert.equal(healthcheck.tag, 'stripe-health');
  // the same pattern for the healthchecks the quota and fallback name
  for (const [tag, app] of [['twilio-health', 'twilio-app'], ['nexmo-health', 'nexmo-app'], ['paypal-health', 'paypal-app']]) {
    await resilience.healthcheck.define({
      product: 'my-product',
      tag,
      handler: async (ctx) => {
        ctx.probe().app(app).action('health');
        ctx.interval(30000);
        ctx.retries(2);
        ctx.env('prd');
      },
    });
  }

  // Define a quota for load distribution
  const quota = await resilience.quota.define({
    product: 'my-product',
    tag: 'sms-quota',
    input: {
      phone: { type: 'string' },
      message: { type: 'string' },
    },
    handler: async (ctx) => {
      ctx.provider('twilio')
        .weight(70)
        .healthcheck('twilio-health')
        .app('twilio-app')
        .action('send-sms')
        .retries(2);

      ctx.provider('nexmo')
        .weight(30)
        .healthcheck('nexmo-health')
        .app('nexmo-app')
        .action('send-sms')
        .retries(2);
    },
  });
  assert.equal(quota.tag, 'sms-quota');

  // Define a fallback for automatic failover
  const fallback = await resilience.fallback.define({
    product: 'my-product',
    tag: 'payment-fallback',
    input: {
      amount: { type: 'number' },
    },
    handler: async (ctx) => {
      ctx.primary('stripe')
        .healthcheck('stripe-health')
        .app('stripe-app')
        .action('charge')
        .retries(2);

      ctx.fallback('paypal')
        .healthcheck('paypal-health')
        .app('paypal-app')
        .action('payment')
        .retries(2);
    },
  });
  assert.equal(fallback.tag, 'payment-fallback');

  // Run a quota
  const result = await resilience.quota.run({
    product: 'my-product',
    env: 'prd',
    tag: 'sms-quota',
    input: { phone: '+15550100', message: 'Your code is 123456' },
  });
  assert.ok(['twilio', 'nexmo'].includes(result.provider));

  // Run a fallback: stripe down, paypal serves
  providers.state.mode['stripe-app'] = 'fail';
  const paid = await resilience.fallback.run({ tag: 'payment-fallback', input: { amount: 5000 } });
  assert.equal(paid.provider, 'paypal');
  providers.state.mode['stripe-app'] = 'ok';
});

test('quotas page: mapInput and mapOutput', async () => {
  const quota = await resilience.quota.define({
    product: 'my-product',
    tag: 'sms-quota-mapped',
    name: 'SMS Provider Quota',
    description: 'Distribute SMS across providers',
    input: {
      phone: { type: 'string' },
      message: { type: 'string' },
    },
    handler: async (ctx) => {
      ctx.provider('twilio')
        .weight(70)
        .healthcheck('twilio-health')
        .app('twilio-app')
        .action('send-sms')
        .mapInput((input) => ({
          body: { to: input.phone, body: input.message },
        }))
        .mapOutput((res) => ({ messageId: res.sid }))
        .retries(2);
      ctx.provider('nexmo')
        .weight(30)
        .healthcheck('nexmo-health')
        .app('nexmo-app')
        .action('send-sms')
        .mapInput((input) => ({
          body: { to: input.phone, text: input.message },
        }))
        .mapOutput((res) => ({ messageId: res['message-id'] }))
        .retries(2);
    },
  });
  assert.deepEqual(quota.providers[1].input, { body: { to: '$Input{phone}', text: '$Input{message}' } });
  assert.deepEqual(quota.providers[1].output, { messageId: '$Response{message-id}' });

  const ids = new Set();
  for (let i = 0; i < 10; i++) {
    const r = await resilience.quota.run({ tag: 'sms-quota-mapped', input: { phone: '+15550100', message: `m${i}` } });
    ids.add(r.provider);
    assert.match(String(r.output.messageId), r.provider === 'twilio' ? /^SM\d+$/ : /^m-\d+$/);
  }
  assert.deepEqual([...ids].sort(), ['nexmo', 'twilio']);
  assert.deepEqual(Object.keys(providers.state.bodies['nexmo-app'].at(-1).body).sort(), ['text', 'to']);
  assert.deepEqual(providers.state.bodies['twilio-app'].at(-1).body.to, '+15550100');
  assert.match(providers.state.bodies['twilio-app'].at(-1).body.body, /^m\d$/);
});

test('fallbacks page: a mapping that computes is refused with the reason', async () => {
  await assert.rejects(
    resilience.fallback.define({
      product: 'my-product',
      tag: 'payment-fallback-mapped',
      input: { amount: { type: 'number' }, currency: { type: 'string' } },
      handler: async (ctx) => {
        ctx.primary('stripe').app('stripe-app').action('charge').mapInput((input) => ({ body: { amount: input.amount, currency: input.currency } }));
        ctx.fallback('paypal')
          .app('paypal-app')
          .action('payment')
          .mapInput((input) => ({
            body: {
              amount: { value: input.amount / 100, currency: input.currency },
              intent: 'CAPTURE',
            },
          }));
      },
    }),
    /options\[1\]\.input: the mapping computes with \$Input\{amount\}/,
  );
});

test('fallbacks overview: create, fetch, fetchAll, update and run', async () => {
  await ductape.fallback.create({
    name: 'Payment Provider Fallback',
    tag: 'payment-fallback-2',
    description: 'Stripe to PayPal to Square fallback chain',
    input: {
      amount: { type: DataTypes.NUMBER },
      currency: { type: DataTypes.STRING },
      customerId: { type: DataTypes.STRING },
    },
    options: [
      {
        type: FeatureEventTypes.ACTION,
        event: 'create-charge',
        app: 'stripe',
        input: {
          amount: '$Input{amount}',
          currency: '$Input{currency}',
          customer: '$Input{customerId}',
        },
        output: {
          transactionId: '$Response{id}',
          status: '$Response{status}',
        },
        retries: 2,
        healthcheck: 'stripe-health', // Optional: use healthcheck status
      },
      {
        type: FeatureEventTypes.ACTION,
        event: 'create-payment',
        app: 'paypal',
        input: {
          amount: '$Input{amount}',
          currency: '$Input{currency}',
        },
        output: {
          transactionId: '$Response{id}',
          status: '$Response{status}',
        },
        retries: 2,
      },
    ],
  });

  const fallback = await ductape.fallback.fetch('payment-fallback-2');
  assert.equal(fallback.name, 'Payment Provider Fallback');
  assert.deepEqual(fallback.options.map((o) => o.provider), ['stripe', 'paypal']);
  const all = await ductape.fallback.fetchAll();
  assert.ok(all.length >= 2);

  await ductape.fallback.update('payment-fallback-2', { description: 'Stripe to PayPal' });
  assert.equal((await ductape.fallback.fetch('payment-fallback-2')).description, 'Stripe to PayPal');

  const res = await ductape.fallback.run({
    tag: 'payment-fallback-2',
    input: { amount: 1000, currency: 'usd', customerId: 'cus_123' },
  });
  assert.equal(res.provider, 'stripe');
  assert.match(res.output.transactionId, /^stripe_/);
  assert.deepEqual(providers.state.bodies.stripe.at(-1), { amount: 1000, currency: 'usd', customer: 'cus_123' });
});
