"""Vonage adapter (Messages API v1 for SMS, Account API for health), written
in Python and built with componentize-py, in the exchange world: it
describes each request and the host sends it.

``send-sms`` posts ``{"message_type": "text", "channel": "sms", …}`` to
``/v1/messages`` and returns Vonage's ``message_uuid``; ``get-balance`` and
``ping`` read ``/account/get-balance``. HTTP Basic auth (API key + secret)
is added by the host at egress from the app's grant (``scheme = "basic"``):
the secret never enters the sandbox.

Config keys: ``messages_base`` (default ``https://api.nexmo.com``),
``rest_base`` (default ``https://rest.nexmo.com``), ``default_from`` (the
sender when the input names none).

Errors are RFC 7807 problem documents (``type``, ``title``, ``detail``);
the adapter keeps Vonage's error code (the ``type`` URL's fragment) and
maps: 401/403 → internal (a grant problem), 402 (low balance) →
unavailable (another provider can still send), 429 → rate-limited (with
Retry-After), 408/5xx → unavailable, other 4xx → rejected.
"""

import switchyard_guest as sy

SEND_SMS = "send-sms"
GET_BALANCE = "get-balance"
PING = "ping"


def vonage_error(response: sy.Response) -> sy.AdapterError:
    status = response.status
    try:
        body = response.json()
    except sy.AdapterError:
        body = None
    if not isinstance(body, dict):
        body = {}
    error_type = body.get("type") if isinstance(body.get("type"), str) else None
    code = None
    if error_type:
        code = error_type.rsplit("#", 1)[1] if "#" in error_type else error_type.rstrip("/").rsplit("/", 1)[-1]
    parts = [p for p in (body.get("title"), body.get("detail")) if isinstance(p, str) and p]
    invalid = body.get("invalid_parameters")
    if isinstance(invalid, list):
        parts.extend(
            f"{p.get('name')}: {p.get('reason')}" for p in invalid if isinstance(p, dict)
        )
    message = "; ".join(parts) or sy.cut(response.text(), 300)
    message = f"vonage {status}: {message}"
    if status in (401, 403):
        return sy.internal(f"{message} (check the app's API key and secret)", status=status, code=code)
    if status == 402:
        return sy.unavailable(f"{message} (top up the Vonage account)", status=status, code=code)
    return sy.AdapterError.from_status(status, message, code=code, retry_after_ms=response.retry_after_ms())


def e164(number: str, field: str) -> str:
    """Vonage wants E.164 digits without the leading +."""
    digits = number.strip().removeprefix("+").replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise sy.rejected(f"input.{field} = {number!r} is not a phone number in E.164 form (+14155550100)")
    return digits


def sms_message(req: sy.Request) -> dict:
    """The Messages API body for ``send-sms``, checked."""
    sender = req.opt_str("from") or sy.config.get("default_from")
    if not sender:
        raise sy.rejected("input.from is required (or set config default_from on the app)")
    text = req.str("text")
    if not text:
        raise sy.rejected("input.text must not be empty")
    message = {
        "message_type": "text",
        "channel": "sms",
        "to": e164(req.str("to"), "to"),
        "from": sender.removeprefix("+"),
        "text": text,
    }
    client_ref = (req.opt_str("client_ref") or req.idempotency_key)[:100]
    if client_ref:
        message["client_ref"] = client_ref
    return message


class Exchange(sy.Exchange):
    name = "vonage"
    version = "0.2.0"
    actions = [
        sy.Action(
            SEND_SMS,
            "Messages API: send an SMS; returns message_uuid (not idempotent: Vonage has no idempotency key)",
            input={
                "to": {"type": "string", "required": True, "description": "E.164 number"},
                "from": {"type": "string", "description": "sender number or alphanumeric ID; default: config default_from"},
                "text": {"type": "string", "required": True},
                "client_ref": {"type": "string", "description": "up to 100 characters; default: the run's idempotency key"},
            },
        ),
        sy.Action(GET_BALANCE, "Account API: the account balance in EUR", idempotency=sy.SAFE),
        sy.Action(PING, "Account API get-balance: healthy when Vonage answers 2xx", idempotency=sy.SAFE),
    ]

    def request(self, req: sy.Request) -> sy.Outgoing:
        if req.action == SEND_SMS:
            base = sy.config.get("messages_base", "https://api.nexmo.com").rstrip("/")
            return sy.Outgoing("POST", f"{base}/v1/messages", json=sms_message(req))
        rest = sy.config.get("rest_base", "https://rest.nexmo.com").rstrip("/")
        return sy.Outgoing("GET", f"{rest}/account/get-balance")

    def response(self, req: sy.Request, answer: sy.Response):
        if not 200 <= answer.status < 300:
            raise vonage_error(answer)
        body = answer.json()
        if req.action == PING:
            return {"ok": True}
        if req.action == GET_BALANCE:
            return {"value": body.get("value"), "auto_reload": body.get("autoReload")}
        uuid = body.get("message_uuid") if isinstance(body, dict) else None
        if not uuid:
            raise sy.ambiguous(f"vonage {answer.status}: no message_uuid in {sy.cut(answer.text(), 200)}")
        message = sms_message(req)
        return {"message_uuid": uuid, "to": message["to"], "client_ref": message.get("client_ref")}
