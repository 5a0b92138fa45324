"""Switchyard guest SDK for Python adapters (componentize-py).

Put this file on the build's module path (``componentize-py … -p
guest-sdk/python``) and write the adapter as a module that defines, for the
``exchange-adapter`` world (preferred: the host sends each request and holds
no instance while the provider answers), a class ``Exchange``:

    import switchyard_guest as sy

    class Exchange(sy.Exchange):
        name, version = "acme-sms", "0.1.0"
        actions = [sy.Action("send-sms", input={"to": {"type": "string", "required": True}})]

        def request(self, req: sy.Request) -> sy.Outgoing:
            base = sy.config.require("base_url")
            return sy.Outgoing("POST", f"{base}/v1/messages", json={"to": req.str("to")})

        def response(self, req: sy.Request, answer: sy.Response):
            return answer.error_for_status().json()

(several requests per call: override ``begin`` and ``proceed`` and carry
``state``). Built for the ``exchange-reading-adapter`` world (``-w
switchyard:adapter/exchange-reading-adapter@0.2.0``) with
``ExchangeReading = sy.ExchangeReading`` in the module, the actions declared
``sy.Action(..., read_by_host=True)`` have a 2xx JSON answer read by the
host itself, with no ``response`` step. Or, for the ``adapter`` world (the adapter sends its own requests
over wasi:http), a class ``Provider``:

    class Provider(sy.Adapter):
        name, version = "acme-sms", "0.1.0"
        actions = [sy.Action("send-sms", input={"to": {"type": "string", "required": True}})]

        def handle(self, req: sy.Request):
            base = sy.config.require("base_url")
            return sy.send("POST", f"{base}/v1/messages", json={"to": req.str("to")}).error_for_status().json()

It gives: the mapping of the adapter's result onto the WIT export,
``AdapterError`` with the six classes the engine understands,
``AdapterError.from_status`` (429 → rate-limited, 408/5xx → unavailable,
401/403 → internal, other 4xx → rejected), ``send`` (a blocking HTTP client over wasi:http with
failures classified), input accessors that name the missing field, config
and logging.
"""

from __future__ import annotations

import email.utils
import json as _json
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from componentize_py_types import Err, Ok
from wit_world.imports import adapter_types as wit
from wit_world.imports import config as _config
from wit_world.imports import logging as _logging

try:  # the adapter world: the adapter's own network
    from wit_world.imports import outgoing_handler
    from wit_world.imports import types as http
    from wit_world.imports.streams import StreamError_Closed
except ImportError:  # the exchange world: no network; the host sends
    outgoing_handler = http = StreamError_Closed = None
try:
    from wit_world.imports import exchange_types as _xwit
except ImportError:
    _xwit = None
try:  # the exchange-reading-adapter world: the host reads a JSON success
    from wit_world.exports import exchange_reading as _xread
except ImportError:
    _xread = None

# Bytes written per blocking_write_and_flush (the WASI limit is 4096).
_WRITE_CHUNK = 4096
# Largest response body read; beyond it the answer is ambiguous.
_MAX_RESPONSE = 8 << 20

CLASSES = ("rejected", "unavailable", "rate-limited", "timeout", "ambiguous", "internal")


