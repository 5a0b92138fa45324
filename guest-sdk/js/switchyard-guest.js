// Switchyard guest SDK for JavaScript adapters (componentize-js).
//
// Copy this file next to your adapter (the build script in
// plugins/slack-js does) and import it with a relative path. In the
// exchange world (preferred: the host sends each request and holds no
// instance while the provider answers):
//
//   import { defineExchange, outgoing } from './switchyard-guest.js';
//   export const exchange = defineExchange({
//     name, version, actions,
//     request: (req) => outgoing('POST', url, { json: { to: req.str('to') } }),
//     response: (req, answer) => answer.errorForStatus().json(),
//   });
//
// (several requests per call: give `begin(req)` and `proceed(req, state,
// answer)`, each returning `outgoing(…, { state })` or the output). Built
// for the `exchange-reading-adapter` world with
// `export const exchangeReading = defineReading(actions);`, the actions
// marked `readByHost: true` have a 2xx JSON answer read by the host itself,
// with no `response` step. In the adapter world (the adapter sends its own requests over wasi:http):
//
//   import { defineAdapter, send, AdapterError } from './switchyard-guest.js';
//   export const provider = defineAdapter({ name, version, actions, call });
//
// It gives: the mapping of an adapter's result to the WIT `provider`
// export, `AdapterError` with the six classes the engine understands,
// `fromStatus` (429 → rate-limited, 408/5xx → unavailable, 401/403 →
// internal, other 4xx → rejected), `send` (fetch over wasi:http with the failures classified),
// input accessors that name the missing field, config and logging.

import * as hostConfig from 'switchyard:adapter/config@0.2.0';
import * as hostLogging from 'switchyard:adapter/logging@0.2.0';

/** The six error classes of `adapter-error` (WIT variant case names). */
export const CLASSES = ['rejected', 'unavailable', 'rate-limited', 'timeout', 'ambiguous', 'internal'];

/** A classified failure. Throw it from `call`; the host reads the class. */
export class AdapterError extends Error {
  /**
   * @param {string} kind one of CLASSES
   * @param {string} message what went wrong, as the provider said it
   * @param {{status?: number, code?: string, retryAfterMs?: number}} [extra]
   */
  constructor(kind, message, extra = {}) {
    super(message);
    if (!CLASSES.includes(kind)) {
      throw new TypeError(`unknown error class '${kind}'; use one of ${CLASSES.join(', ')}`);
    }
    this.kind = kind;
    this.status = extra.status;
    this.code = extra.code;
    this.retryAfterMs = extra.retryAfterMs;
  }

  /** The WIT `adapter-error` value. */
  toWit() {
    const detail = {
      message: cut(String(this.message), 2048),
      status: this.status ?? undefined,
      code: this.code == null ? undefined : String(this.code),
    };
    if (this.kind === 'rate-limited') {
      const ms = this.retryAfterMs == null ? undefined : BigInt(Math.max(0, Math.round(this.retryAfterMs)));
      return { tag: 'rate-limited', val: { detail, retryAfterMs: ms } };
    }
    return { tag: this.kind, val: detail };
  }
}

export const rejected = (message, extra) => new AdapterError('rejected', message, extra);
export const unavailable = (message, extra) => new AdapterError('unavailable', message, extra);
export const timeout = (message, extra) => new AdapterError('timeout', message, extra);
export const ambiguous = (message, extra) => new AdapterError('ambiguous', message, extra);
export const internal = (message, extra) => new AdapterError('internal', message, extra);

/**
 * The class an HTTP answer with `status` belongs to: 429 → rate-limited,
 * 408 and 5xx → unavailable, 401/403 → internal (the app's grant, not the
 * input: the run fails over), other 4xx → rejected, anything else → internal.
 */
export function fromStatus(status, message, { code, retryAfterMs } = {}) {
  let kind = 'internal';
  if (status === 429) kind = 'rate-limited';
  else if (status === 408 || (status >= 500 && status <= 599)) kind = 'unavailable';
  // This app's grant is wrong (revoked key, missing scope), not the input:
  // the run fails over.
  else if (status === 401 || status === 403) kind = 'internal';
  else if (status >= 400 && status <= 499) kind = 'rejected';
  return new AdapterError(kind, message, { status, code, retryAfterMs });
}

/** The app's plain settings (never secrets). */
export const config = {
  get: (key) => hostConfig.get(key) ?? undefined,
  require(key) {
    const v = hostConfig.get(key);
    if (v == null || v === '') {
      throw internal(`config \`${key}\` is not set; add it to the app's grant (config.${key})`);
    }
    return v;
  },
  keys: () => hostConfig.keys(),
};

/** Structured logs, attributed to the app by the host. */
export const log = {
  debug: (m) => hostLogging.log('debug', String(m)),
  info: (m) => hostLogging.log('info', String(m)),
  warn: (m) => hostLogging.log('warn', String(m)),
  error: (m) => hostLogging.log('error', String(m)),
};

