"""A Python exchange adapter for the host's tests, in the
``exchange-reading-adapter`` world: ``read-by-host`` lets the host read a 2xx
JSON answer itself; ``post`` sends the same request and is read by
``response``, which wraps whatever answer it gets as ``{"status", "body",
"read_by": "python"}`` (so a test sees which side read an answer)."""

import switchyard_guest as sy


class Exchange(sy.Exchange):
    name = "echo-py"
    version = "0.1.0"
    actions = [
        sy.Action("read-by-host", "POST /v1/messages; a 2xx JSON answer is read by the host", read_by_host=True),
        sy.Action("post", "POST /v1/messages; every answer is read by the adapter"),
    ]

    def request(self, req: sy.Request) -> sy.Outgoing:
        base = sy.config.require("base_url").rstrip("/")
        return sy.Outgoing("POST", f"{base}/v1/messages", json=req.input)

    def response(self, req: sy.Request, answer: sy.Response):
        return {"status": answer.status, "body": answer.text(), "read_by": "python"}


ExchangeReading = sy.ExchangeReading
