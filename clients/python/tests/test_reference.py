"""The reference docs' examples in Python: the same calls, in snake_case, with
``Switchyard(url=…, token=…, product=…, env=…)`` as the only new line."""

from __future__ import annotations

import pytest

from switchyard_client import DataTypes, FeatureEventTypes, MappingError, Switchyard


@pytest.fixture
def resilience(reference_server):
    with Switchyard(url=reference_server.url, token=reference_server.token, product="my-product", env="prd") as client:
        yield client


def test_overview_code_first(resilience, providers):
    def stripe_health(ctx):
        ctx.probe().app("stripe-app").action("health")
        ctx.interval(30000)  # Check every 30 seconds
        ctx.retries(2)
        ctx.env("prd")

    healthcheck = resilience.healthcheck.define(product="my-product", tag="stripe-health", handler=stripe_health)
    assert healthcheck["tag"] == "stripe-health"
    for tag, app in (("twilio-health", "twilio-app"), ("nexmo-health", "nexmo-app"), ("paypal-health", "paypal-app")):
        resilience.healthcheck.define(product="my-product", tag=tag, handler=lambda ctx, app=app: (ctx.probe().app(app).action("health"), ctx.interval(30000), ctx.retries(2), ctx.env("prd")))

    def sms(ctx):
        ctx.provider("twilio").weight(70).healthcheck("twilio-health").app("twilio-app").action("send-sms").map_input(lambda input: {"body": {"to": input.phone, "body": input.message}}).map_output(lambda res: {"message_id": res.sid}).retries(2)
        ctx.provider("nexmo").weight(30).healthcheck("nexmo-health").app("nexmo-app").action("send-sms").map_input(lambda input: {"body": {"to": input.phone, "text": input.message}}).map_output(lambda res: {"message_id": res["message-id"]}).retries(2)

    quota = resilience.quota.define(product="my-product", tag="sms-quota", input={"phone": {"type": "string"}, "message": {"type": "string"}}, handler=sms)
    assert quota["providers"][1]["output"] == {"message_id": "$Response{message-id}"}

    def payment(ctx):
        ctx.primary("stripe").healthcheck("stripe-health").app("stripe-app").action("charge").retries(2)
        ctx.fallback("paypal").healthcheck("paypal-health").app("paypal-app").action("payment").retries(2)

    resilience.fallback.define(product="my-product", tag="payment-fallback", input={"amount": {"type": "number"}}, handler=payment)

    result = resilience.quota.run(product="my-product", env="prd", tag="sms-quota", input={"phone": "+15550100", "message": "Your code is 123456"})
    assert result.provider in ("twilio", "nexmo")
    providers.mode["stripe-app"] = "fail"
    assert resilience.fallback.run(tag="payment-fallback", input={"amount": 5000}).provider == "paypal"

    with pytest.raises(MappingError, match=r"options\[1\]\.input"):
        resilience.fallback.define(
            tag="payment-fallback-mapped",
            handler=lambda ctx: (
                ctx.primary("stripe").app("stripe-app").action("charge"),
                ctx.fallback("paypal").app("paypal-app").action("payment").map_input(lambda input: {"body": {"amount": {"value": input.amount / 100}}}),
            ),
        )


def test_fallbacks_overview_object_form(resilience, providers):
    ductape = resilience
    ductape.fallback.create(
        {
            "name": "Payment Provider Fallback",
            "tag": "payment-fallback-2",
            "description": "Stripe to PayPal to Square fallback chain",
            "input": {"amount": {"type": DataTypes.NUMBER}, "currency": {"type": DataTypes.STRING}, "customerId": {"type": DataTypes.STRING}},
            "options": [
                {
                    "type": FeatureEventTypes.ACTION,
                    "event": "create-charge",
                    "app": "stripe",
                    "input": {"amount": "$Input{amount}", "currency": "$Input{currency}", "customer": "$Input{customerId}"},
                    "output": {"transactionId": "$Response{id}", "status": "$Response{status}"},
                    "retries": 2,
                },
                {
                    "type": FeatureEventTypes.ACTION,
                    "event": "create-payment",
                    "app": "paypal",
                    "input": {"amount": "$Input{amount}", "currency": "$Input{currency}"},
                    "output": {"transactionId": "$Response{id}", "status": "$Response{status}"},
                    "retries": 2,
                },
            ],
        }
    )
    fallback = ductape.fallback.fetch("payment-fallback-2")
    assert [o["provider"] for o in fallback["options"]] == ["stripe", "paypal"]
    ductape.fallback.update("payment-fallback-2", {"description": "Stripe to PayPal"})
    assert ductape.fallback.fetch("payment-fallback-2")["description"] == "Stripe to PayPal"
    res = ductape.fallback.run(tag="payment-fallback-2", input={"amount": 1000, "currency": "usd", "customerId": "cus_123"})
    assert res.provider == "stripe" and res.output["transactionId"].startswith("stripe_")
    assert providers.bodies["stripe"][-1] == {"amount": 1000, "currency": "usd", "customer": "cus_123"}
