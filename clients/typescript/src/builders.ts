// The reference's code-first builders (`handler: ctx => ctx.provider('twilio').weight(70)…`)
// and the translation of the reference's object form (`event`, `type:
// FeatureEventTypes.ACTION`, `check_interval`, camelCase) into the API's
// definition bodies.

import { toTemplate, type Mapping } from './mapping.js';
import type { Definition, ProviderOption } from './types.js';

/** Option types, under the reference's names too (`FeatureEventTypes.ACTION`). */
export const FeatureEventTypes = { ACTION: 'action', EVENT: 'action', FEATURE: 'feature' } as const;

/** Input field types. The reference's string-like types map to `string`. */
export const DataTypes = {
  STRING: 'string',
  NUMBER: 'number',
  INTEGER: 'integer',
  BOOLEAN: 'boolean',
  OBJECT: 'object',
  ARRAY: 'array',
  NUMBER_STRING: 'string',
  NOSPACES_STRING: 'string',
  EMAIL_STRING: 'string',
  UUID: 'string',
} as const;

const SNAKE: Record<string, string> = {
  checkInterval: 'check_interval_ms',
  check_interval: 'check_interval_ms',
  checkIntervalMs: 'check_interval_ms',
  interval: 'interval_ms',
  intervalMs: 'interval_ms',
  timeout: 'timeout_ms',
  timeoutMs: 'timeout_ms',
  backoff: 'backoff_ms',
  backoffMs: 'backoff_ms',
  maxBackoffMs: 'max_backoff_ms',
  breakerKey: 'breaker_key',
  deadlineMs: 'deadline_ms',
  panicMode: 'panic_mode',
  failoverAfterAmbiguous: 'failover_after_ambiguous',
  ttlMs: 'ttl_ms',
  maxEntries: 'max_entries',
};

function renameKeys(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined) continue;
    out[SNAKE[k] ?? k] = v;
  }
  return out;
}

function optionType(t: unknown, where: string): 'action' | 'feature' {
  const s = String(t).toLowerCase();
  if (s === 'action' || s === 'event') return 'action';
  if (s === 'feature') return 'feature';
  throw new TypeError(`${where}.type: '${String(t)}' is not an option type; use 'action' (the reference's FeatureEventTypes.ACTION) or 'feature'`);
}

/** One option in the reference's object form, as the API stores it. */
export function normaliseOption(raw: Record<string, unknown>, where: string): ProviderOption {
  const o = renameKeys(raw);
  if ('event' in o) {
    if (o.action !== undefined && o.action !== o.event) {
      throw new TypeError(`${where}: give either action or the reference's event, not both`);
    }
    o.action = o.event;
    delete o.event;
  }
  if (o.type !== undefined) {
    const t = optionType(o.type, where);
    if (t === 'action') delete o.type;
    else o.type = t;
  }
  if (o.provider === undefined) {
    const name = o.type === 'feature' ? o.tag : o.app;
    if (typeof name === 'string') o.provider = name;
  }
  if (typeof o.input === 'function') o.input = toTemplate(o.input as Mapping, '$Input', `${where}.input`);
  if (typeof o.output === 'function') o.output = toTemplate(o.output as Mapping, '$Response', `${where}.output`);
  return o as ProviderOption;
}

/** A definition in the reference's object form, as the API stores it. */
export function normaliseDefinition(kind: Kind, raw: Record<string, unknown>): Record<string, unknown> {
  const { handler, product: _product, env: _env, ...rest } = raw;
  if (handler !== undefined) throw new TypeError(`${kind}: 'handler' belongs to define(), not create()`);
  const def = renameKeys(rest);
  const list = kind === 'quota' ? 'providers' : 'options';
  // The reference calls a quota's providers `options` too.
  if (kind === 'quota' && def.options !== undefined && def.providers === undefined) {
    def.providers = def.options;
    delete def.options;
  }
  if (Array.isArray(def[list])) {
    def[list] = (def[list] as Record<string, unknown>[]).map((o, i) => normaliseOption(o, `${list}[${i}]`));
  }
  if (kind === 'healthcheck' && 'event' in def) {
    def.action = def.event;
    delete def.event;
  }
  return def;
}

export type Kind = 'healthcheck' | 'quota' | 'fallback' | 'feature' | 'cache';

/** One option being built: `ctx.provider('twilio').weight(70).app('twilio-app').action('send-sms')`. */
export class OptionBuilder {
  /** The option as the API will store it. */
  readonly option: Record<string, unknown>;

  constructor(
    provider: string,
    private readonly where: string,
  ) {
    this.option = { provider };
  }

