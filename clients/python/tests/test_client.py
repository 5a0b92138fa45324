"""The client against a real ``switchyard serve`` and simulated providers."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

from switchyard_client import (
    AllFailedError,
    AmbiguousError,
    AsyncSwitchyard,
    ExistsError,
    ForbiddenError,
    MappingError,
    OverloadedError,
    Switchyard,
    UnauthorizedError,
    ValidationError,
)


@pytest.fixture
def sy(server):
    with Switchyard(url=server.url, token=server.token, product="shop", env="dev") as client:
        yield client


def checkout(ctx):
    ctx.primary("main").app("pay-main").action("charge").input({"amount": "$Input{amount}", "order": "$Input{order}"}).output({"id": "$Response{id}", "status": "$Response{status}"})
    ctx.fallback("backup").app("pay-backup").action("charge").map_input(lambda i: {"amount": i.amount, "order": i.order}).map_output(lambda r: {"id": r.id, "status": r.status})


SCHEMA = {"amount": {"type": "integer"}, "order": {"type": "string"}}


def test_define_run_fetch_update_run_again(sy, providers):
    sy.fallback.define("checkout", checkout, name="Checkout", description="main account first", input=SCHEMA)
    first = sy.fallback.run("checkout", {"amount": 1099, "order": "o-1"})
    assert first.provider == "main"
    assert first.output["id"].startswith("pay-main_")
    assert re.fullmatch(r"[0-9a-f-]{36}", first.idempotency_key)
    assert first.trace["served_by"] == "main"
    assert providers.bodies["pay-main"][0] == {"amount": 1099, "order": "o-1"}
    assert providers.keys["pay-main"] == [first.idempotency_key]

    fetched = sy.fallback.fetch("checkout")
    assert fetched["name"] == "Checkout"
    assert [o["provider"] for o in fetched["options"]] == ["main", "backup"]
    assert fetched["options"][1]["input"] == {"amount": "$Input{amount}", "order": "$Input{order}"}
    live = sy.fallback.fetch("checkout", env="dev")
    assert live["options"][0]["states"]["dev"]["breaker"]["state"] == "closed"
    assert any(d["tag"] == "checkout" for d in sy.fallback.fetch_all())

    updated = sy.fallback.update("checkout", {"description": "backup first", "options": [fetched["options"][1], fetched["options"][0]]})
    assert updated["description"] == "backup first"
    assert updated["name"] == "Checkout"
    assert sy.fallback.run("checkout", {"amount": 5, "order": "o-2"}).provider == "backup"


def test_quota_split(sy, providers):
    def sms(ctx):
        ctx.provider("a").weight(70).app("sms-a").action("send").map_input(lambda i: {"to": i.phone, "text": f"Hi: {i.message}"}).map_output(lambda r: {"messageId": r.id})
        ctx.provider("b").weight(30).app("sms-b").action("send").map_input(lambda i: {"to": i.phone, "text": f"Hi: {i.message}"}).map_output(lambda r: {"messageId": r.id})

    sy.quota.define("sms", sms, input={"phone": {"type": "string"}, "message": {"type": "string"}})
    served = {"a": 0, "b": 0}
    for n in range(20):
        r = sy.quota.run("sms", {"phone": "+15550100", "message": f"n{n}"})
        served[r.provider] += 1
    assert served == {"a": 14, "b": 6}
    assert providers.bodies["sms-a"][0] == {"to": "+15550100", "text": "Hi: n0"}
    states = sy.quota.providers("sms")
    assert sorted(s["provider"] for s in states) == ["a", "b"]


def test_failover_and_all_failed(sy, providers):
    sy.fallback.define("pay", checkout, input=SCHEMA)
    providers.mode["pay-main"] = "fail"
    r = sy.fallback.run("pay", {"amount": 1, "order": "f-1"})
    assert r.provider == "backup"
    assert [a["provider"] for a in r.trace["attempts"]] == ["main", "backup"]
    providers.mode["pay-backup"] = "fail"
    with pytest.raises(AllFailedError) as e:
        sy.fallback.run("pay", {"amount": 1, "order": "f-2"})
    assert e.value.status == 502
    assert [a["provider"] for a in e.value.attempts] == ["main", "backup"]


def test_overloaded_retry_after(sy, providers):
    sy.fallback.define("limited", lambda ctx: ctx.primary("slow").app("slow").action("charge"), input={"amount": {"type": "integer"}})
    config = sy.admission("slow")["config"]
    sy.set_admission("slow", {**config, "rate_per_sec": 1, "burst": 1, "queue_timeout_ms": 1})
    sy.fallback.run("limited", {"amount": 1})
    with pytest.raises(OverloadedError) as e:
        sy.fallback.run("limited", {"amount": 2}, retry=False)
    assert 0 < e.value.retry_after_ms <= 2000
    r = sy.fallback.run("limited", {"amount": 3})
    assert r.sends >= 2 and r.latency_ms >= 200
    assert providers.calls["slow"] == 2


def test_replay_and_in_progress(sy, providers):
    sy.fallback.define("once", checkout, input=SCHEMA)
    a = sy.fallback.run("once", {"amount": 1, "order": "r"}, idempotency_key="order-42")
    b = sy.fallback.run("once", {"amount": 1, "order": "r"}, idempotency_key="order-42")
    assert b.trace.get("replayed") is True and b.output == a.output
    assert providers.calls["pay-main"] == 1

    providers.mode["pay-main"] = 0.7
    first: dict = {}
    t = threading.Thread(target=lambda: first.setdefault("r", sy.fallback.run("once", {"amount": 2, "order": "p"}, idempotency_key="order-43")))
    t.start()
    time.sleep(0.2)
    second = sy.fallback.run("once", {"amount": 2, "order": "p"}, idempotency_key="order-43")
    t.join()
    assert second.sends >= 2 and second.trace.get("replayed") is True
    assert second.output == first["r"].output
    assert providers.calls["pay-main"] == 2


def test_ambiguous_is_not_retried(sy, providers):
    sy.fallback.define("amb", checkout, input=SCHEMA)
    providers.mode["pay-main"] = "drop"
    with pytest.raises(AmbiguousError) as e:
        sy.fallback.run("amb", {"amount": 1, "order": "x"}, idempotency_key="amb-1")
    assert e.value.reconcile.app == "pay-main" and e.value.reconcile.idempotency_key == "amb-1"
    assert providers.calls["pay-main"] == 1 and "pay-backup" not in providers.calls


def test_bad_definitions(sy):
    with pytest.raises(ValidationError) as e:
        sy.fallback.create(tag="bad", options=[{"app": "no-such-app", "event": "charge"}])
    assert e.value.code == "invalid-definition" and "options[0].app" in e.value.field
    made = sy.fallback.create(
        tag="objects",
        input={"amount": {"type": "integer"}},
        options=[{"type": "ACTION", "event": "charge", "app": "pay-main", "input": {"amount": "$Input{amount}"}, "retries": 1}],
    )
    assert made["options"][0]["provider"] == "pay-main" and made["options"][0]["action"] == "charge"
    with pytest.raises(ExistsError):
        sy.fallback.create(tag="objects", options=[{"app": "pay-main", "event": "charge"}])
    sy.fallback.delete("objects")
    with pytest.raises(MappingError, match=r"providers\[0\]\.input: the mapping computes with \$Input\{amount\}"):
        sy.quota.define("x", lambda ctx: ctx.provider("a").app("sms-a").action("send").map_input(lambda i: {"amount": i.amount / 100}))


def test_tokens(server):
    with Switchyard(url=server.url, token="not-a-token-of-this-server", product="shop", env="dev") as stranger:
        with pytest.raises(UnauthorizedError):
            stranger.fallback.fetch_all()
    with Switchyard(url=server.url, token=server.run_token, product="shop", env="dev") as runner:
        with pytest.raises(ForbiddenError, match="define"):
            runner.fallback.create(tag="nope", options=[{"app": "pay-main", "event": "charge"}])
        assert runner.whoami()["role"] == "run"


def test_features_healthchecks_events(sy):
    sy.fallback.define("step-pay", checkout, input=SCHEMA)
    sy.features.create(tag="order", input=SCHEMA, steps=[{"name": "pay", "type": "fallback", "tag": "step-pay"}], output={"paid": "$Sequence{pay}{id}"})
    seen: dict = {}

    def watch():
        for ev in sy.events():
            if ev["event"] == "run" and ev["data"].get("tag") == "order":
                seen["ev"] = ev
                return

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    time.sleep(0.3)
    r = sy.features.run("order", {"amount": 7, "order": "f"})
    assert r.output["paid"].startswith("pay-main_")
    t.join(timeout=10)
    assert seen["ev"]["data"]["tag"] == "order"

    def health(ctx):
        ctx.probe().app("stripe-app").action("health")
        ctx.interval(60000)
        ctx.retries(1)
        ctx.env("dev")
        ctx.env("prd")

    sy.healthcheck.define("main-health", health)
    assert sorted(sy.healthcheck.fetch("main-health")["input"]) == ["dev", "prd"]
    sy.healthcheck.check("main-health", env="prd")
    assert sy.healthcheck.status("main-health", env="prd")["status"] == "healthy"


def test_asyncio_client(server, providers):
    async def main():
        async with AsyncSwitchyard(url=server.url, token=server.token, product="shop", env="dev") as sy:
            await sy.fallback.define("async-pay", checkout, input=SCHEMA)
            results = await asyncio.gather(*(sy.fallback.run("async-pay", {"amount": n, "order": f"a{n}"}) for n in range(20)))
            assert {r.provider for r in results} == {"main"}
            assert len({r.idempotency_key for r in results}) == 20
            providers.mode["pay-main"] = "fail"
            r = await sy.fallback.run("async-pay", {"amount": 1, "order": "b"})
            assert r.provider == "backup"
            fetched = await sy.fallback.fetch("async-pay", env="dev")
            assert fetched["options"][0]["states"]["dev"]["counts"]
            async for ev in sy.events():
                assert ev["event"] == "state"
                break

    asyncio.run(main())
