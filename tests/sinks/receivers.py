"""Real HTTP receivers on 127.0.0.1 for the sink tests: Slack-compatible (webhook and Web
API, validating Block Kit), a signed-webhook receiver and an account API."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, str], bytes]

_BLOCK_TYPES = {"header", "section", "context", "divider", "actions"}
# In mrkdwn, "<" may only open a link; "<!channel>" or "<@U123>" would ping people.
_BAD_ANGLE = re.compile(r"<(?!https?://)")


class Receiver:
    """A ThreadingHTTPServer in a thread; subclasses implement :meth:`handle`."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._server: ThreadingHTTPServer | None = None

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        raise NotImplementedError

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.requests.append((self.path, headers, body))
                    status, rh, rb = outer.handle(self.path, headers, body)
                self.send_response(status)
                for k, v in rh.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(rb)))
                self.end_headers()
                self.wfile.write(rb)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def validate_block_kit(payload: dict[str, Any]) -> str | None:
    """Why ``payload`` is not a valid Block Kit message (None when it is)."""
    if not isinstance(payload.get("text"), str) or not payload["text"]:
        return "missing fallback text"
    blocks = payload.get("blocks")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return "blocks must be a list of 1..50"
    texts: list[dict[str, Any]] = []
    for b in blocks:
        t = b.get("type")
        if t not in _BLOCK_TYPES:
            return f"unknown block type {t!r}"
        if t == "header":
            if b["text"]["type"] != "plain_text" or len(b["text"]["text"]) > 150:
                return "header must be plain_text <= 150"
        elif t == "section":
            if "text" not in b and "fields" not in b:
                return "section needs text or fields"
            if "text" in b:
                if len(b["text"]["text"]) > 3000:
                    return "section text > 3000"
                texts.append(b["text"])
            fields = b.get("fields", [])
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                return "section fields: at most 10 of <= 2000"
            texts.extend(fields)
        elif t == "context":
            els = b.get("elements", [])
            if not 1 <= len(els) <= 10:
                return "context needs 1..10 elements"
            texts.extend(els)
    for t in texts:
        if t.get("type") not in ("mrkdwn", "plain_text"):
            return f"bad text type {t.get('type')!r}"
        if t["type"] == "mrkdwn" and _BAD_ANGLE.search(t["text"]):
            return f"unescaped '<' in mrkdwn: {t['text'][:80]!r}"
    return None


class SlackReceiver(Receiver):
    """Slack-compatible: ``/services/...`` incoming webhook and ``/api/chat.*`` Web API.

    Every ``rate_limit_every``-th request is answered 429 with ``Retry-After``."""

    def __init__(self, *, token: str = "xoxb-test", rate_limit_every: int = 0,
                 retry_after: str = "1") -> None:
        super().__init__()
        self.token = token
        self.rate_limit_every = rate_limit_every
        self.retry_after = retry_after
        self.n = 0
        self.limited = 0
        self.invalid: list[str] = []
        self.messages: dict[str, dict[str, Any]] = {}  # ts -> latest payload
        self.posts: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.times: list[float] = []

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        self.n += 1
        if self.rate_limit_every and self.n % self.rate_limit_every == 0:
            self.limited += 1
            return 429, {"Retry-After": self.retry_after}, b"rate_limited"
        payload = json.loads(body)
        why = validate_block_kit(payload)
        if why is not None:
            self.invalid.append(why)
            return 400, {}, b"invalid_blocks"
        self.times.append(time.monotonic())
        if path.startswith("/services/"):
            ts = f"{len(self.posts) + 1}.0"
            self.posts.append(payload)
            self.messages[ts] = payload
            return 200, {}, b"ok"
        if not path.startswith("/api/"):
            return 404, {}, b"no_service"
        if headers.get("authorization") != f"Bearer {self.token}":
            return 200, {}, b'{"ok": false, "error": "invalid_auth"}'
        if path == "/api/chat.postMessage":
            ts = f"{len(self.posts) + 1}.0"
            self.posts.append(payload)
            self.messages[ts] = payload
            return 200, {}, json.dumps({"ok": True, "channel": payload["channel"],
                                        "ts": ts}).encode()
        if path == "/api/chat.update":
            if payload.get("ts") not in self.messages:
                return 200, {}, b'{"ok": false, "error": "message_not_found"}'
            self.updates.append(payload)
            self.messages[payload["ts"]] = payload
            return 200, {}, json.dumps({"ok": True, "ts": payload["ts"]}).encode()
        return 404, {}, b"no_service"


class WebhookReceiver(Receiver):
    """Verifies ``v1`` HMAC-SHA256 over ``timestamp + "." + body`` (computed here, not with
    the code under test), rejects stale timestamps and replayed deliveries."""

    def __init__(self, secret: bytes, *, tolerance_s: float = 300.0,
                 fail_first: int = 0, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.fail_first = fail_first
        self.clock = clock
        self.accepted: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self._seen: set[str] = set()

    def check(self, headers: dict[str, str], body: bytes) -> str | None:
        ts = headers.get("x-distillwatch-timestamp", "")
        sig = headers.get("x-distillwatch-signature", "")
        want = "v1=" + hmac.new(self.secret, ts.encode() + b"." + body,
                                hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, sig):
            return "bad signature"
        if abs(self.clock() - int(ts)) > self.tolerance_s:
            return "stale timestamp"
        # De-duplicate on the signed body's delivery_id, never on the unsigned header.
        delivery = str(json.loads(body).get("delivery_id"))
        if delivery in self._seen:
            return "replayed delivery"
        self._seen.add(delivery)
        return None

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if self.fail_first > 0:
            self.fail_first -= 1
            return 503, {}, b"try later"
        why = self.check(headers, body)
        if why is not None:
            self.rejected.append(why)
            return 401 if why != "replayed delivery" else 409, {}, why.encode()
        self.accepted.append(json.loads(body))
        return 200, {}, b"ok"


class AccountApiReceiver(Receiver):
    """Records actions; checks the auth header; answers 409 to a repeated idempotency key."""

    def __init__(self, auth: str = "Bearer api-secret") -> None:
        super().__init__()
        self.auth = auth
        self.actions: list[dict[str, Any]] = []
        self.keys: list[str] = []

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if headers.get("authorization") != self.auth:
            return 401, {}, b"unauthorized"
        key = headers.get("idempotency-key", "")
        if key in self.keys:
            return 409, {}, b"already done"
        self.keys.append(key)
        self.actions.append(json.loads(body))
        return 200, {}, b"{}"