  /** Share of a quota's traffic (relative: 70/30 and 7/3 split alike). */
  weight(weight: number): this {
    this.option.weight = weight;
    return this;
  }
  /** Skip this option while that healthcheck fails. */
  healthcheck(tag: string): this {
    this.option.healthcheck = tag;
    return this;
  }
  /** The app (an account of a provider) that serves it. */
  app(tag: string): this {
    this.option.app = tag;
    return this;
  }
  /** The app's action to call. */
  action(name: string): this {
    this.option.action = name;
    return this;
  }
  /** The reference's name for `action`. */
  event(name: string): this {
    return this.action(name);
  }
  /** Run a feature (its steps) instead of an app's action. */
  feature(tag: string): this {
    this.option.type = 'feature';
    this.option.tag = tag;
    return this;
  }
  /** The request's input: a template (`{to: '$Input{phone}'}`) or a function reading the run's input. */
  input(mapping: Mapping): this {
    this.option.input = toTemplate(mapping, '$Input', `${this.where}.input`);
    return this;
  }
  /** The reference's `mapInput`: same as `input`. */
  mapInput(mapping: Mapping): this {
    return this.input(mapping);
  }
  /** What the run answers when this option serves: a template (`{id: '$Response{id}'}`) or a function reading the response. */
  output(mapping: Mapping): this {
    this.option.output = toTemplate(mapping, '$Response', `${this.where}.output`);
    return this;
  }
  /** The reference's `mapOutput`: same as `output`. */
  mapOutput(mapping: Mapping): this {
    return this.output(mapping);
  }
  /** Retries of this option before the next one. */
  retries(n: number): this {
    this.option.retries = n;
    return this;
  }
  /** Backoff between retries, ms (full jitter), and its cap. */
  backoff(ms: number, maxMs?: number): this {
    this.option.backoff_ms = ms;
    if (maxMs !== undefined) this.option.max_backoff_ms = maxMs;
    return this;
  }
  /** Timeout of one attempt, ms. */
  timeout(ms: number): this {
    this.option.timeout_ms = ms;
    return this;
  }
  /** Run its healthcheck at least this often, ms (the reference's `check_interval`). */
  checkInterval(ms: number): this {
    this.option.check_interval_ms = ms;
    return this;
  }
  /** Mark the action idempotent (or not) whatever its adapter declares. */
  idempotent(yes = true): this {
    this.option.idempotent = yes;
    return this;
  }
  /** Breaker settings of this option (`{failure_threshold, open_timeout, …}`). */
  breaker(settings: Record<string, unknown>): this {
    this.option.breaker = renameKeys(settings);
    return this;
  }
  /** One breaker per key (`'stripe/$Input{merchant}'`), the reference's `getKey`. */
  breakerKey(template: string): this {
    this.option.breaker_key = template;
    return this;
  }
  /** Rules on provider errors (`[{status: 402, then: 'stop'}]`). */
  on(rules: Record<string, unknown>[]): this {
    this.option.on = rules;
    return this;
  }
  /** Hedged requests for a safe action (`{delay_ms: 250}`). */
  hedge(settings: Record<string, unknown>): this {
    this.option.hedge = settings;
    return this;
  }

  /** The option, checked for what the server would refuse less clearly. */
  build(): ProviderOption {
    const o = { ...this.option };
    if (o.type !== 'feature' && o.app === undefined) o.app = o.provider;
    if (o.type !== 'feature' && o.action === undefined) {
      throw new TypeError(`${this.where}: no action; add .action('…') (the reference's event)`);
    }
    return o as ProviderOption;
  }
}

/** Settings a definition's handler may set besides its options. */
class DefinitionContext {
  protected readonly settings: Record<string, unknown> = {};

  /** Deadline of a whole run, ms. */
  deadline(ms: number): this {
    this.settings.deadline_ms = ms;
    return this;
  }
  /** Breaker settings of the whole definition. */
  breaker(settings: Record<string, unknown>): this {
    this.settings.breaker = renameKeys(settings);
    return this;
  }
  /** Routing that learns (`{strategy: 'success-rate'}`). */
  adaptive(settings: Record<string, unknown>): this {
    this.settings.adaptive = settings;
    return this;
  }
  /** Rules on provider errors for every option. */
  on(rules: Record<string, unknown>[]): this {
    this.settings.on = rules;
    return this;
  }
  /** Hedged requests for every (safe) option. */
  hedge(settings: Record<string, unknown>): this {
    this.settings.hedge = settings;
    return this;
  }
  /** After an ambiguous attempt of a non-safe action, move on anyway (default: stay or stop). */
  failoverAfterAmbiguous(yes = true): this {
    this.settings.failover_after_ambiguous = yes;
    return this;
  }
  /** Send to the next option when an app's admission is full. */
  spillover(yes = true): this {
    this.settings.spillover = yes;
    return this;
  }
}

/** `handler: ctx => …` of `quota.define`. */
export class QuotaContext extends DefinitionContext {
  readonly options: OptionBuilder[] = [];

  /** Add a provider to the split. */
  provider(name: string): OptionBuilder {
    const b = new OptionBuilder(name, `providers[${this.options.length}]`);
    this.options.push(b);
    return b;
  }
  /** With no eligible provider, try them all anyway (default true). */
  panicMode(yes = true): this {
    this.settings.panic_mode = yes;
    return this;
  }

