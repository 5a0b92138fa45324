// Errors typed by Switchyard's stable error codes (docs/api.md#errors).

import type { Trace } from './types.js';

/** Every `code` the server answers with (kept in step with /openapi.json by a test). */
export const ERROR_CODES = [
  'unauthorized',
  'not-found',
  'invalid-body',
  'body-too-large',
  'invalid-definition',
  'exists',
  'store',
  'invalid-input',
  'mapping',
  'no-provider',
  'all-failed',
  'rejected',
  'stopped',
  'ambiguous',
  'deadline-exceeded',
  'overloaded',
  'method-not-allowed',
  'invalid-query',
  'invalid-config',
  'invalid-header',
  'in-progress',
  'idempotency-unavailable',
  'forbidden',
  'too-many-failures',
  'cluster-unavailable',
  'too-many-tokens',
] as const;

/** A server error code, or `network` when no answer came back. */
export type ErrorCode = (typeof ERROR_CODES)[number] | 'network';

/** One attempt of a run, as its trace records it. */
export interface Attempt {
  provider?: string;
  app?: string;
  action?: string;
  outcome?: string;
  error?: string;
  class?: string;
  duration_ms?: number;
  [field: string]: unknown;
}

/** Where an ambiguous action may have executed (docs/engine.md#idempotency-one-execution-at-one-app). */
export interface Reconcile {
  app: string;
  provider: string;
  idempotencyKey: string;
}

/** The JSON body of an error answer. */
export interface ErrorBody {
  code?: string;
  message?: string;
  field?: string;
  trace?: Trace;
  retry_after_ms?: number;
  open?: boolean;
  last_error?: string;
  reconcile?: { app: string; provider: string; idempotency_key: string };
  problems?: string[];
}

/** Any error the server answered, or a request that got no answer. */
export class SwitchyardError extends Error {
  /** Stable error code (`all-failed`, `overloaded`, …; `network` when no answer came). */
  readonly code: ErrorCode;
  /** HTTP status (0 when no answer came). */
  readonly status: number;
  /** The field at fault (`input.amount`, `options[1].app`). */
  readonly field?: string;
  /** The run's explain trace up to the failure. */
  readonly trace?: Trace;
  /** When to try again (`overloaded`, `in-progress`, an all-429 `all-failed`), ms. */
  readonly retryAfterMs?: number;
  /** The idempotency key the request was sent with (runs only). */
  readonly idempotencyKey?: string;
  /** The whole error body. */
  readonly body: ErrorBody;

  constructor(status: number, body: ErrorBody, idempotencyKey?: string, retryAfterHeader?: string | null) {
    super(body.message ?? `HTTP ${status}`);
    this.name = new.target.name;
    this.code = (body.code ?? (status === 0 ? 'network' : 'store')) as ErrorCode;
    this.status = status;
    this.field = body.field;
    this.trace = body.trace;
    this.body = body;
    this.idempotencyKey = idempotencyKey;
    this.retryAfterMs = body.retry_after_ms ?? parseRetryAfter(retryAfterHeader);
  }

  /** Every attempt of the run, from its trace (empty when there is none). */
  get attempts(): Attempt[] {
    return (this.trace?.attempts as Attempt[] | undefined) ?? [];
  }
}

/** `all-failed`: every provider failed; `attempts` lists each one. */
export class AllFailedError extends SwitchyardError {}
/** `overloaded`: the host's own limits; nothing was sent or counted. See `retryAfterMs`. */
export class OverloadedError extends SwitchyardError {}
/** `in-progress`: a run with this idempotency key has not finished yet. */
export class InProgressError extends SwitchyardError {}
/** `ambiguous`: the action may have executed at one app; check `reconcile` there. Never retried. */
export class AmbiguousError extends SwitchyardError {
  /** The one app where the action may have executed, and the key it knows it by. */
  get reconcile(): Reconcile | undefined {
    const r = this.body.reconcile;
    return r && { app: r.app, provider: r.provider, idempotencyKey: r.idempotency_key };
  }
}
/** `rejected` or `stopped`: a provider refused the input (no retry, no failover), or a rule stopped the run. */
export class RejectedError extends SwitchyardError {}
/** `unauthorized`: missing, unknown, revoked or expired token. */
export class UnauthorizedError extends SwitchyardError {}
/** `forbidden`: the token's role or scope does not allow this. */
export class ForbiddenError extends SwitchyardError {}
/** `invalid-definition`, `invalid-input`, `invalid-body`, `invalid-query`, `invalid-header`: see `field`. */
export class ValidationError extends SwitchyardError {}
/** `not-found`: unknown product, env, kind or tag. */
export class NotFoundError extends SwitchyardError {}
/** `exists`: a create of a tag that exists. */
export class ExistsError extends SwitchyardError {}
/** `no-provider`: no provider could be tried (unhealthy, breakers open; `open` when every breaker blocked). */
export class NoProviderError extends SwitchyardError {}
/** `deadline-exceeded`: the run's deadline passed. */
export class DeadlineError extends SwitchyardError {}
/** No answer came (connection refused, reset, DNS); the request may or may not have arrived. */
export class NetworkError extends SwitchyardError {}

const CLASSES: Record<string, typeof SwitchyardError> = {
  'all-failed': AllFailedError,
  overloaded: OverloadedError,
  'in-progress': InProgressError,
  ambiguous: AmbiguousError,
  rejected: RejectedError,
  stopped: RejectedError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  'invalid-definition': ValidationError,
  'invalid-input': ValidationError,
  'invalid-body': ValidationError,
  'invalid-query': ValidationError,
  'invalid-header': ValidationError,
  'not-found': NotFoundError,
  exists: ExistsError,
  'no-provider': NoProviderError,
  'deadline-exceeded': DeadlineError,
};

/** The typed error for an answer. */
export function errorFor(
  status: number,
  body: ErrorBody,
  idempotencyKey?: string,
  retryAfter?: string | null,
): SwitchyardError {
  const Class = (body.code && CLASSES[body.code]) || SwitchyardError;
  return new Class(status, body, idempotencyKey, retryAfter);
}

/** `Retry-After` in seconds (or an HTTP date) as ms. */
export function parseRetryAfter(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs) && secs >= 0) return Math.min(secs, 86_400) * 1000;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}
