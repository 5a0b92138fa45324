// The client: one object per server, product and env, with the reference's
// resources (`sy.healthcheck`, `sy.quota`, `sy.fallback`, `sy.features`).

import { definedBody, normaliseDefinition, type Kind } from './builders.js';
import { errorFor, NetworkError, SwitchyardError, type ErrorBody } from './errors.js';
import { readEvents } from './events.js';
import type { Definition, ProviderState, RetryPolicy, RunOptions, RunResult, ServerEvent, Trace } from './types.js';

/** How to reach and call a Switchyard server. */
export interface SwitchyardOptions {
  /** Base URL of `switchyard serve` (`http://127.0.0.1:7400`). */
  url: string;
  /** A bearer token (`SWITCHYARD_TOKEN`, or one made with `switchyard token create`). */
  token?: string;
  /** Default product of every call. */
  product?: string;
  /** Default env of runs and live views. */
  env?: string;
  /** Retry of `overloaded` / `in-progress` answers (default on, at most 10 s of waiting); `false` turns it off. */
  retry?: RetryPolicy | false;
  /** Timeout of one HTTP request, ms (default 60 000; a run's own deadline is `deadlineMs`). */
  timeoutMs?: number;
  /** A `fetch` to use instead of the platform's. */
  fetch?: typeof fetch;
}

const KINDS: Record<Kind, string> = {
  healthcheck: 'healthchecks',
  quota: 'quotas',
  fallback: 'fallbacks',
  feature: 'features',
  cache: 'caches',
};

const DEFAULT_RETRY: Required<RetryPolicy> = { overloaded: true, inProgress: true, maxWaitMs: 10_000, maxSends: 5 };

function segment(value: string | undefined, what: string): string {
  if (!value) throw new TypeError(`${what} is not set: give it to this call or to new Switchyard({ ${what} })`);
  return encodeURIComponent(value);
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), reject(signal.reason)), { once: true });
  });