  /** The definition's fields this handler set. */
  body(): Record<string, unknown> {
    return { ...this.settings, providers: this.options.map((o) => o.build()) };
  }
}

/** `handler: ctx => …` of `fallback.define`. */
export class FallbackContext extends DefinitionContext {
  readonly options: OptionBuilder[] = [];

  /** The option tried first. */
  primary(name: string): OptionBuilder {
    if (this.options.length > 0) {
      throw new TypeError(`options[0]: primary('${name}') must come first and once; use fallback('${name}') for the next options`);
    }
    return this.add(name);
  }
  /** The next option, tried when the ones before failed. */
  fallback(name: string): OptionBuilder {
    return this.add(name);
  }
  /** Any option, in order (same as primary / fallback). */
  provider(name: string): OptionBuilder {
    return this.add(name);
  }
  private add(name: string): OptionBuilder {
    const b = new OptionBuilder(name, `options[${this.options.length}]`);
    this.options.push(b);
    return b;
  }

  /** The definition's fields this handler set. */
  body(): Record<string, unknown> {
    return { ...this.settings, options: this.options.map((o) => o.build()) };
  }
}

/** `ctx.probe().app('stripe-app').action('health').input({...})`. */
export class ProbeBuilder {
  appTag?: string;
  actionName?: string;
  probeInput: Record<string, unknown> = {};

  app(tag: string): this {
    this.appTag = tag;
    return this;
  }
  action(name: string): this {
    this.actionName = name;
    return this;
  }
  /** The reference's name for `action`. */
  event(name: string): this {
    return this.action(name);
  }
  /** The probe's input (the same in every env given with `ctx.env`). */
  input(value: Record<string, unknown>): this {
    this.probeInput = value;
    return this;
  }
}

/** `handler: ctx => …` of `healthcheck.define`. */
export class HealthcheckContext {
  private readonly probes: ProbeBuilder[] = [];
  private readonly envs: { env: string; input?: Record<string, unknown> }[] = [];
  private readonly settings: Record<string, unknown> = {};

  /** What to call: an app's action. */
  probe(): ProbeBuilder {
    const p = new ProbeBuilder();
    this.probes.push(p);
    return p;
  }
  /** How often to check, ms. */
  interval(ms: number): this {
    this.settings.interval_ms = ms;
    return this;
  }
  /** Tries within one check before it counts as failed. */
  retries(n: number): this {
    this.settings.retries = n;
    return this;
  }
  /** Timeout of one probe, ms. */
  timeout(ms: number): this {
    this.settings.timeout_ms = ms;
    return this;
  }
  /** Check in this env (call once per env); `input` overrides the probe's input there. */
  env(env: string, input?: Record<string, unknown>): this {
    this.envs.push({ env, input });
    return this;
  }

  /** The definition's fields this handler set; `defaultEnv` when no `env()` was called. */
  body(defaultEnv: string | undefined): Record<string, unknown> {
    if (this.probes.length !== 1) {
      throw new TypeError(`healthcheck: call ctx.probe() exactly once (got ${this.probes.length}); a Switchyard healthcheck probes one app action`);
    }
    const [p] = this.probes;
    if (!p.appTag) throw new TypeError("healthcheck: the probe has no app; ctx.probe().app('…').action('…')");
    if (!p.actionName) throw new TypeError("healthcheck: the probe has no action; ctx.probe().app('…').action('…')");
    const envs = this.envs.length > 0 ? this.envs : defaultEnv ? [{ env: defaultEnv }] : [];
    if (envs.length === 0) throw new TypeError("healthcheck: no env; call ctx.env('prd') or give the client an env");
    const input: Record<string, unknown> = {};
    for (const e of envs) input[e.env] = e.input ?? p.probeInput;
    return { ...this.settings, app: p.appTag, action: p.actionName, input };
  }
}

/** The body `define` sends, from a handler and the definition's other fields. */
export async function definedBody(
  kind: 'healthcheck' | 'quota' | 'fallback',
  spec: Record<string, unknown>,
  defaultEnv: string | undefined,
): Promise<Record<string, unknown>> {
  const { handler, ...rest } = spec;
  if (typeof handler !== 'function') throw new TypeError(`${kind}.define: 'handler' must be a function (ctx) => …`);
  const base = normaliseDefinition(kind, rest);
  if (kind === 'healthcheck') {
    const ctx = new HealthcheckContext();
    await handler(ctx);
    return { ...base, ...ctx.body(defaultEnv) };
  }
  const ctx = kind === 'quota' ? new QuotaContext() : new FallbackContext();
  await handler(ctx);
  const body = { ...base, ...ctx.body() } as Definition;
  const list = kind === 'quota' ? body.providers : body.options;
  if (!list || list.length === 0) {
    throw new TypeError(`${kind}.define: the handler added no option; call ctx.${kind === 'quota' ? 'provider' : 'primary'}('…')`);
  }
  return body;
}
