"""``Switchyard`` (blocking) and ``AsyncSwitchyard`` (asyncio), over httpx."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator, Callable, Iterator, Optional, Union

import httpx

from . import _ops as ops
from ._errors import SwitchyardError
from ._ops import Answer, Call, Paths, RetryPolicy, RunResult, Sleep

Definition = dict[str, Any]
Handler = Callable[[Any], Any]


def _headers(token: Optional[str]) -> dict[str, str]:
    h = {"accept": "application/json", "x-switchyard-actor": "api", "user-agent": "switchyard-client-python/0.1"}
    if token:
        h["authorization"] = f"Bearer {token}"
    return h


def _request_args(call: Call) -> dict[str, Any]:
    args: dict[str, Any] = {"method": call.method, "url": call.path}
    if call.body is not None:
        args["content"] = json.dumps(call.body).encode("utf-8")
        args["headers"] = {"content-type": call.content_type}
    return args


class _Base:
    def __init__(self, url: str, token: Optional[str], product: Optional[str], env: Optional[str], retry: Union[RetryPolicy, bool, None]) -> None:
        if not url:
            raise TypeError("Switchyard(url=…) is required (http://127.0.0.1:7400)")
        self.url = url.rstrip("/")
        self.product = product
        self.env = env
        self.retry: Union[RetryPolicy, bool] = RetryPolicy() if retry is None or retry is True else retry
        self._paths = Paths(product, env)


class Switchyard(_Base):
    """A Switchyard server, for one product and env by default (blocking calls).

    ``sy.healthcheck``, ``sy.quota``, ``sy.fallback``, ``sy.features``, ``sy.caches``
    as in the reference; ``sy.events()`` streams server-sent events."""

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        product: Optional[str] = None,
        env: Optional[str] = None,
        retry: Union[RetryPolicy, bool, None] = None,
        timeout: float = 60.0,
        http: Optional[httpx.Client] = None,
    ) -> None:
        super().__init__(url, token, product, env, retry)
        self._http = http or httpx.Client(base_url=self.url, headers=_headers(token), timeout=timeout)
        self.healthcheck = Healthchecks(self, "healthcheck")
        self.health = self.healthcheck
        self.quota = Routes(self, "quota")
        self.fallback = Routes(self, "fallback")
        self.features = Resource(self, "feature")
        self.caches = Resource(self, "cache")

    def __enter__(self) -> "Switchyard":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> Any:
        try:
            r = self._http.request(**_request_args(call))
        except httpx.HTTPError as e:
            raise ops.network_error(call, self.url, e) from None
        return ops.read(call, Answer(r.status_code, r.text, r.headers.get("retry-after")))

    def _drive(self, op: Any) -> Any:
        if isinstance(op, Call):
            return self._send(op)
        try:
            step = next(op)
            while True:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = op.send(None)
                    continue
                try:
                    result = self._send(step)
                except SwitchyardError as e:
                    step = op.throw(e)
                    continue
                step = op.send(result)
        except StopIteration as stop:
            return stop.value

    def run(self, kind: str, tag: str, input: Optional[dict[str, Any]] = None, *, session: Optional[dict[str, str]] = None, cache: Optional[str] = None, idempotency_key: Optional[str] = None, deadline_ms: Optional[int] = None, retry: Union[RetryPolicy, bool, None] = None, product: Optional[str] = None, env: Optional[str] = None) -> RunResult:
        """Run a quota, fallback or feature; ``overloaded`` / ``in-progress`` are retried per the retry policy."""
        return self._drive(ops.run_op(self._paths, self.retry if retry is None else retry, kind, tag, input, session, cache, idempotency_key, deadline_ms, product, env))

    def events(self) -> Iterator[dict[str, Any]]:
        """Server-sent events (``state``, ``state-diff``, ``run``, ``audit``, ``lagged``) as dicts ``{event, data, id}``."""
        parser = ops.EventParser()
        with self._http.stream("GET", "/v1/events", headers={"accept": "text/event-stream"}, timeout=httpx.Timeout(10.0, read=None)) as r:
            if r.status_code >= 400:
                r.read()
                ops.read(Call("GET", "/v1/events"), Answer(r.status_code, r.text, r.headers.get("retry-after")))
            for chunk in r.iter_text():
                yield from parser.feed(chunk)

    def whoami(self) -> dict[str, Any]:
        return self._drive(Call("GET", "/v1/whoami"))

    def apps(self, product: Optional[str] = None) -> Any:
        return self._drive(Call("GET", f"{self._paths.product_path(product)}/apps"))

    def admission(self, app: str, product: Optional[str] = None) -> dict[str, Any]:
        """An app's admission limits (``config``) and live state per env (``envs``)."""
        return self._drive(Call("GET", f"{self._paths.product_path(product)}/apps/{ops.seg(app, 'app')}/admission"))

    def set_admission(self, app: str, config: dict[str, Any], product: Optional[str] = None) -> Any:
        return self._drive(Call("PUT", f"{self._paths.product_path(product)}/apps/{ops.seg(app, 'app')}/admission", config))

    def runs(self, **query: Any) -> Any:
        """Recent runs of this replica (``key``, ``tag``, ``provider``, ``outcome``, ``product``, ``limit``)."""
        return self._drive(ops.runs(query))

    def drain(self, provider: str, restore: bool = False, product: Optional[str] = None) -> Any:
        return self._drive(Call("POST", f"{self._paths.product_path(product)}/providers/{ops.seg(provider, 'provider')}/{'restore' if restore else 'drain'}"))


