// The client's types against the server's /openapi.json (the copy in the
// repository, which a server test keeps equal to what `serve` answers): a
// code, field or route the server adds or drops fails here.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES } from '@switchyard/client';

const here = dirname(fileURLToPath(import.meta.url));
const doc = JSON.parse(readFileSync(resolve(here, '../../../host/server/src/api/openapi.json'), 'utf8'));
const schemas = doc.components.schemas;
const source = ['client.ts', 'types.ts', 'errors.ts'].map((f) => readFileSync(resolve(here, '../src', f), 'utf8')).join('\n');

test('every error code the server answers has its place in ErrorCode', () => {
  assert.deepEqual([...ERROR_CODES].sort(), [...schemas.Error.properties.code.enum].sort());
});

test('the error body fields the client reads are the server\'s', () => {
  for (const field of ['code', 'message', 'field', 'trace', 'retry_after_ms', 'reconcile', 'open', 'last_error', 'problems']) {
    assert.ok(field in schemas.Error.properties, `Error.${field} is gone from the server`);
  }
  assert.deepEqual(Object.keys(schemas.Error.properties.reconcile.properties).sort(), ['app', 'idempotency_key', 'provider']);
});

test('a run sends every field RunRequest has, and reads every field RunResult requires', () => {
  const sent = ['input', 'idempotency_key', 'session', 'cache', 'deadline_ms'];
  assert.deepEqual(Object.keys(schemas.RunRequest.properties).sort(), [...sent].sort());
  for (const f of sent) assert.ok(source.includes(`body.${f}`) || source.includes(`${f}:`), `the client never sends ${f}`);
  for (const f of schemas.RunResult.required) assert.ok(source.includes(`r.${f}`), `the client never reads RunResult.${f}`);
  for (const f of Object.keys(schemas.Trace.properties)) assert.ok(new RegExp(`\\b${f}\\?:`).test(source), `Trace.${f} is not typed`);
});

test('every route the client calls is in the document, with that method', () => {
  const calls = [
    ['post', '/v1/{product}/{env}/{kinds}/{tag}/run'],
    ['get', '/v1/{product}/definitions/{kinds}'],
    ['post', '/v1/{product}/definitions/{kinds}'],
    ['get', '/v1/{product}/definitions/{kinds}/{tag}'],
    ['put', '/v1/{product}/definitions/{kinds}/{tag}'],
    ['patch', '/v1/{product}/definitions/{kinds}/{tag}'],
    ['delete', '/v1/{product}/definitions/{kinds}/{tag}'],
    ['get', '/v1/{product}/{env}/{kinds}/{tag}/providers'],
    ['get', '/v1/{product}/{env}/{kinds}/{tag}/providers/{provider}/history'],
    ['get', '/v1/{product}/{env}/healthchecks/{tag}'],
    ['post', '/v1/{product}/{env}/healthchecks/{tag}/check'],
    ['get', '/v1/{product}/apps'],
    ['get', '/v1/{product}/apps/{app}/admission'],
    ['put', '/v1/{product}/apps/{app}/admission'],
    ['post', '/v1/{product}/providers/{provider}/{action}'],
    ['get', '/v1/events'],
    ['get', '/v1/runs'],
    ['get', '/v1/whoami'],
  ];
  for (const [method, path] of calls) assert.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path} is not in /openapi.json`);
  assert.deepEqual(doc.paths['/v1/{product}/definitions/{kinds}'].get.parameters.map((p) => p.name), ['env']);
});