/** One attempt, as the adapter sees it. */
export class Request {
  constructor(wit) {
    this.action = wit.action;
    try {
      this.input = JSON.parse(wit.input);
    } catch (e) {
      throw rejected(`input is not valid JSON: ${e.message}`);
    }
    if (this.input === null || typeof this.input !== 'object' || Array.isArray(this.input)) {
      throw rejected('input must be a JSON object');
    }
    this.idempotencyKey = wit.idempotencyKey;
    this.env = wit.env;
    this.session = wit.session ?? undefined;
    this.deadline = Date.now() + Number(wit.deadlineMs);
  }

  /** Milliseconds left before the host abandons this attempt. */
  remainingMs() {
    return Math.max(0, this.deadline - Date.now());
  }

  /** The field `name` if present and not null. */
  get(name) {
    const v = this.input[name];
    return v === null ? undefined : v;
  }

  /** The string field `name`, or `rejected` naming the field. */
  str(name) {
    const v = this.get(name);
    if (v === undefined) throw rejected(`input.${name} is required`);
    if (typeof v !== 'string') throw rejected(`input.${name} must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  /** The string field `name` if present; `rejected` if it is not a string. */
  optStr(name) {
    return this.get(name) === undefined ? undefined : this.str(name);
  }

  unknownAction() {
    return rejected(`unknown action \`${this.action}\``);
  }
}

/** A whole HTTP answer. */
export class Response {
  constructor(status, headers, body) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }

  header(name) {
    return this.headers.get(name) ?? undefined;
  }

  /** Retry-After in milliseconds (seconds or an HTTP date), if sent. */
  retryAfterMs() {
    const v = this.header('retry-after');
    if (v == null) return undefined;
    const secs = Number(v.trim());
    if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
    const at = Date.parse(v);
    return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
  }

  /** The body as JSON; `ambiguous` if it is not JSON (the provider answered). */
  json() {
    try {
      return JSON.parse(this.body);
    } catch (e) {
      throw ambiguous(`status ${this.status}, body is not JSON: ${e.message}`, { status: this.status });
    }
  }

  /** This response if 2xx, else the class of its status with the body as message. */
  errorForStatus() {
    if (this.status >= 200 && this.status < 300) return this;
    throw fromStatus(this.status, cut(this.body, 512), { retryAfterMs: this.retryAfterMs() });
  }
}

/**
 * Send one request over wasi:http and read the whole answer. The host's
 * egress gate adds credentials, enforces the allowlist and cuts the request
 * off at the attempt's deadline (the build disables timers, so there is no
 * JS-side timeout).
 *
 * A failure before any answer is reported as `unavailable`: fetch() does
 * not say whether the connection was refused or dropped after sending, but
 * the host knows, and reports the attempt as `ambiguous` when the request
 * may have reached the provider (see docs/adapter-guide.md).
 */
export async function send(url, { method = 'GET', headers = {}, body } = {}) {
  const init = { method, headers };
  if (body !== undefined) init.body = body;
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw unavailable(`request to ${url} failed: ${e && e.message ? e.message : e}`);
  }
  let text;
  try {
    text = await response.text();
  } catch (e) {
    throw ambiguous(`reading the answer of ${url} failed: ${e && e.message ? e.message : e}`, {
      status: response.status,
    });
  }
  return new Response(response.status, response.headers, text);
}

/**
 * What repeating an action does: `idempotency: 'safe'` (a read with no
 * effect: retried and failed over anywhere), `'keyed'` (the provider
 * deduplicates by the run's key at this app: retried there, never moved to
 * another app) or `'unsafe'` (not repeated after an ambiguous outcome).
 * `idempotent: true` is the older spelling of `'keyed'`.
 */
function declared(a) {
  if (a.idempotency !== undefined) {
    if (!['safe', 'keyed', 'unsafe'].includes(a.idempotency)) {
      throw new Error(`action ${a.name}: idempotency must be 'safe', 'keyed' or 'unsafe', not ${a.idempotency}`);
    }
    return a.idempotency;
  }
  return a.idempotent ? 'keyed' : 'unsafe';
}

/** The WIT `app-info` of a plain description. */
function appInfo(name, version, actions) {
  return {
    name,
    version,
    actions: actions.map((a) => ({
      name: a.name,
      description: a.description ?? '',
      inputSchema: JSON.stringify(a.input ?? {}),
      idempotency: declared(a),
    })),
  };
}

