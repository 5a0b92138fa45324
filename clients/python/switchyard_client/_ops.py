"""What each call sends and how it reads the answer, written once as
generators that yield a :class:`Call` (or a :class:`Sleep`) and receive the
parsed answer; the sync and asyncio clients only drive them."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Generator, Optional, Union
from urllib.parse import quote, urlencode

from ._builders import KINDS, defined_body, normalise_definition
from ._errors import NetworkError, SwitchyardError, error_for


@dataclass(frozen=True)
class RetryPolicy:
    """Automatic retry of answers that say nothing was done: ``overloaded``,
    ``in-progress`` and ``idempotency-unavailable``. Never ``ambiguous``."""

    overloaded: bool = True
    in_progress: bool = True
    max_wait_ms: float = 10_000
    max_sends: int = 5


NO_RETRY = RetryPolicy(overloaded=False, in_progress=False)


@dataclass
class RunResult:
    """What a run answers."""

    #: The mapped output of the provider that served.
    output: Any
    #: Who served (None when a result cache did).
    provider: Optional[str]
    #: The run's idempotency key (the one given, or the one the client made).
    idempotency_key: str
    #: The explain trace: providers considered, skipped, every attempt.
    trace: dict[str, Any]
    #: Client-side time from the first send to the answer, ms (waits included).
    latency_ms: float = 0.0
    #: How many times the client sent the run.
    sends: int = 1


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None
    content_type: str = "application/json"
    idempotency_key: Optional[str] = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass
class Answer:
    status: int
    text: str
    retry_after: Optional[str] = None


Op = Generator[Union[Call, Sleep], Any, Any]


def read(call: Call, answer: Answer) -> Any:
    """The parsed body of a 2xx answer, or the typed error."""
    parsed: Any = None
    if answer.text:
        try:
            parsed = json.loads(answer.text)
        except ValueError:
            parsed = answer.text
    if answer.status >= 400:
        body = parsed if isinstance(parsed, dict) else {"message": f"HTTP {answer.status}: {answer.text[:500]}"}
        raise error_for(answer.status, body, call.idempotency_key, answer.retry_after)
    return parsed


def network_error(call: Call, base: str, why: Exception) -> NetworkError:
    return NetworkError(0, {"code": "network", "message": f"{call.method} {base}{call.path}: no answer ({why})"}, call.idempotency_key)


def seg(value: Optional[str], what: str) -> str:
    if not value:
        raise TypeError(f"{what} is not set: give it to this call or to Switchyard({what}=…)")
    return quote(value, safe="")


class Paths:
    """URL paths from the client's defaults."""

    def __init__(self, product: Optional[str], env: Optional[str]) -> None:
        self.product = product
        self.env = env

    def product_path(self, product: Optional[str] = None) -> str:
        return f"/v1/{seg(product or self.product, 'product')}"

    def env_path(self, product: Optional[str] = None, env: Optional[str] = None) -> str:
        return f"{self.product_path(product)}/{seg(env or self.env, 'env')}"

    def definitions(self, kind: str, product: Optional[str] = None) -> str:
        return f"{self.product_path(product)}/definitions/{KINDS[kind]}"


def run_op(
    paths: Paths,
    policy: Union[RetryPolicy, bool],
    kind: str,
    tag: str,
    input: Optional[dict[str, Any]],
    session: Optional[dict[str, str]],
    cache: Optional[str],
    idempotency_key: Optional[str],
    deadline_ms: Optional[int],
    product: Optional[str],
    env: Optional[str],
) -> Op:
    if not tag:
        raise TypeError(f"{kind}.run: tag is required")
    if session is not None and not (isinstance(session, dict) and session.get("tag") and session.get("token")):
        raise TypeError(f"{kind}.run: session must be {{'tag': …, 'token': …}}")
    key = idempotency_key or str(uuid.uuid4())
    body: dict[str, Any] = {"input": input or {}, "idempotency_key": key}
    if session:
        body["session"] = {"tag": session["tag"], "token": session["token"]}
    if cache:
        body["cache"] = cache
    if deadline_ms is not None:
        body["deadline_ms"] = deadline_ms
    p = NO_RETRY if policy is False else (policy if isinstance(policy, RetryPolicy) else RetryPolicy())
    call = Call("POST", f"{paths.env_path(product, env)}/{KINDS[kind]}/{seg(tag, 'tag')}/run", body, idempotency_key=key)
    started = time.monotonic()
    waited = 0.0
    sends = 0
    while True:
        sends += 1
        try:
            r = yield call
        except SwitchyardError as e:
            retryable = (
                (e.code == "overloaded" and p.overloaded)
                or (e.code == "in-progress" and p.in_progress)
                or (e.code == "idempotency-unavailable" and p.overloaded)
            )
            wait = max(e.retry_after_ms if e.retry_after_ms is not None else 1000.0, 50.0)
            # never wait past the client's budget, nor past the run's own deadline
            budget = min(p.max_wait_ms, deadline_ms if deadline_ms is not None else float("inf"))
            elapsed = (time.monotonic() - started) * 1000
            if not retryable or sends >= p.max_sends or waited + wait > budget or elapsed + wait > budget:
                raise
            waited += wait
            yield Sleep(wait / 1000)
            continue
        return RunResult(
            output=r.get("output"),
            provider=r.get("provider"),
            idempotency_key=r["idempotency_key"],
            trace=r.get("trace") or {},
            latency_ms=(time.monotonic() - started) * 1000,
            sends=sends,
        )