class AdapterError(Exception):
    """A classified failure: raise it from ``handle``; the host reads the class."""

    def __init__(
        self,
        kind: str,
        message: str,
        status: Optional[int] = None,
        code: Optional[str] = None,
        retry_after_ms: Optional[int] = None,
    ):
        if kind not in CLASSES:
            raise ValueError(f"unknown error class {kind!r}; use one of {', '.join(CLASSES)}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.retry_after_ms = retry_after_ms

    @staticmethod
    def from_status(
        status: int, message: str, code: Optional[str] = None, retry_after_ms: Optional[int] = None
    ) -> "AdapterError":
        """The class an HTTP answer with ``status`` belongs to: 429 is
        rate-limited; 408 and 5xx are unavailable; 401 and 403 are internal
        (this app's grant is wrong, not the input: the run fails over);
        other 4xx are rejected."""
        if status == 429:
            kind = "rate-limited"
        elif status in (401, 403):
            kind = "internal"
        elif status == 408 or 500 <= status <= 599:
            kind = "unavailable"
        elif 400 <= status <= 499:
            kind = "rejected"
        else:
            kind = "internal"
        return AdapterError(kind, message, status=status, code=code, retry_after_ms=retry_after_ms)

    def to_wit(self) -> wit.AdapterError:
        detail = wit.ErrorDetail(
            message=cut(self.message, 2048),
            status=self.status,
            code=None if self.code is None else str(self.code),
        )
        if self.kind == "rate-limited":
            ms = None if self.retry_after_ms is None else max(0, int(self.retry_after_ms))
            return wit.AdapterError_RateLimited(wit.RateLimit(detail=detail, retry_after_ms=ms))
        case = {
            "rejected": wit.AdapterError_Rejected,
            "unavailable": wit.AdapterError_Unavailable,
            "timeout": wit.AdapterError_Timeout,
            "ambiguous": wit.AdapterError_Ambiguous,
            "internal": wit.AdapterError_Internal,
        }[self.kind]
        return case(detail)


def rejected(message: str, **kw: Any) -> AdapterError:
    return AdapterError("rejected", message, **kw)


def unavailable(message: str, **kw: Any) -> AdapterError:
    return AdapterError("unavailable", message, **kw)


def timeout(message: str, **kw: Any) -> AdapterError:
    return AdapterError("timeout", message, **kw)


def ambiguous(message: str, **kw: Any) -> AdapterError:
    return AdapterError("ambiguous", message, **kw)


def internal(message: str, **kw: Any) -> AdapterError:
    return AdapterError("internal", message, **kw)


class config:
    """The app's plain settings from its grant (never secrets)."""

    @staticmethod
    def get(key: str, default: Optional[str] = None) -> Optional[str]:
        value = _config.get(key)
        return default if value is None else value

    @staticmethod
    def require(key: str) -> str:
        value = _config.get(key)
        if not value:
            raise internal(f"config `{key}` is not set; add it to the app's grant (config.{key})")
        return value

    @staticmethod
    def keys() -> List[str]:
        return _config.keys()


class log:
    """Structured logs, attributed to the app by the host."""

    @staticmethod
    def debug(message: str) -> None:
        _logging.log(_logging.Level.DEBUG, str(message))

    @staticmethod
    def info(message: str) -> None:
        _logging.log(_logging.Level.INFO, str(message))

    @staticmethod
    def warn(message: str) -> None:
        _logging.log(_logging.Level.WARN, str(message))

    @staticmethod
    def error(message: str) -> None:
        _logging.log(_logging.Level.ERROR, str(message))


SAFE, KEYED, UNSAFE = "safe", "keyed", "unsafe"


@dataclass
class Action:
    """One operation the adapter implements.

    ``idempotency`` says what repeating it does, and so where the host may
    repeat it: ``"safe"`` (a read with no effect: retried and failed over
    anywhere), ``"keyed"`` (the provider deduplicates by the run's key at
    this app: retried there, never moved to another app) or ``"unsafe"``
    (not repeated after an ambiguous outcome). ``idempotent=True`` is the
    older spelling of ``"keyed"``.

    ``read_by_host=True`` (exchange style, in the ``exchange-reading-adapter``
    world): when the answer to the request is a 2xx whose body is a JSON
    document, the host makes that body the output itself and does not call
    ``response`` (one step instead of two). Any other answer still goes to
    ``response``. Declare it only when ``response`` would return exactly
    that body for such an answer.
    """

    name: str
    description: str = ""
    input: Dict[str, Any] = field(default_factory=dict)
    idempotent: bool = False
    idempotency: str = ""
    read_by_host: bool = False

    def declared(self) -> str:
        if self.idempotency:
            if self.idempotency not in (SAFE, KEYED, UNSAFE):
                raise ValueError(
                    f"action {self.name!r}: idempotency must be 'safe', 'keyed' or 'unsafe', not {self.idempotency!r}"
                )
            return self.idempotency
        return KEYED if self.idempotent else UNSAFE


def cut(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``: provider text is cut with this."""
    return text[:limit]


class Request:
    """One attempt, as the adapter sees it."""

    def __init__(self, r: wit.CallRequest):
        self.action: str = r.action
        try:
            self.input = _json.loads(r.input)
        except ValueError as e:
            raise rejected(f"input is not valid JSON: {e}")
        if not isinstance(self.input, dict):
            raise rejected("input must be a JSON object")
        self.idempotency_key: str = r.idempotency_key
        self.env: str = r.env
        self.session = r.session
        self._deadline = time.monotonic() + r.deadline_ms / 1000.0

    def remaining_ms(self) -> int:
        """Milliseconds left before the host abandons this attempt."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def get(self, name: str) -> Any:
        """The field ``name``, or None when absent or null."""
        return self.input.get(name)

    def str(self, name: str) -> str:
        """The string field ``name``, or ``rejected`` naming the field."""
        value = self.input.get(name)
        if value is None:
            raise rejected(f"input.{name} is required")
        if not isinstance(value, str):
            raise rejected(f"input.{name} must be a string, got {_json.dumps(value)}")
        return value

    def opt_str(self, name: str) -> Optional[str]:
        """The string field ``name`` if present; ``rejected`` if not a string."""
        return None if self.input.get(name) is None else self.str(name)

    def unknown_action(self) -> AdapterError:
        return rejected(f"unknown action `{self.action}`")


class Response:
    """A whole HTTP answer."""

    def __init__(self, status: int, headers: List[Tuple[str, bytes]], body: bytes):
        self.status = status
        self.headers = [(k.lower(), v.decode("latin-1")) for k, v in headers]
        self.body = body

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def retry_after_ms(self) -> Optional[int]:
        """Retry-After in milliseconds (seconds or an HTTP date), if sent."""
        value = self.header("retry-after")
        if value is None:
            return None
        value = value.strip()
        if value.isdigit():
            return int(value) * 1000
        try:
            at = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        return max(0, int((at - time.time()) * 1000))

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ``ambiguous`` if it is not JSON (the provider answered)."""
        # Decoded as UTF-8 (what RFC 8259 asks of JSON on the wire) before
        # parsing: handed bytes, json.loads guesses UTF-16/32 from NUL
        # bytes, and that codec is not in every runtime (a provider's
        # binary garbage must never become an adapter bug).
        try:
            return _json.loads(self.text())
        except (ValueError, LookupError) as e:
            raise ambiguous(f"status {self.status}, body is not JSON: {e}", status=self.status)

    def error_for_status(self) -> "Response":
        """This response if 2xx, else the class of its status with the body as message."""
        if 200 <= self.status < 300:
            return self
        raise AdapterError.from_status(
            self.status, cut(self.text(), 512), retry_after_ms=self.retry_after_ms()
        )


# wasi:http error codes by the class they belong to (the same split as the
# Rust SDK): failures to connect never reached the provider.
_TIMEOUT = ("DnsTimeout", "ConnectionTimeout")
_UNAVAILABLE = (
    "DnsError", "DestinationNotFound", "DestinationUnavailable", "DestinationIpProhibited",
    "DestinationIpUnroutable", "ConnectionRefused", "ConnectionLimitReached",
    "TlsProtocolError", "TlsCertificateError", "TlsAlertReceived",
)
_LOCAL = (
    "HttpRequestMethodInvalid", "HttpRequestUriInvalid", "HttpRequestUriTooLong",
    "HttpRequestHeaderSectionSize", "HttpRequestHeaderSize", "HttpRequestBodySize",
    "HttpRequestLengthRequired",
)


def _classify(code: Any, url: str) -> AdapterError:
    name = type(code).__name__.removeprefix("ErrorCode_")
    text = f"request to {url} failed: {name}"
    if name == "HttpRequestDenied":
        return internal(f"the host's egress gate denied the request to {url}")
    if name in _TIMEOUT:
        return timeout(text)
    if name in _UNAVAILABLE:
        return unavailable(text)
    if name in _LOCAL:
        return internal(text)
    return ambiguous(text)


def _split(url: str) -> Tuple[Any, str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest:
        raise internal(f"`{url}` is not an absolute http(s) URL")
    cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    authority, path = rest[:cut], rest[cut:] or "/"
    if not authority:
        raise internal(f"`{url}` has no host")
    if path.startswith("?"):
        path = "/" + path
    wasi_scheme = http.Scheme_Https() if scheme.lower() == "https" else http.Scheme_Http()
    return wasi_scheme, authority, path


def _method(upper: str) -> Any:
    methods = {
        "GET": http.Method_Get, "HEAD": http.Method_Head, "POST": http.Method_Post,
        "PUT": http.Method_Put, "DELETE": http.Method_Delete, "PATCH": http.Method_Patch,
        "OPTIONS": http.Method_Options,
    }
    return methods[upper]() if upper in methods else http.Method_Other(upper)


def _encoded(headers: Optional[Dict[str, str]], body: Optional[bytes], json: Any) -> Tuple[Dict[str, str], bytes]:
    """A request's headers and body bytes; ``json`` (when given) becomes the
    body, with ``content-type: application/json`` unless set."""
    headers = dict(headers or {})
    if json is not None:
        body = _json.dumps(json, separators=(",", ":")).encode()
        headers.setdefault("content-type", "application/json")
    return headers, body or b""


def send(
    method: str,
    url: str,
    headers: Optional[Dict[str, str]] = None,
    body: Optional[bytes] = None,
    json: Any = None,
    timeout_ms: Optional[int] = None,
) -> Response:
    """Send one request over wasi:http and read the whole answer.

    The host's egress gate adds credentials (never set Authorization
    yourself), enforces the allowlist, and bounds the request by the
    attempt's deadline; ``timeout_ms`` can only shorten it. Failures come
    back classified: a refused connection is ``unavailable``, a connect
    timeout ``timeout``, a failure after the request left ``ambiguous``.
    """
    if outgoing_handler is None:
        raise internal("an exchange-world adapter has no network: return sy.Outgoing and let the host send it")
    headers, body = _encoded(headers, body, json)
    scheme, authority, path = _split(url)
    try:
        fields = http.Fields.from_list([(k, v.encode()) for k, v in headers.items()])
    except Err as e:
        raise internal(f"a header was refused by the host: {type(e.value).__name__}")
    request = http.OutgoingRequest(fields)
    method_value = _method(method.upper())
    try:
        request.set_method(method_value)
        request.set_scheme(scheme)
        request.set_authority(authority)
        request.set_path_with_query(path)
    except Err:
        raise internal(f"`{method} {url}` is not a valid request")
    outgoing = request.body()
    options = http.RequestOptions()
    if timeout_ms is not None:
        nanos = max(1, int(timeout_ms)) * 1_000_000
        for setter in (options.set_connect_timeout, options.set_first_byte_timeout,
                       options.set_between_bytes_timeout):
            try:
                setter(nanos)
            except Err:
                pass  # the host may not support it; it still bounds the call
    try:
        future = outgoing_handler.handle(request, options)
    except Err as e:
        raise _classify(e.value, url)
    write_failed = False
    with outgoing.write() as stream:
        try:
            for i in range(0, len(body), _WRITE_CHUNK):
                stream.blocking_write_and_flush(body[i:i + _WRITE_CHUNK])
        except Err:
            # The real cause (refused, denied...) arrives on the future.
            write_failed = True
    if write_failed:
        outgoing.__exit__(None, None, None)
    else:
        http.OutgoingBody.finish(outgoing, None)
    with future:
        with future.subscribe() as ready:
            ready.block()
        result = future.get()
    if not isinstance(result, Ok):
        raise internal("the response was already taken")
    if isinstance(result.value, Err):
        raise _classify(result.value.value, url)
    return _read(result.value.value, url)


def _read(response: Any, url: str) -> Response:
    chunks: List[bytes] = []
    size = 0
    with response:
        status = response.status()
        with response.headers() as fields:
            headers = fields.entries()
        with response.consume() as incoming:
            with incoming.stream() as stream:
                while True:
                    try:
                        chunk = stream.blocking_read(64 * 1024)
                    except Err as e:
                        if isinstance(e.value, StreamError_Closed):
                            break
                        raise ambiguous(f"reading the answer of {url} failed", status=status)
                    size += len(chunk)
                    if size > _MAX_RESPONSE:
                        raise ambiguous(
                            f"the answer of {url} is larger than {_MAX_RESPONSE} bytes", status=status
                        )
                    chunks.append(chunk)
    return Response(status, headers, b"".join(chunks))


def _describe(adapter: Any) -> wit.AppInfo:
    return wit.AppInfo(
        name=adapter.name,
        version=adapter.version,
        actions=[
            wit.ActionInfo(
                name=a.name,
                description=a.description,
                input_schema=_json.dumps(a.input),
                idempotency={
                    SAFE: wit.Idempotency.SAFE,
                    KEYED: wit.Idempotency.KEYED,
                    UNSAFE: wit.Idempotency.UNSAFE,
                }[a.declared()],
            )
            for a in adapter.actions
        ],
    )


def _contained(e: Exception) -> AdapterError:
    """An exception as the class the host reads: an adapter bug is internal."""
    if isinstance(e, AdapterError):
        return e
    return internal(f"adapter bug: {type(e).__name__}: {e}")


class Outgoing:
    """A request an exchange-world adapter asks the host to send, exactly as
    described. The host adds credentials (never set Authorization) and
    applies the app's egress policy; ``state`` (bytes, or anything JSON)
    goes to ``proceed`` with the answer."""

    def __init__(
        self,
        method: str,
        url: str,
        headers: Optional[Dict[str, str]] = None,
        body: Optional[bytes] = None,
        json: Any = None,
        timeout_ms: Optional[int] = None,
        state: Any = None,
    ):
        self.headers, self.body = _encoded(headers, body, json)
        self.method = method.upper()
        self.url = url
        self.timeout_ms = timeout_ms
        self.state = state

    def to_wit(self) -> Any:
        state = self.state
        if state is None:
            state = b""
        elif not isinstance(state, (bytes, bytearray)):
            state = _json.dumps(state, separators=(",", ":")).encode()
        return _xwit.Step_Send(
            _xwit.SendRequest(
                request=_xwit.HttpRequest(
                    method=self.method,
                    url=self.url,
                    headers=list(self.headers.items()),
                    body=bytes(self.body),
                    timeout_ms=None if self.timeout_ms is None else max(1, int(self.timeout_ms)),
                ),
                state=bytes(state),
            )
        )


class Exchange:
    """Base of the ``Exchange`` class componentize-py exports in the
    exchange world. Set ``name``, ``version`` and ``actions``; implement
    ``request(req)`` (the ``Outgoing`` to send) and ``response(req,
    answer)`` (the output, or raise ``AdapterError``). For several requests
    per call, override ``begin(req)`` and ``proceed(req, state, answer)``:
    each returns an ``Outgoing`` (carrying ``state``) or the output."""

    name: str = ""
    version: str = "0.0.0"
    actions: List[Action] = []

    def describe(self) -> wit.AppInfo:
        return _describe(self)

    def request(self, req: Request) -> Outgoing:
        raise NotImplementedError("implement request(req)")

    def response(self, req: Request, answer: Response) -> Any:
        raise NotImplementedError("implement response(req, answer)")

    def begin(self, req: Request) -> Any:
        return self.request(req)

    def proceed(self, req: Request, state: bytes, answer: Response) -> Any:
        return self.response(req, answer)

    def _step(self, run: Any) -> Any:
        try:
            out = run()
        except Exception as e:
            return _xwit.Step_Done(Err(_contained(e).to_wit()))
        if isinstance(out, Outgoing):
            return out.to_wit()
        return _xwit.Step_Done(Ok(wit.CallResponse(output=_json.dumps(out, separators=(",", ":")))))

    def start(self, request: wit.CallRequest) -> Any:
        def run() -> Any:
            req = Request(request)
            if not any(a.name == req.action for a in self.actions):
                raise req.unknown_action()
            return self.begin(req)

        return self._step(run)

    def resume(self, request: wit.CallRequest, state: bytes, response: Any) -> Any:
        def run() -> Any:
            answer = Response(
                response.status, [(k, v.encode("latin-1", "replace")) for k, v in response.headers], response.body
            )
            return self.proceed(Request(request), state, answer)

        return self._step(run)


def _exchanges(cls: type) -> List[type]:
    """``cls``'s subclasses, at any depth."""
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_exchanges(sub))
    return found