/** An exception as the WIT `adapter-error`: an adapter bug is internal. */
function contained(e) {
  if (e instanceof AdapterError) return e.toWit();
  return internal(`adapter bug: ${e && e.stack ? e.stack : e}`).toWit();
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * At most `max` UTF-16 units of `text`, never splitting a surrogate pair
 * (a lone half would not survive the trip to a WIT string): cut provider
 * text with this, never with `slice`.
 */
export function cut(text, max) {
  const s = String(text ?? '');
  if (s.length <= max) return s;
  let end = max;
  const c = s.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end -= 1;
  return s.slice(0, end);
}

/** A request an exchange-world adapter asks the host to send. */
export class Outgoing {
  constructor(method, url, { headers = {}, body, json, timeoutMs, state } = {}) {
    this.method = method.toUpperCase();
    this.url = url;
    this.headers = { ...headers };
    if (json !== undefined) {
      body = JSON.stringify(json);
      if (!Object.keys(this.headers).some((k) => k.toLowerCase() === 'content-type')) {
        this.headers['content-type'] = 'application/json';
      }
    }
    this.body = body;
    this.timeoutMs = timeoutMs;
    this.state = state;
  }

  toWit() {
    const body = this.body === undefined ? new Uint8Array() : typeof this.body === 'string' ? encoder.encode(this.body) : this.body;
    let state = this.state;
    if (state === undefined) state = new Uint8Array();
    else if (!(state instanceof Uint8Array)) state = encoder.encode(JSON.stringify(state));
    return {
      tag: 'send',
      val: {
        request: {
          method: this.method,
          url: this.url,
          headers: Object.entries(this.headers).map(([k, v]) => [k, String(v)]),
          body,
          timeoutMs: this.timeoutMs == null ? undefined : BigInt(Math.max(1, Math.round(this.timeoutMs))),
        },
        state,
      },
    };
  }
}

/** `new Outgoing(method, url, options)`: headers, body or json, timeoutMs, state. */
export const outgoing = (method, url, options) => new Outgoing(method, url, options);

/** Parse the `state` bytes a step carried as JSON (undefined when empty). */
export function stateJson(state) {
  return state.length === 0 ? undefined : JSON.parse(decoder.decode(state));
}

/**
 * Build the `exchange` export (exchange world) from a plain description:
 * `request(req)` returns the Outgoing to send, `response(req, answer)` the
 * output (or throws an AdapterError). For several requests per call give
 * `begin(req)` and `proceed(req, state, answer)` instead: each returns an
 * Outgoing (carrying `state`) or the output.
 */
export function defineExchange({ name, version, actions, request, response, begin, proceed }) {
  const info = appInfo(name, version, actions);
  const first = begin ?? request;
  const next = proceed ?? ((req, _state, answer) => response(req, answer));
  const step = (run) => {
    let out;
    try {
      out = run();
    } catch (e) {
      return { tag: 'done', val: { tag: 'err', val: contained(e) } };
    }
    if (out instanceof Outgoing) return out.toWit();
    return { tag: 'done', val: { tag: 'ok', val: { output: JSON.stringify(out ?? null) } } };
  };
  return {
    describe() {
      return info;
    },
    start(witRequest) {
      return step(() => {
        const req = new Request(witRequest);
        if (!info.actions.some((a) => a.name === req.action)) throw req.unknownAction();
        return first(req);
      });
    },
    resume(witRequest, state, witResponse) {
      return step(() => {
        const headers = new Map(witResponse.headers.map(([k, v]) => [k.toLowerCase(), v]));
        const answer = new Response(witResponse.status, headers, decoder.decode(witResponse.body));
        return next(new Request(witRequest), state, answer);
      });
    },
  };
}

/**
 * Build the `exchange-reading` export (world `exchange-reading-adapter`)
 * from the same actions as `defineExchange`: those with `readByHost: true`.
 * For them, when the answer to the request is a 2xx whose body is a JSON
 * document, the host makes that body the output itself and does not call
 * `response` (one step instead of two); any other answer still goes to
 * `response`. Declare it only when `response` would return exactly that
 * body for such an answer.
 *
 *   export const exchangeReading = defineReading(actions);
 */
export function defineReading(actions) {
  const seen = new Set();
  const reads = [];
  for (const a of actions) {
    if (a.readByHost && !seen.has(a.name)) {
      seen.add(a.name);
      reads.push({ action: a.name, reading: 'json-body' });
    }
  }
  return {
    readings() {
      return reads;
    },
  };
}

/**
 * Build the `provider` export from a plain description and one async
 * `call(request)` that returns a JSON-serializable value or throws an
 * AdapterError. Anything else thrown becomes `internal` with its message.
 *
 * actions: [{ name, description, input: {field: {type, required}}, idempotent }]
 */
export function defineAdapter({ name, version, actions, call }) {
  const info = appInfo(name, version, actions);
  return {
    describe() {
      return info;
    },
    async call(witRequest) {
      let output;
      try {
        const request = new Request(witRequest);
        if (!info.actions.some((a) => a.name === request.action)) throw request.unknownAction();
        output = await call(request);
      } catch (e) {
        throw contained(e);
      }
      return { output: JSON.stringify(output ?? null) };
    },
  };
}
