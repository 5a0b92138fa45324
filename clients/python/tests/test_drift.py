"""The client against the server's /openapi.json (the repository's copy, which a
server test keeps equal to what ``serve`` answers): a code, field or route the
server adds or drops fails here."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from switchyard_client import ERROR_CODES, _ops

DOC = json.loads((Path(__file__).resolve().parents[3] / "host/server/src/api/openapi.json").read_text())
SCHEMAS = DOC["components"]["schemas"]


def test_error_codes_match():
    assert sorted(ERROR_CODES) == sorted(SCHEMAS["Error"]["properties"]["code"]["enum"])


def test_error_fields_the_client_reads_exist():
    for field in ("code", "message", "field", "trace", "retry_after_ms", "reconcile"):
        assert field in SCHEMAS["Error"]["properties"], field
    assert sorted(SCHEMAS["Error"]["properties"]["reconcile"]["properties"]) == ["app", "idempotency_key", "provider"]


def test_run_request_and_result():
    source = inspect.getsource(_ops.run_op)
    assert sorted(SCHEMAS["RunRequest"]["properties"]) == sorted(["input", "idempotency_key", "session", "cache", "deadline_ms"])
    for field in SCHEMAS["RunRequest"]["properties"]:
        assert f'"{field}"' in source, f"the client never sends {field}"
    for field in SCHEMAS["RunResult"]["required"]:
        assert f'r["{field}"]' in source or f'r.get("{field}")' in source, f"the client never reads {field}"


def test_routes_exist():
    calls = [
        ("post", "/v1/{product}/{env}/{kinds}/{tag}/run"),
        ("get", "/v1/{product}/definitions/{kinds}"),
        ("post", "/v1/{product}/definitions/{kinds}"),
        ("get", "/v1/{product}/definitions/{kinds}/{tag}"),
        ("put", "/v1/{product}/definitions/{kinds}/{tag}"),
        ("patch", "/v1/{product}/definitions/{kinds}/{tag}"),
        ("delete", "/v1/{product}/definitions/{kinds}/{tag}"),
        ("get", "/v1/{product}/{env}/{kinds}/{tag}/providers"),
        ("get", "/v1/{product}/{env}/{kinds}/{tag}/providers/{provider}/history"),
        ("get", "/v1/{product}/{env}/healthchecks/{tag}"),
        ("post", "/v1/{product}/{env}/healthchecks/{tag}/check"),
        ("get", "/v1/{product}/apps/{app}/admission"),
        ("put", "/v1/{product}/apps/{app}/admission"),
        ("post", "/v1/{product}/providers/{provider}/{action}"),
        ("get", "/v1/events"),
        ("get", "/v1/runs"),
        ("get", "/v1/whoami"),
    ]
    for method, path in calls:
        assert method in DOC["paths"].get(path, {}), f"{method.upper()} {path} is not in /openapi.json"
