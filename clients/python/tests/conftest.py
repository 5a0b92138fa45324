"""A real ``switchyard serve`` and simulated providers on loopback.

The providers are one HTTP server; each app's base URL is a path under it
(``/sms-a``, ``/pay-main``, …), and each can be told to fail, stall or drop
the connection (``providers.mode[app] = "fail" | "drop" | seconds``)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN = os.environ.get("SWITCHYARD_BIN", str(REPO / "target" / "debug" / "switchyard"))


class Providers:
    def __init__(self) -> None:
        self.mode: dict[str, Any] = {}
        self.calls: dict[str, int] = {}
        self.keys: dict[str, list[str]] = {}
        self.bodies: dict[str, list[Any]] = {}
        self.lock = threading.Lock()
        self.n = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = self.path.split("?")[0].split("/")
                app, path = parts[1], "/" + "/".join(parts[2:])
                mode = owner.mode.get(app, "ok")
                if path == "/health":
                    return self.answer(503 if mode == "fail" else 200, {"status": "down" if mode == "fail" else "ok"})
                with owner.lock:
                    owner.calls[app] = owner.calls.get(app, 0) + 1
                    owner.keys.setdefault(app, []).append(self.headers.get("idempotency-key"))
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        body = None
                    owner.bodies.setdefault(app, []).append(body)
                    owner.n += 1
                    n = owner.n
                if isinstance(mode, (int, float)):
                    time.sleep(mode)
                if mode == "fail":
                    return self.answer(503, {"error": {"message": "temporarily down"}})
                if mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                self.answer(201, {"id": f"{app}_{n}", "sid": f"SM{n}", "message-id": f"m-{n}", "status": "succeeded", "received": body})

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

            def answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        self.mode.clear()
        self.calls.clear()
        self.keys.clear()
        self.bodies.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _config(dir: Path, base: str, product: str) -> str:
    apps = json.loads((REPO / "clients" / "testdata" / "apps.json").read_text())
    lines = [
        "[server]",
        f'store = "{dir / "switchyard.db"}"',
        'token_env = "SY_TEST_ADMIN_TOKEN"',
        "",
        "[[server.tokens]]",
        'name = "runner"',
        'role = "run"',
        f'products = ["{product}"]',
        'token = { env = "SY_TEST_RUN_TOKEN" }',
        "",
        f"[products.{product}]",
        'envs = ["dev", "prd"]',
    ]
    for app, actions in apps.items():
        if app == "_":
            continue
        listed = json.dumps([{"name": a, "method": m, "path": p, "idempotency": i} for a, m, p, i in actions])
        lines += ["", f"[products.{product}.apps.{app}]", 'plugin = "bundled:http"']
        for env in ("dev", "prd"):
            lines += [
                f"[products.{product}.apps.{app}.envs.{env}]",
                f'allow = ["{base}"]',
                f'config = {{ base_url = "{base}/{app}", ping_path = "/health", idempotency_header = "Idempotency-Key", actions = \'{listed}\' }}',
            ]
    return "\n".join(lines) + "\n"


class Server:
    def __init__(self, base: str, product: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="switchyard-client-py-"))
        config = self.dir / "switchyard.toml"
        config.write_text(_config(self.dir, base, product))
        self.token = secrets.token_hex(24)
        self.run_token = secrets.token_hex(24)
        env = {**os.environ, "SY_TEST_ADMIN_TOKEN": self.token, "SY_TEST_RUN_TOKEN": self.run_token}
        if not Path(BIN).exists():
            raise RuntimeError(f"no switchyard binary at {BIN}: build it with cargo build -p switchyard or set SWITCHYARD_BIN")
        self.proc = subprocess.Popen([BIN, "serve", str(config), "--listen", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log = ""
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"switchyard serve exited before serving:\n{log}")
            log += line
            m = re.search(r"switchyard serving on (https?://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError(f"switchyard serve did not start within 60 s:\n{log}")
        # keep reading its output so the pipe never fills
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def providers() -> Iterator[Providers]:
    p = Providers()
    yield p
    p.close()


@pytest.fixture(scope="session")
def server(providers: Providers) -> Iterator[Server]:
    s = Server(providers.base, "shop")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def reference_server(providers: Providers) -> Iterator[Server]:
    s = Server(providers.base, "my-product")
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _fresh(providers: Providers) -> None:
    providers.reset()