class Resource:
    """Create, fetch, update and delete definitions of one kind."""

    def __init__(self, client: Switchyard, kind: str) -> None:
        self._c = client
        self._kind = kind

    def create(self, definition: Optional[dict[str, Any]] = None, **fields: Any) -> Definition:
        """Create from the reference's object form (``event`` for ``action``; an option without ``provider`` takes its app's name)."""
        return self._c._drive(ops.create(self._c._paths, self._kind, {**(definition or {}), **fields}))

    def fetch(self, tag: str, env: Optional[str] = None, product: Optional[str] = None) -> Definition:
        """One definition; with ``env`` (or ``"*"``) each option's live state in ``states[env]``."""
        return self._c._drive(ops.fetch(self._c._paths, self._kind, tag, env, product))

    def fetch_all(self, env: Optional[str] = None, product: Optional[str] = None) -> list[Definition]:
        return self._c._drive(ops.fetch_all_op(self._c._paths, self._kind, env, product))

    def update(self, tag: str, changes: Optional[dict[str, Any]] = None, product: Optional[str] = None, **fields: Any) -> Definition:
        """Change some fields (a JSON merge patch, checked as a whole); the rest stays."""
        return self._c._drive(ops.update(self._c._paths, self._kind, tag, {**(changes or {}), **fields}, product))

    def replace(self, tag: str, definition: dict[str, Any], product: Optional[str] = None) -> Definition:
        return self._c._drive(ops.replace(self._c._paths, self._kind, tag, definition, product))

    def delete(self, tag: str, product: Optional[str] = None) -> None:
        self._c._drive(ops.delete(self._c._paths, self._kind, tag, product))

    def run(self, tag: str, input: Optional[dict[str, Any]] = None, **options: Any) -> RunResult:
        """Run it: ``session``, ``cache``, ``idempotency_key``, ``deadline_ms``, ``retry``, ``product``, ``env``."""
        return self._c.run(self._kind, tag, input, **options)


class Routes(Resource):
    """Quotas and fallbacks."""

    def define(self, tag: str, handler: Handler, **spec: Any) -> Definition:
        """Define with the reference's builder; creates it, or replaces it if the tag exists."""
        return self._c._drive(ops.define_op(self._c._paths, self._kind, {"tag": tag, **spec}, handler))

    def providers(self, tag: str, env: Optional[str] = None, product: Optional[str] = None) -> list[dict[str, Any]]:
        return self._c._drive(ops.providers_op(self._c._paths, self._kind, tag, env, product))

    def history(self, tag: str, provider: str, frm: Optional[int] = None, to: Optional[int] = None, step: Optional[int] = None, env: Optional[str] = None, product: Optional[str] = None) -> dict[str, Any]:
        return self._c._drive(ops.history(self._c._paths, self._kind, tag, provider, frm, to, step, env, product))


class Healthchecks(Resource):
    """Healthchecks."""

    def define(self, tag: str, handler: Handler, **spec: Any) -> Definition:
        return self._c._drive(ops.define_op(self._c._paths, "healthcheck", {"tag": tag, **spec}, handler))

    def status(self, tag: str, env: Optional[str] = None, product: Optional[str] = None) -> dict[str, Any]:
        return self._c._drive(ops.health_status(self._c._paths, tag, env, product))

    def check(self, tag: str, env: Optional[str] = None, product: Optional[str] = None) -> Any:
        return self._c._drive(ops.health_check(self._c._paths, tag, env, product))


