"""Errors typed by Switchyard's stable error codes (docs/api.md#errors)."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any, Optional

#: Every ``code`` the server answers with (kept in step with /openapi.json by a test).
ERROR_CODES: tuple[str, ...] = (
    "unauthorized",
    "not-found",
    "invalid-body",
    "body-too-large",
    "invalid-definition",
    "exists",
    "store",
    "invalid-input",
    "mapping",
    "no-provider",
    "all-failed",
    "rejected",
    "stopped",
    "ambiguous",
    "deadline-exceeded",
    "overloaded",
    "method-not-allowed",
    "invalid-query",
    "invalid-config",
    "invalid-header",
    "in-progress",
    "idempotency-unavailable",
    "forbidden",
    "too-many-failures",
    "cluster-unavailable",
    "too-many-tokens",
)


@dataclass(frozen=True)
class Reconcile:
    """Where an ambiguous action may have executed, and the key it knows it by."""

    app: str
    provider: str
    idempotency_key: str


class SwitchyardError(Exception):
    """Any error the server answered, or a request that got no answer (``code == "network"``)."""

    def __init__(
        self,
        status: int,
        body: dict[str, Any],
        idempotency_key: Optional[str] = None,
        retry_after: Optional[str] = None,
    ) -> None:
        super().__init__(body.get("message") or f"HTTP {status}")
        #: Stable error code (``all-failed``, ``overloaded``, …; ``network`` when no answer came).
        self.code: str = body.get("code") or ("network" if status == 0 else "store")
        #: HTTP status (0 when no answer came).
        self.status = status
        #: The field at fault (``input.amount``, ``options[1].app``).
        self.field: Optional[str] = body.get("field")
        #: The run's explain trace up to the failure.
        self.trace: Optional[dict[str, Any]] = body.get("trace")
        #: The idempotency key the request was sent with (runs only).
        self.idempotency_key = idempotency_key
        #: The whole error body.
        self.body = body
        ms = body.get("retry_after_ms")
        #: When to try again, ms (``overloaded``, ``in-progress``, an all-429 ``all-failed``).
        self.retry_after_ms: Optional[float] = float(ms) if isinstance(ms, (int, float)) else parse_retry_after(retry_after)

    @property
    def message(self) -> str:
        return str(self)

    @property
    def attempts(self) -> list[dict[str, Any]]:
        """Every attempt of the run, from its trace (empty when there is none)."""
        return list((self.trace or {}).get("attempts") or [])


class AllFailedError(SwitchyardError):
    """``all-failed``: every provider failed; ``attempts`` lists each one."""


class OverloadedError(SwitchyardError):
    """``overloaded``: the host's own limits; nothing was sent or counted. See ``retry_after_ms``."""


class InProgressError(SwitchyardError):
    """``in-progress``: a run with this idempotency key has not finished yet."""


class AmbiguousError(SwitchyardError):
    """``ambiguous``: the action may have executed at one app; check ``reconcile`` there. Never retried."""

    @property
    def reconcile(self) -> Optional[Reconcile]:
        r = self.body.get("reconcile")
        if not isinstance(r, dict):
            return None
        return Reconcile(app=r.get("app", ""), provider=r.get("provider", ""), idempotency_key=r.get("idempotency_key", ""))


class RejectedError(SwitchyardError):
    """``rejected`` or ``stopped``: a provider refused the input, or a rule stopped the run."""


class UnauthorizedError(SwitchyardError):
    """``unauthorized``: missing, unknown, revoked or expired token."""


class ForbiddenError(SwitchyardError):
    """``forbidden``: the token's role or scope does not allow this."""


class ValidationError(SwitchyardError):
    """``invalid-definition``, ``invalid-input``, ``invalid-body``, ``invalid-query``, ``invalid-header``: see ``field``."""


class NotFoundError(SwitchyardError):
    """``not-found``: unknown product, env, kind or tag."""


class ExistsError(SwitchyardError):
    """``exists``: a create of a tag that exists."""


class NoProviderError(SwitchyardError):
    """``no-provider``: no provider could be tried."""


class DeadlineError(SwitchyardError):
    """``deadline-exceeded``: the run's deadline passed."""


class NetworkError(SwitchyardError):
    """No answer came; the request may or may not have arrived."""


_CLASSES: dict[str, type[SwitchyardError]] = {
    "all-failed": AllFailedError,
    "overloaded": OverloadedError,
    "in-progress": InProgressError,
    "ambiguous": AmbiguousError,
    "rejected": RejectedError,
    "stopped": RejectedError,
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "invalid-definition": ValidationError,
    "invalid-input": ValidationError,
    "invalid-body": ValidationError,
    "invalid-query": ValidationError,
    "invalid-header": ValidationError,
    "not-found": NotFoundError,
    "exists": ExistsError,
    "no-provider": NoProviderError,
    "deadline-exceeded": DeadlineError,
}


def error_for(
    status: int, body: dict[str, Any], idempotency_key: Optional[str] = None, retry_after: Optional[str] = None
) -> SwitchyardError:
    """The typed error for an answer."""
    cls = _CLASSES.get(str(body.get("code")), SwitchyardError)
    return cls(status, body, idempotency_key, retry_after)


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` in seconds (or an HTTP date) as ms."""
    if not value:
        return None
    try:
        secs = float(value)
        if secs >= 0:
            return min(secs, 86_400.0) * 1000
    except ValueError:
        pass
    try:
        at = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, (at - time.time()) * 1000)
