"""The reference's code-first builders (``handler=lambda ctx: ctx.provider("twilio").weight(70)…``)
and the translation of its object form (``event``, ``type``, ``check_interval``)
into the API's definition bodies."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

from ._mapping import Mapping, to_template


class FeatureEventTypes:
    """Option types under the reference's names."""

    ACTION = "action"
    EVENT = "action"
    FEATURE = "feature"


class DataTypes:
    """Input field types; the reference's string-like types map to ``string``."""

    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    OBJECT = "object"
    ARRAY = "array"
    NUMBER_STRING = "string"
    NOSPACES_STRING = "string"
    EMAIL_STRING = "string"
    UUID = "string"


_RENAME = {
    "check_interval": "check_interval_ms",
    "interval": "interval_ms",
    "timeout": "timeout_ms",
    "backoff": "backoff_ms",
}

KINDS = {
    "healthcheck": "healthchecks",
    "quota": "quotas",
    "fallback": "fallbacks",
    "feature": "features",
    "cache": "caches",
}


def _rename(obj: dict[str, Any]) -> dict[str, Any]:
    return {_RENAME.get(k, k): v for k, v in obj.items() if v is not None}


def normalise_option(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """One option in the reference's object form, as the API stores it."""
    o = _rename(dict(raw))
    if "event" in o:
        if o.get("action") not in (None, o["event"]):
            raise TypeError(f"{where}: give either action or the reference's event, not both")
        o["action"] = o.pop("event")
    if "type" in o:
        t = str(o["type"]).lower()
        if t in ("action", "event"):
            del o["type"]
        elif t == "feature":
            o["type"] = "feature"
        else:
            raise TypeError(f"{where}.type: {o['type']!r} is not an option type; use 'action' or 'feature'")
    if "provider" not in o:
        name = o.get("tag") if o.get("type") == "feature" else o.get("app")
        if isinstance(name, str):
            o["provider"] = name
    if callable(o.get("input")):
        o["input"] = to_template(o["input"], "$Input", f"{where}.input")
    if callable(o.get("output")):
        o["output"] = to_template(o["output"], "$Response", f"{where}.output")
    return o


def normalise_definition(kind: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A definition in the reference's object form, as the API stores it (``product`` and ``env`` removed)."""
    d = {k: v for k, v in raw.items() if k not in ("product", "env")}
    if "handler" in d:
        raise TypeError(f"{kind}: 'handler' belongs to define(), not create()")
    d = _rename(d)
    listed = "providers" if kind == "quota" else "options"
    if kind == "quota" and "options" in d and "providers" not in d:
        d["providers"] = d.pop("options")
    if isinstance(d.get(listed), list):
        d[listed] = [normalise_option(o, f"{listed}[{i}]") for i, o in enumerate(d[listed])]
    if kind == "healthcheck" and "event" in d:
        d["action"] = d.pop("event")
    return d


class OptionBuilder:
    """One option: ``ctx.provider("twilio").weight(70).app("twilio-app").action("send-sms")``."""

    def __init__(self, provider: str, where: str) -> None:
        self.option: dict[str, Any] = {"provider": provider}
        self._where = where

    def _set(self, key: str, value: Any) -> "OptionBuilder":
        self.option[key] = value
        return self

    def weight(self, weight: int) -> "OptionBuilder":
        """Share of a quota's traffic (relative)."""
        return self._set("weight", weight)

    def healthcheck(self, tag: str) -> "OptionBuilder":
        """Skip this option while that healthcheck fails."""
        return self._set("healthcheck", tag)

    def app(self, tag: str) -> "OptionBuilder":
        """The app (an account of a provider) that serves it."""
        return self._set("app", tag)

    def action(self, name: str) -> "OptionBuilder":
        """The app's action to call."""
        return self._set("action", name)

    def event(self, name: str) -> "OptionBuilder":
        """The reference's name for ``action``."""
        return self.action(name)

    def feature(self, tag: str) -> "OptionBuilder":
        """Run a feature instead of an app's action."""
        self.option["type"] = "feature"
        return self._set("tag", tag)

    def input(self, mapping: Mapping) -> "OptionBuilder":
        """The request's input: a template or a function reading the run's input."""
        return self._set("input", to_template(mapping, "$Input", f"{self._where}.input"))

    def map_input(self, mapping: Mapping) -> "OptionBuilder":
        """The reference's ``mapInput``: same as ``input``."""
        return self.input(mapping)

    def output(self, mapping: Mapping) -> "OptionBuilder":
        """What the run answers when this option serves: a template or a function reading the response."""
        return self._set("output", to_template(mapping, "$Response", f"{self._where}.output"))

    def map_output(self, mapping: Mapping) -> "OptionBuilder":
        """The reference's ``mapOutput``: same as ``output``."""
        return self.output(mapping)

    def retries(self, n: int) -> "OptionBuilder":
        return self._set("retries", n)

    def backoff(self, ms: int, max_ms: Optional[int] = None) -> "OptionBuilder":
        if max_ms is not None:
            self.option["max_backoff_ms"] = max_ms
        return self._set("backoff_ms", ms)

    def timeout(self, ms: int) -> "OptionBuilder":
        return self._set("timeout_ms", ms)

    def check_interval(self, ms: int) -> "OptionBuilder":
        return self._set("check_interval_ms", ms)

    def idempotent(self, yes: bool = True) -> "OptionBuilder":
        return self._set("idempotent", yes)

    def breaker(self, settings: dict[str, Any]) -> "OptionBuilder":
        return self._set("breaker", dict(settings))

    def breaker_key(self, template: str) -> "OptionBuilder":
        return self._set("breaker_key", template)

    def on(self, rules: list[dict[str, Any]]) -> "OptionBuilder":
        return self._set("on", list(rules))

    def hedge(self, settings: dict[str, Any]) -> "OptionBuilder":
        return self._set("hedge", dict(settings))

    def build(self) -> dict[str, Any]:
        o = dict(self.option)
        if o.get("type") != "feature":
            o.setdefault("app", o["provider"])
            if "action" not in o:
                raise TypeError(f"{self._where}: no action; add .action('…') (the reference's event)")
        return o


class _DefinitionContext:
    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}
        self.options: list[OptionBuilder] = []

    def deadline(self, ms: int) -> "_DefinitionContext":
        self.settings["deadline_ms"] = ms
        return self

    def breaker(self, settings: dict[str, Any]) -> "_DefinitionContext":
        self.settings["breaker"] = dict(settings)
        return self

    def adaptive(self, settings: dict[str, Any]) -> "_DefinitionContext":
        self.settings["adaptive"] = dict(settings)
        return self

    def on(self, rules: list[dict[str, Any]]) -> "_DefinitionContext":
        self.settings["on"] = list(rules)
        return self

    def hedge(self, settings: dict[str, Any]) -> "_DefinitionContext":
        self.settings["hedge"] = dict(settings)
        return self

    def failover_after_ambiguous(self, yes: bool = True) -> "_DefinitionContext":
        self.settings["failover_after_ambiguous"] = yes
        return self

    def spillover(self, yes: bool = True) -> "_DefinitionContext":
        self.settings["spillover"] = yes
        return self

    def _add(self, name: str, listed: str) -> OptionBuilder:
        b = OptionBuilder(name, f"{listed}[{len(self.options)}]")
        self.options.append(b)
        return b


class QuotaContext(_DefinitionContext):
    """``handler`` of ``quota.define``."""

    def provider(self, name: str) -> OptionBuilder:
        """Add a provider to the split."""
        return self._add(name, "providers")

    def panic_mode(self, yes: bool = True) -> "QuotaContext":
        self.settings["panic_mode"] = yes
        return self

    def body(self) -> dict[str, Any]:
        return {**self.settings, "providers": [o.build() for o in self.options]}


class FallbackContext(_DefinitionContext):
    """``handler`` of ``fallback.define``."""

    def primary(self, name: str) -> OptionBuilder:
        """The option tried first."""
        if self.options:
            raise TypeError(f"options[0]: primary({name!r}) must come first and once; use fallback({name!r})")
        return self._add(name, "options")

    def fallback(self, name: str) -> OptionBuilder:
        """The next option, tried when the ones before failed."""
        return self._add(name, "options")

    def provider(self, name: str) -> OptionBuilder:
        return self._add(name, "options")

    def body(self) -> dict[str, Any]:
        return {**self.settings, "options": [o.build() for o in self.options]}


class ProbeBuilder:
    """``ctx.probe().app("stripe-app").action("health")``."""

    def __init__(self) -> None:
        self.app_tag: Optional[str] = None
        self.action_name: Optional[str] = None
        self.probe_input: dict[str, Any] = {}

    def app(self, tag: str) -> "ProbeBuilder":
        self.app_tag = tag
        return self

    def action(self, name: str) -> "ProbeBuilder":
        self.action_name = name
        return self

    def event(self, name: str) -> "ProbeBuilder":
        return self.action(name)

    def input(self, value: dict[str, Any]) -> "ProbeBuilder":
        self.probe_input = dict(value)
        return self


class HealthcheckContext:
    """``handler`` of ``healthcheck.define``."""

    def __init__(self) -> None:
        self._probes: list[ProbeBuilder] = []
        self._envs: list[tuple[str, Optional[dict[str, Any]]]] = []
        self.settings: dict[str, Any] = {}

    def probe(self) -> ProbeBuilder:
        p = ProbeBuilder()
        self._probes.append(p)
        return p

    def interval(self, ms: int) -> "HealthcheckContext":
        self.settings["interval_ms"] = ms
        return self

    def retries(self, n: int) -> "HealthcheckContext":
        self.settings["retries"] = n
        return self

    def timeout(self, ms: int) -> "HealthcheckContext":
        self.settings["timeout_ms"] = ms
        return self

    def env(self, env: str, input: Optional[dict[str, Any]] = None) -> "HealthcheckContext":
        self._envs.append((env, input))
        return self

    def body(self, default_env: Optional[str]) -> dict[str, Any]:
        if len(self._probes) != 1:
            raise TypeError(f"healthcheck: call ctx.probe() exactly once (got {len(self._probes)})")
        p = self._probes[0]
        if not p.app_tag or not p.action_name:
            raise TypeError("healthcheck: ctx.probe().app('…').action('…') needs both")
        envs = self._envs or ([(default_env, None)] if default_env else [])
        if not envs:
            raise TypeError("healthcheck: no env; call ctx.env('prd') or give the client an env")
        return {**self.settings, "app": p.app_tag, "action": p.action_name, "input": {e: i if i is not None else p.probe_input for e, i in envs}}


def defined_body(kind: str, spec: dict[str, Any], handler: Callable[[Any], Any], default_env: Optional[str]) -> dict[str, Any]:
    """The body ``define`` sends, from a handler and the definition's other fields."""
    if not callable(handler):
        raise TypeError(f"{kind}.define: handler must be a function taking ctx")
    base = normalise_definition(kind, spec)
    ctx: Any
    if kind == "healthcheck":
        ctx = HealthcheckContext()
        _call(handler, ctx, kind)
        return {**base, **ctx.body(default_env)}
    ctx = QuotaContext() if kind == "quota" else FallbackContext()
    _call(handler, ctx, kind)
    body = {**base, **ctx.body()}
    if not body["providers" if kind == "quota" else "options"]:
        raise TypeError(f"{kind}.define: the handler added no option")
    return body


def _call(handler: Callable[[Any], Any], ctx: Any, kind: str) -> None:
    if inspect.iscoroutinefunction(handler):
        raise TypeError(f"{kind}.define: the handler only builds the definition; make it a plain function (def, not async def)")
    handler(ctx)
