// The shapes the HTTP API answers with (host/server/src/api/openapi.json).

/** The explain trace every run carries. */
export interface Trace {
  kind?: string;
  tag?: string;
  env?: string;
  considered?: string[];
  skipped?: Record<string, unknown>[];
  attempts?: Record<string, unknown>[];
  served_by?: string | null;
  cached?: boolean;
  replayed?: boolean;
  pinned_to?: string;
  [field: string]: unknown;
}

/** What a run answers. */
export interface RunResult<O = unknown> {
  /** The mapped output of the provider that served. */
  output: O;
  /** Who served (null when a result cache did). */
  provider: string | null;
  /** The run's idempotency key (the one given, or the one the client made). */
  idempotencyKey: string;
  /** The explain trace: providers considered, skipped, every attempt. */
  trace: Trace;
  /** Client-side time from the first request to the answer, ms (retries included). */
  latencyMs: number;
  /** How many times the client sent the run (more than 1 after `overloaded` / `in-progress` waits). */
  sends: number;
}

/** The session a run acts for (the reference's `ISession`). */
export interface Session {
  tag: string;
  token: string;
}

/** What a run takes besides its tag. */
export interface RunOptions<I = Record<string, unknown>> {
  tag: string;
  input?: I;
  session?: Session;
  /** Tag of a result cache to serve from and fill. */
  cache?: string;
  /** One key for the whole run; default a fresh UUID, reused by the client's own retries. */
  idempotencyKey?: string;
  /** Deadline of the whole run on the server, ms. */
  deadlineMs?: number;
  /** Override the client's env / product for this run. */
  env?: string;
  product?: string;
  /** Override the client's retry policy for this run (`false`: never retry). */
  retry?: RetryPolicy | false;
  signal?: AbortSignal;
}

/** Automatic retry of answers that say nothing was done: `overloaded`, `in-progress`, `idempotency-unavailable`. Never `ambiguous`. */
export interface RetryPolicy {
  /** Retry `overloaded` (503 with Retry-After). Default true. */
  overloaded?: boolean;
  /** Retry `in-progress` (409: the same key is still running), getting its stored outcome. Default true. */
  inProgress?: boolean;
  /** Most time spent waiting between sends, in all, ms. Default 10 000. */
  maxWaitMs?: number;
  /** Most sends of one run. Default 5. */
  maxSends?: number;
}

/** A field of a definition's input schema. */
export interface FieldSchema {
  type: 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array';
  required?: boolean;
  description?: string;
}

/** A quota or fallback option as the API stores it. */
export interface ProviderOption {
  provider: string;
  type?: 'action' | 'feature';
  app?: string;
  action?: string;
  tag?: string;
  input?: unknown;
  output?: unknown;
  weight?: number;
  retries?: number;
  backoff_ms?: number;
  max_backoff_ms?: number;
  timeout_ms?: number;
  healthcheck?: string;
  idempotent?: boolean;
  breaker_key?: string;
  breaker?: Record<string, unknown>;
  check_interval_ms?: number;
  on?: Record<string, unknown>[];
  hedge?: Record<string, unknown>;
  /** With `fetch(tag, {env})`: the option's live state per env. */
  states?: Record<string, ProviderState>;
  [field: string]: unknown;
}

/** A definition as the API stores it (healthcheck, quota, fallback, feature or cache). */
export interface Definition {
  tag: string;
  product?: string;
  name?: string;
  description?: string;
  input?: Record<string, FieldSchema> | Record<string, unknown>;
  options?: ProviderOption[];
  providers?: ProviderOption[];
  [field: string]: unknown;
}

/** A provider's live state (`GET …/providers`). */
export interface ProviderState {
  provider?: string;
  app?: string;
  action?: string;
  status?: 'healthy' | 'unhealthy' | 'unknown';
  last_checked_unix_ms?: number | null;
  last_available_unix_ms?: number | null;
  last_available?: boolean | null;
  breaker?: { key?: string; state?: 'closed' | 'open' | 'half-open'; requests?: number; failures?: number; last_error?: string | null };
  counts?: Record<string, number>;
  weight?: number;
  scorecard?: Record<string, unknown>;
  [field: string]: unknown;
}

/** One server-sent event of `GET /v1/events`. */
export interface ServerEvent<D = unknown> {
  /** `state`, `state-diff`, `run`, `audit` or `lagged`. */
  event: string;
  data: D;
  id?: string;
}