class AsyncSwitchyard(_Base):
    """The same client for asyncio: every call is awaited; ``events()`` is an async iterator."""

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        product: Optional[str] = None,
        env: Optional[str] = None,
        retry: Union[RetryPolicy, bool, None] = None,
        timeout: float = 60.0,
        http: Optional[httpx.AsyncClient] = None,
    ) -> None:
        super().__init__(url, token, product, env, retry)
        self._http = http or httpx.AsyncClient(base_url=self.url, headers=_headers(token), timeout=timeout)
        self.healthcheck = AsyncHealthchecks(self, "healthcheck")
        self.health = self.healthcheck
        self.quota = AsyncRoutes(self, "quota")
        self.fallback = AsyncRoutes(self, "fallback")
        self.features = AsyncResource(self, "feature")
        self.caches = AsyncResource(self, "cache")

    async def __aenter__(self) -> "AsyncSwitchyard":
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> Any:
        try:
            r = await self._http.request(**_request_args(call))
        except httpx.HTTPError as e:
            raise ops.network_error(call, self.url, e) from None
        return ops.read(call, Answer(r.status_code, r.text, r.headers.get("retry-after")))

    async def _drive(self, op: Any) -> Any:
        if isinstance(op, Call):
            return await self._send(op)
        try:
            step = next(op)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = op.send(None)
                    continue
                try:
                    result = await self._send(step)
                except SwitchyardError as e:
                    step = op.throw(e)
                    continue
                step = op.send(result)
        except StopIteration as stop:
            return stop.value

    async def run(self, kind: str, tag: str, input: Optional[dict[str, Any]] = None, *, session: Optional[dict[str, str]] = None, cache: Optional[str] = None, idempotency_key: Optional[str] = None, deadline_ms: Optional[int] = None, retry: Union[RetryPolicy, bool, None] = None, product: Optional[str] = None, env: Optional[str] = None) -> RunResult:
        return await self._drive(ops.run_op(self._paths, self.retry if retry is None else retry, kind, tag, input, session, cache, idempotency_key, deadline_ms, product, env))

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        parser = ops.EventParser()
        async with self._http.stream("GET", "/v1/events", headers={"accept": "text/event-stream"}, timeout=httpx.Timeout(10.0, read=None)) as r:
            if r.status_code >= 400:
                await r.aread()
                ops.read(Call("GET", "/v1/events"), Answer(r.status_code, r.text, r.headers.get("retry-after")))
            async for chunk in r.aiter_text():
                for ev in parser.feed(chunk):
                    yield ev

    async def whoami(self) -> dict[str, Any]:
        return await self._drive(Call("GET", "/v1/whoami"))

    async def admission(self, app: str, product: Optional[str] = None) -> dict[str, Any]:
        return await self._drive(Call("GET", f"{self._paths.product_path(product)}/apps/{ops.seg(app, 'app')}/admission"))

    async def set_admission(self, app: str, config: dict[str, Any], product: Optional[str] = None) -> Any:
        return await self._drive(Call("PUT", f"{self._paths.product_path(product)}/apps/{ops.seg(app, 'app')}/admission", config))

    async def runs(self, **query: Any) -> Any:
        return await self._drive(ops.runs(query))


class AsyncResource:
    """Create, fetch, update and delete definitions of one kind (asyncio)."""

    def __init__(self, client: AsyncSwitchyard, kind: str) -> None:
        self._c = client
        self._kind = kind

    async def create(self, definition: Optional[dict[str, Any]] = None, **fields: Any) -> Definition:
        return await self._c._drive(ops.create(self._c._paths, self._kind, {**(definition or {}), **fields}))

    async def fetch(self, tag: str, env: Optional[str] = None, product: Optional[str] = None) -> Definition:
        return await self._c._drive(ops.fetch(self._c._paths, self._kind, tag, env, product))

    async def fetch_all(self, env: Optional[str] = None, product: Optional[str] = None) -> list[Definition]:
        return await self._c._drive(ops.fetch_all_op(self._c._paths, self._kind, env, product))

    async def update(self, tag: str, changes: Optional[dict[str, Any]] = None, product: Optional[str] = None, **fields: Any) -> Definition:
        return await self._c._drive(ops.update(self._c._paths, self._kind, tag, {**(changes or {}), **fields}, product))

    async def replace(self, tag: str, definition: dict[str, Any], product: Optional[str] = None) -> Definition:
        return await self._c._drive(ops.replace(self._c._paths, self._kind, tag, definition, product))

    async def delete(self, tag: str, product: Optional[str] = None) -> None:
        await self._c._drive(ops.delete(self._c._paths, self._kind, tag, product))

    async def run(self, tag: str, input: Optional[dict[str, Any]] = None, **options: Any) -> RunResult:
        return await self._c.run(self._kind, tag, input, **options)


class AsyncRoutes(AsyncResource):
    async def define(self, tag: str, handler: Handler, **spec: Any) -> Definition:
        return await self._c._drive(ops.define_op(self._c._paths, self._kind, {"tag": tag, **spec}, handler))

    async def providers(self, tag: str, env: Optional[str] = None, product: Optional[str] = None) -> list[dict[str, Any]]:
        return await self._c._drive(ops.providers_op(self._c._paths, self._kind, tag, env, product))

    async def history(self, tag: str, provider: str, frm: Optional[int] = None, to: Optional[int] = None, step: Optional[int] = None, env: Optional[str] = None, product: Optional[str] = None) -> dict[str, Any]:
        return await self._c._drive(ops.history(self._c._paths, self._kind, tag, provider, frm, to, step, env, product))


class AsyncHealthchecks(AsyncResource):
    async def define(self, tag: str, handler: Handler, **spec: Any) -> Definition:
        return await self._c._drive(ops.define_op(self._c._paths, "healthcheck", {"tag": tag, **spec}, handler))

    async def status(self, tag: str, env: Optional[str] = None, product: Optional[str] = None) -> dict[str, Any]:
        return await self._c._drive(ops.health_status(self._c._paths, tag, env, product))

    async def check(self, tag: str, env: Optional[str] = None, product: Optional[str] = None) -> Any:
        return await self._c._drive(ops.health_check(self._c._paths, tag, env, product))
