#!/usr/bin/env python3
"""A provider for trying cluster mode by hand: `POST /v1/messages` answers
`{"id": "msg_N"}`, `GET /health` answers 200, and `POST /control` with
`{"fail": true}` makes both answer 503 until `{"fail": false}`.
`GET /control` tells how many messages it took. Standard library only.

    python3 provider.py PORT
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"fail": False, "messages": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        if self.path == "/control":
            with lock:
                return self._answer(200, dict(state))
        if self.path == "/health":
            return self._answer(503 if state["fail"] else 200, {"ok": not state["fail"]})
        return self._answer(404, {"error": "not found"})

    def do_POST(self):
        body = self._body()
        if self.path == "/control":
            with lock:
                state["fail"] = bool(json.loads(body or b"{}").get("fail"))
                return self._answer(200, dict(state))
        if self.path == "/v1/messages":
            if state["fail"]:
                return self._answer(503, {"error": "unavailable"})
            with lock:
                state["messages"] += 1
                n = state["messages"]
            return self._answer(200, {"id": f"msg_{n}", "status": "queued"})
        return self._answer(404, {"error": "not found"})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