class ExchangeReading:
    """The ``ExchangeReading`` class componentize-py exports in the
    ``exchange-reading-adapter`` world: it lists the actions of the module's
    ``Exchange`` declared ``read_by_host=True``. In the adapter module:
    ``ExchangeReading = sy.ExchangeReading``."""

    def readings(self) -> List[Any]:
        if _xread is None:
            raise RuntimeError("build for the exchange-reading-adapter world to export ExchangeReading")
        names: Dict[str, None] = {}
        for cls in _exchanges(Exchange):
            for a in cls.actions:
                if a.read_by_host:
                    names[a.name] = None
        return [_xread.ActionReading(action=n, reading=_xread.Reading.JSON_BODY) for n in names]


class Adapter:
    """Base of the ``Provider`` class componentize-py exports.

    Set ``name``, ``version`` and ``actions``; implement ``handle(req)``
    returning a JSON-serializable value or raising ``AdapterError``.
    Anything else raised becomes ``internal`` with its message.
    """

    name: str = ""
    version: str = "0.0.0"
    actions: List[Action] = []

    def describe(self) -> wit.AppInfo:
        return _describe(self)

    def call(self, request: wit.CallRequest) -> wit.CallResponse:
        try:
            req = Request(request)
            if not any(a.name == req.action for a in self.actions):
                raise req.unknown_action()
            output = self.handle(req)
        except Exception as e:  # an adapter bug is contained, reported as internal
            raise Err(_contained(e).to_wit())
        return wit.CallResponse(output=_json.dumps(output, separators=(",", ":")))

    def handle(self, req: Request) -> Any:
        raise NotImplementedError("implement handle(req)")