/** A Switchyard server, for one product and env by default. */
export class Switchyard {
  readonly url: string;
  readonly product?: string;
  readonly env?: string;
  /** Healthchecks: `define`, `create`, `fetch`, `fetchAll`, `update`, `delete`, `status`, `check`. */
  readonly healthcheck: Healthchecks;
  /** Weighted quotas: `define`, `create`, `fetch`, `fetchAll`, `update`, `delete`, `run`, `providers`, `history`. */
  readonly quota: Routes;
  /** Ordered fallbacks: `define`, `create`, `fetch`, `fetchAll`, `update`, `delete`, `run`, `providers`, `history`. */
  readonly fallback: Routes;
  /** Features (steps): `create`, `fetch`, `fetchAll`, `update`, `delete`, `run`. */
  readonly features: Resource;
  /** Result caches: `create`, `fetch`, `fetchAll`, `update`, `delete`. */
  readonly caches: Resource;
  private readonly token?: string;
  private readonly retryPolicy: RetryPolicy | false;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: SwitchyardOptions) {
    if (!options?.url) throw new TypeError('new Switchyard({ url }): url is required (http://127.0.0.1:7400)');
    this.url = options.url.replace(/\/+$/, '');
    this.token = options.token;
    this.product = options.product;
    this.env = options.env;
    this.retryPolicy = options.retry ?? {};
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.fetchImpl = options.fetch ?? globalThis.fetch;
    this.healthcheck = new Healthchecks(this, 'healthcheck');
    this.quota = new Routes(this, 'quota');
    this.fallback = new Routes(this, 'fallback');
    this.features = new Resource(this, 'feature');
    this.caches = new Resource(this, 'cache');
  }

  /** The reference's alias of `healthcheck`. */
  get health(): Healthchecks {
    return this.healthcheck;
  }

  /** One HTTP call; answers the parsed JSON body or throws the typed error. */
  async request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    extra: { idempotencyKey?: string; signal?: AbortSignal; contentType?: string } = {},
  ): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json', 'x-switchyard-actor': 'api' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = extra.contentType ?? 'application/json';
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const signal = extra.signal ? AbortSignal.any([extra.signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await this.fetchImpl(this.url + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (e) {
      if (extra.signal?.aborted) throw extra.signal.reason;
      const why = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
      throw new NetworkError(0, { code: 'network', message: `${method} ${this.url}${path}: no answer (${why})` }, extra.idempotencyKey);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!res.ok) {
      const errBody: ErrorBody =
        parsed && typeof parsed === 'object' ? (parsed as ErrorBody) : { message: `HTTP ${res.status}: ${String(parsed ?? '')}` };
      throw errorFor(res.status, errBody, extra.idempotencyKey, res.headers.get('retry-after'));
    }
    return parsed as T;
  }

  /** Path prefix `/v1/{product}`. */
  productPath(product?: string): string {
    return `/v1/${segment(product ?? this.product, 'product')}`;
  }

  /** Path prefix `/v1/{product}/{env}`. */
  envPath(product?: string, env?: string): string {
    return `${this.productPath(product)}/${segment(env ?? this.env, 'env')}`;
  }

  /** Run a fallback, quota or feature, with the client's retry of `overloaded` / `in-progress`. */
  async run<O = unknown>(kind: 'quota' | 'fallback' | 'feature', options: RunOptions): Promise<RunResult<O>> {
    if (!options?.tag) throw new TypeError(`${kind}.run: tag is required`);
    if (options.session !== undefined && (typeof options.session !== 'object' || !options.session.tag || !options.session.token)) {
      throw new TypeError(`${kind}.run: session must be { tag, token }`);
    }
    const key = options.idempotencyKey ?? globalThis.crypto.randomUUID();
    const body: Record<string, unknown> = { input: options.input ?? {}, idempotency_key: key };
    if (options.session) body.session = { tag: options.session.tag, token: options.session.token };
    if (options.cache) body.cache = options.cache;
    if (options.deadlineMs !== undefined) body.deadline_ms = options.deadlineMs;
    const path = `${this.envPath(options.product, options.env)}/${KINDS[kind]}/${segment(options.tag, 'tag')}/run`;
    const policy = options.retry === undefined ? this.retryPolicy : options.retry;
    const p = policy === false ? { ...DEFAULT_RETRY, overloaded: false, inProgress: false } : { ...DEFAULT_RETRY, ...policy };
    const started = performance.now();
    let waited = 0;
    for (let sends = 1; ; sends++) {
      try {
        const r = await this.request<{ output: O; provider: string | null; idempotency_key: string; trace: Trace }>('POST', path, body, {
          idempotencyKey: key,
          signal: options.signal,
        });
        return {
          output: r.output,
          provider: r.provider,
          idempotencyKey: r.idempotency_key,
          trace: r.trace,
          latencyMs: performance.now() - started,
          sends,
        };
      } catch (e) {
        if (!(e instanceof SwitchyardError)) throw e;
        const retryable = (e.code === 'overloaded' && p.overloaded) || (e.code === 'in-progress' && p.inProgress) || (e.code === 'idempotency-unavailable' && p.overloaded);
        if (!retryable || sends >= p.maxSends) throw e;
        const wait = Math.max(e.retryAfterMs ?? 1000, 50);
        // never wait past the client's budget, nor past the run's own deadline
        const budget = Math.min(p.maxWaitMs, options.deadlineMs ?? Infinity);
        if (waited + wait > budget || performance.now() - started + wait > budget) throw e;
        waited += wait;
        await sleep(wait, options.signal);
      }
    }
  }

  /** Server-sent events (`state`, `state-diff`, `run`, `audit`, `lagged`) as an async iterator; stop with `break` or the signal. */
  async *events(options: { signal?: AbortSignal } = {}): AsyncGenerator<ServerEvent> {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const ctl = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, ctl.signal]) : ctl.signal;
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.url}/v1/events`, { headers, signal });
    } catch (e) {
      if (options.signal?.aborted) return;
      throw new NetworkError(0, { code: 'network', message: `GET ${this.url}/v1/events: no answer (${(e as Error).message})` });
    }
    if (!res.ok || !res.body) {
      const text = await res.text();
      let body: ErrorBody;
      try {
        body = JSON.parse(text) as ErrorBody;
      } catch {
        body = { message: text };
      }
      throw errorFor(res.status, body, undefined, res.headers.get('retry-after'));
    }
    try {
      yield* readEvents(res.body, signal);
    } finally {
      ctl.abort();
    }
  }

  /** The calling token's name, role and scope. */
  whoami(): Promise<{ name: string; role: string; products: string[]; envs?: string[] }> {
    return this.request('GET', '/v1/whoami');
  }

  /** The product's apps and their actions. */
  apps(product?: string): Promise<unknown> {
    return this.request('GET', `${this.productPath(product)}/apps`);
  }

  /** The runs this replica served (newest first). */
  runs(query: { key?: string; tag?: string; provider?: string; outcome?: string; product?: string; limit?: number } = {}): Promise<unknown> {
    const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
    return this.request('GET', `/v1/runs${q.size ? `?${q}` : ''}`);
  }

  /** An app's admission limits (`config`) and live state per env (`envs`). */
  admission(app: string, product?: string): Promise<{ config: Record<string, unknown>; envs: Record<string, unknown> }> {
    return this.request('GET', `${this.productPath(product)}/apps/${segment(app, 'app')}/admission`);
  }

  /** Replace an app's admission limits (`{max_in_flight, max_queue, queue_timeout_ms, rate_per_sec, burst, max_cooldown_ms}`). */
  setAdmission(app: string, config: Record<string, unknown>, product?: string): Promise<unknown> {
    return this.request('PUT', `${this.productPath(product)}/apps/${segment(app, 'app')}/admission`, config);
  }

  /** Drain a provider (runs skip it) or restore it, in every definition of the product. */
  drain(provider: string, options: { restore?: boolean; product?: string } = {}): Promise<unknown> {
    const what = options.restore ? 'restore' : 'drain';
    return this.request('POST', `${this.productPath(options.product)}/providers/${segment(provider, 'provider')}/${what}`);
  }
}

/** What a definition call may override. */
export interface Where {
  product?: string;
  env?: string;
}

/** Create, fetch, update and delete definitions of one kind. */
export class Resource {
  constructor(
    protected readonly client: Switchyard,
    protected readonly kind: Kind,
  ) {}

  protected path(product?: string): string {
    return `${this.client.productPath(product)}/definitions/${KINDS[this.kind]}`;
  }

  /** Create it from the reference's object form (`event`, `type`, an option without `provider` takes its app's name). 409 `exists` if the tag is taken. */
  async create(definition: Record<string, unknown> & { tag: string; product?: string }): Promise<Definition> {
    const body = normaliseDefinition(this.kind, definition);
    return this.client.request('POST', this.path(definition.product), body);
  }

  /** One definition; with `env` (or `'*'`), each option's live state in `states[env]`. */
  fetch(tag: string, where: Where = {}): Promise<Definition> {
    const q = where.env ? `?env=${encodeURIComponent(where.env)}` : '';
    return this.client.request('GET', `${this.path(where.product)}/${segment(tag, 'tag')}${q}`);
  }

  /** Every definition of this kind (sorted by tag); with `env`, with live state. */
  async fetchAll(where: Where = {}): Promise<Definition[]> {
    const q = where.env ? `?env=${encodeURIComponent(where.env)}` : '';
    const r = await this.client.request<Record<string, Definition[]>>('GET', `${this.path(where.product)}${q}`);
    return r[KINDS[this.kind]] ?? [];
  }

  /** Change some fields (`{description, options}`); the rest stays (a JSON merge patch, checked as a whole). */
  update(tag: string, changes: Record<string, unknown>, where: Where = {}): Promise<Definition> {
    const body = normaliseDefinition(this.kind, changes);
    return this.client.request('PATCH', `${this.path(where.product)}/${segment(tag, 'tag')}`, body, {
      contentType: 'application/merge-patch+json',
    });
  }

  /** Replace the whole definition. */
  replace(tag: string, definition: Record<string, unknown>, where: Where = {}): Promise<Definition> {
    const body = normaliseDefinition(this.kind, definition);
    return this.client.request('PUT', `${this.path(where.product)}/${segment(tag, 'tag')}`, body);
  }

  /** Delete it (refused while another definition uses it). */
  async delete(tag: string, where: Where = {}): Promise<void> {
    await this.client.request('DELETE', `${this.path(where.product)}/${segment(tag, 'tag')}`);
  }

  /** Create or replace: what `define` does with the body its handler built. */
  protected async upsert(body: Record<string, unknown>, product?: string): Promise<Definition> {
    try {
      return await this.client.request('POST', this.path(product), body);
    } catch (e) {
      if (e instanceof SwitchyardError && e.code === 'exists') {
        return this.client.request('PUT', `${this.path(product)}/${segment(body.tag as string, 'tag')}`, body);
      }
      throw e;
    }
  }

  /** Run it (features, quotas, fallbacks). */
  run<O = unknown>(options: RunOptions): Promise<RunResult<O>> {
    if (this.kind === 'healthcheck' || this.kind === 'cache') throw new TypeError(`a ${this.kind} is not run`);
    return this.client.run<O>(this.kind, options);
  }
}

/** The code-first definition of a quota or fallback. */
export interface DefineSpec<C> {
  tag: string;
  product?: string;
  name?: string;
  description?: string;
  input?: Record<string, unknown>;
  handler: (ctx: C) => unknown;
  [field: string]: unknown;
}

/** Quotas and fallbacks: definitions that route runs to providers. */
export class Routes extends Resource {
  /** Define it with the reference's builder (`handler: ctx => ctx.provider('twilio').weight(70)…`); creates it, or replaces it if the tag exists. */
  async define(spec: DefineSpec<any>): Promise<Definition> {
    const body = await definedBody(this.kind as 'quota' | 'fallback', spec, this.client.env);
    return this.upsert(body, spec.product);
  }

  /** Each provider's health, breaker, counts, scorecard and admission in an env. */
  async providers(tag: string, where: Where = {}): Promise<ProviderState[]> {
    const r = await this.client.request<ProviderState[] | { providers: ProviderState[] }>(
      'GET',
      `${this.client.envPath(where.product, where.env)}/${KINDS[this.kind]}/${segment(tag, 'tag')}/providers`,
    );
    return Array.isArray(r) ? r : r.providers;
  }

  /** A provider's success rate and latency per step (`from`/`to` Unix ms, `step` ms). */
  history(tag: string, provider: string, query: Where & { from?: number; to?: number; step?: number } = {}): Promise<unknown> {
    const q = new URLSearchParams();
    for (const k of ['from', 'to', 'step'] as const) if (query[k] !== undefined) q.set(k, String(query[k]));
    return this.client.request(
      'GET',
      `${this.client.envPath(query.product, query.env)}/${KINDS[this.kind]}/${segment(tag, 'tag')}/providers/${segment(provider, 'provider')}/history${q.size ? `?${q}` : ''}`,
    );
  }
}

/** Healthchecks, with the reference's `define` and the live status. */
export class Healthchecks extends Resource {
  /** Define it with the reference's builder (`ctx.probe().app(…).action(…); ctx.interval(…); ctx.env('prd')`); creates or replaces it. */
  async define(spec: DefineSpec<any>): Promise<Definition> {
    const body = await definedBody('healthcheck', spec, this.client.env);
    return this.upsert(body, spec.product);
  }

  /** Status, last checked / available and recent history in an env. */
  status(tag: string, where: Where = {}): Promise<{ status: string; last_checked_unix_ms?: number | null; history?: unknown[] }> {
    return this.client.request('GET', `${this.client.envPath(where.product, where.env)}/healthchecks/${segment(tag, 'tag')}`);
  }

  /** Run it now, whatever its schedule. */
  check(tag: string, where: Where = {}): Promise<unknown> {
    return this.client.request('POST', `${this.client.envPath(where.product, where.env)}/healthchecks/${segment(tag, 'tag')}/check`);
  }
}