def upsert_op(paths: Paths, kind: str, body: dict[str, Any], product: Optional[str]) -> Op:
    try:
        return (yield Call("POST", paths.definitions(kind, product), body))
    except SwitchyardError as e:
        if e.code != "exists":
            raise
    return (yield Call("PUT", f"{paths.definitions(kind, product)}/{seg(body.get('tag'), 'tag')}", body))


def define_op(paths: Paths, kind: str, spec: dict[str, Any], handler: Any) -> Op:
    body = defined_body(kind, spec, handler, paths.env)
    return (yield from upsert_op(paths, kind, body, spec.get("product")))


def create(paths: Paths, kind: str, definition: dict[str, Any]) -> Call:
    return Call("POST", paths.definitions(kind, definition.get("product")), normalise_definition(kind, definition))


def fetch(paths: Paths, kind: str, tag: str, env: Optional[str], product: Optional[str]) -> Call:
    q = f"?env={quote(env, safe='*')}" if env else ""
    return Call("GET", f"{paths.definitions(kind, product)}/{seg(tag, 'tag')}{q}")


def fetch_all_op(paths: Paths, kind: str, env: Optional[str], product: Optional[str]) -> Op:
    q = f"?env={quote(env, safe='*')}" if env else ""
    r = yield Call("GET", f"{paths.definitions(kind, product)}{q}")
    return list(r.get(KINDS[kind]) or [])


def update(paths: Paths, kind: str, tag: str, changes: dict[str, Any], product: Optional[str]) -> Call:
    return Call(
        "PATCH",
        f"{paths.definitions(kind, product)}/{seg(tag, 'tag')}",
        normalise_definition(kind, changes),
        content_type="application/merge-patch+json",
    )


def replace(paths: Paths, kind: str, tag: str, definition: dict[str, Any], product: Optional[str]) -> Call:
    return Call("PUT", f"{paths.definitions(kind, product)}/{seg(tag, 'tag')}", normalise_definition(kind, definition))


def delete(paths: Paths, kind: str, tag: str, product: Optional[str]) -> Call:
    return Call("DELETE", f"{paths.definitions(kind, product)}/{seg(tag, 'tag')}")


def providers_op(paths: Paths, kind: str, tag: str, env: Optional[str], product: Optional[str]) -> Op:
    r = yield Call("GET", f"{paths.env_path(product, env)}/{KINDS[kind]}/{seg(tag, 'tag')}/providers")
    return list(r.get("providers") or [])


def history(
    paths: Paths, kind: str, tag: str, provider: str, frm: Optional[int], to: Optional[int], step: Optional[int], env: Optional[str], product: Optional[str]
) -> Call:
    q = urlencode({k: v for k, v in (("from", frm), ("to", to), ("step", step)) if v is not None})
    return Call(
        "GET",
        f"{paths.env_path(product, env)}/{KINDS[kind]}/{seg(tag, 'tag')}/providers/{seg(provider, 'provider')}/history" + (f"?{q}" if q else ""),
    )


def health_status(paths: Paths, tag: str, env: Optional[str], product: Optional[str]) -> Call:
    return Call("GET", f"{paths.env_path(product, env)}/healthchecks/{seg(tag, 'tag')}")


def health_check(paths: Paths, tag: str, env: Optional[str], product: Optional[str]) -> Call:
    return Call("POST", f"{paths.env_path(product, env)}/healthchecks/{seg(tag, 'tag')}/check")


def runs(query: dict[str, Any]) -> Call:
    q = urlencode({k: v for k, v in query.items() if v is not None})
    return Call("GET", "/v1/runs" + (f"?{q}" if q else ""))


#: Most bytes one event may hold before the stream is refused (as the TypeScript client).
MAX_EVENT_BYTES = 16 * 1024 * 1024


class EventParser:
    """Server-sent events from lines of a ``text/event-stream`` body."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []
        self.size = 0
        self.id: Optional[str] = None
        self.pending = ""

    def feed(self, text: str) -> list[dict[str, Any]]:
        """The events a chunk of the body completes; a line longer than the bound is refused before it is whole."""
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        if len(self.pending) > MAX_EVENT_BYTES:
            raise ValueError(f"an event of more than {MAX_EVENT_BYTES} bytes; the stream was closed")
        return [ev for ev in map(self.line, lines) if ev is not None]

    def line(self, line: str) -> Optional[dict[str, Any]]:
        line = line.rstrip("\r")
        if line == "":
            out = None
            if self.data:
                text = "\n".join(self.data)
                try:
                    data: Any = json.loads(text)
                except ValueError:
                    data = text
                out = {"event": self.event, "data": data, "id": self.id}
            self.event, self.data, self.size = "message", [], 0
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event = value
        elif name == "data":
            self.size += len(value)
            if self.size > MAX_EVENT_BYTES:
                raise ValueError(f"an event of more than {MAX_EVENT_BYTES} bytes; the stream was closed")
            self.data.append(value)
        elif name == "id":
            self.id = value
        return None
