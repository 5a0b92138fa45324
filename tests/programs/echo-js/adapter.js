// A JavaScript exchange adapter for the host's tests, in the
// `exchange-reading-adapter` world: `read-by-host` lets the host read a 2xx
// JSON answer itself; `post` sends the same request and is read by
// `response`, which wraps whatever answer it gets as `{status, body,
// read_by: 'javascript'}` (so a test sees which side read an answer).
import { defineExchange, defineReading, outgoing, config } from './switchyard-guest.js';

const actions = [
  { name: 'read-by-host', description: 'POST /v1/messages; a 2xx JSON answer is read by the host', readByHost: true },
  { name: 'post', description: 'POST /v1/messages; every answer is read by the adapter' },
];

export const exchange = defineExchange({
  name: 'echo-js',
  version: '0.1.0',
  actions,
  request: (req) => outgoing('POST', `${config.require('base_url').replace(/\/$/, '')}/v1/messages`, { json: req.input }),
  response: (_req, answer) => ({ status: answer.status, body: answer.body, read_by: 'javascript' }),
});

export const exchangeReading = defineReading(actions);
