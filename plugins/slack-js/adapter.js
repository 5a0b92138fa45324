// Slack adapter (Web API), written in JavaScript and built with
// componentize-js, in the exchange world (it describes each request; the
// host sends it): posts messages with chat.postMessage and checks the
// token with auth.test.
//
// The bot token (`xoxb-…`) is added by the host at egress from the app's
// grant (`scheme = "bearer"`): it never enters the sandbox.
//
// Config keys: `api_base` (default `https://slack.com/api`),
// `default_channel` (used when the input names none).
//
// Slack answers HTTP 200 with `{"ok": false, "error": "..."}` for most
// failures; the adapter maps Slack's error codes to the engine's classes:
// rate limits → rate-limited (with Retry-After), Slack outages →
// unavailable, token and scope problems → internal (a grant problem: no
// other input would help), everything else (channel_not_found,
// msg_too_long, …) → rejected. HTTP 429, 408 and 5xx map by status.

import { defineExchange, outgoing, config, fromStatus, rejected, unavailable, internal, AdapterError, cut } from './switchyard-guest.js';

const POST_MESSAGE = 'post-message';
const PING = 'ping';

// Slack error codes that mean the token or the app is misconfigured.
const GRANT_ERRORS = new Set([
  'not_authed', 'invalid_auth', 'account_inactive', 'token_revoked', 'token_expired',
  'no_permission', 'missing_scope', 'not_allowed_token_type', 'ekm_access_denied',
  'org_login_required', 'team_access_not_granted', 'access_denied',
]);
// Slack error codes that mean Slack could not serve now.
const OUTAGE_ERRORS = new Set([
  'internal_error', 'fatal_error', 'service_unavailable', 'request_timeout', 'team_added_to_org',
]);

/** Map one Slack Web API answer to its output or a classified error. */
function slackResult(response) {
  if (response.status === 429 || response.status === 408 || response.status >= 500) {
    throw fromStatus(response.status, `slack ${response.status}: ${cut(response.body, 300)}`, {
      retryAfterMs: response.retryAfterMs(),
    });
  }
  if (response.status < 200 || response.status >= 300) {
    const kind = response.status === 401 || response.status === 403 ? internal : rejected;
    throw kind(`slack ${response.status}: ${cut(response.body, 300)}`, { status: response.status });
  }
  const body = response.json();
  if (body.ok === true) return body;
  const code = typeof body.error === 'string' ? body.error : 'unknown_error';
  const detail = Array.isArray(body.response_metadata?.messages)
    ? `${code}: ${body.response_metadata.messages.join('; ')}`
    : code;
  const message = `slack: ${detail}`;
  const extra = { status: response.status, code };
  if (code === 'ratelimited' || code === 'rate_limited') {
    throw new AdapterError('rate-limited', message, { ...extra, retryAfterMs: response.retryAfterMs() });
  }
  if (GRANT_ERRORS.has(code)) throw internal(`${message} (check the app's bot token and scopes)`, extra);
  if (OUTAGE_ERRORS.has(code)) throw unavailable(message, extra);
  throw rejected(message, extra);
}

export const exchange = defineExchange({
  name: 'slack',
  version: '0.2.0',
  actions: [
    {
      name: POST_MESSAGE,
      description: 'chat.postMessage: post a message to a channel (not idempotent: Slack has no idempotency key)',
      input: {
        channel: { type: 'string', description: 'channel ID or name; default: config default_channel' },
        text: { type: 'string', required: true, description: 'message text (mrkdwn)' },
        thread_ts: { type: 'string', description: 'reply in this thread' },
        blocks: { type: 'array', description: 'Block Kit blocks' },
      },
      idempotency: 'unsafe',
    },
    {
      name: PING,
      description: 'auth.test: healthy when Slack accepts the token',
      idempotency: 'safe',
    },
  ],
  request(req) {
    const base = (config.get('api_base') ?? 'https://slack.com/api').replace(/\/+$/, '');
    const headers = { 'content-type': 'application/json; charset=utf-8' };
    if (req.action === PING) {
      return outgoing('POST', `${base}/auth.test`, { headers, body: '{}' });
    }
    const channel = req.optStr('channel') ?? config.get('default_channel');
    if (!channel) {
      throw rejected('input.channel is required (or set config default_channel on the app)');
    }
    const message = { channel, text: req.str('text') };
    const thread = req.optStr('thread_ts');
    if (thread !== undefined) message.thread_ts = thread;
    const blocks = req.get('blocks');
    if (blocks !== undefined) {
      if (!Array.isArray(blocks)) throw rejected('input.blocks must be an array of Block Kit blocks');
      message.blocks = blocks;
    }
    return outgoing('POST', `${base}/chat.postMessage`, { headers, body: JSON.stringify(message) });
  },
  response(req, answer) {
    const body = slackResult(answer);
    if (req.action === PING) return { ok: true, team: body.team ?? null, user: body.user ?? null };
    return { ok: true, channel: body.channel, ts: body.ts };
  },
});
