"""Generic webhook sink: POST the alert JSON, signed with HMAC-SHA256 over timestamp and body.

Headers of every request:

- ``X-Distillwatch-Timestamp``: Unix seconds when this attempt was signed;
- ``X-Distillwatch-Signature``: ``v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``;
- ``X-Distillwatch-Delivery``: the delivery id, the same on every retry of one alert change.

A receiver recomputes the signature with :func:`verify`, rejects timestamps older than its
tolerance (a captured request cannot be replayed later) and remembers delivery ids for that
long (so a replay within the tolerance, or our own retry after a lost response, is dropped).

Examples
--------
>>> body = b'{"alert": {}}'
>>> sig = sign(b"k", 1700000000, body)
>>> sig[:3], verify(b"k", "1700000000", body, sig, now=1700000010)
('v1=', True)
>>> verify(b"k", "1700000000", body + b" ", sig, now=1700000010)  # body changed
False
>>> verify(b"k", "1700000000", body, sig, now=1700009999)  # too old: a replay
False
"""

from __future__ import annotations

import hashlib
import hmac
import time

import orjson

from streams.sinks.base import Sink
from streams.sinks.envelope import Envelope
from streams.sinks.transport import HttpSession, post

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookSink",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "X-Distillwatch-Signature"
TIMESTAMP_HEADER = "X-Distillwatch-Timestamp"
DELIVERY_HEADER = "X-Distillwatch-Delivery"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 of ``b"<timestamp>." + body``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """True when ``signature`` matches and ``timestamp`` is within ``tolerance_s`` of now."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


class WebhookSink(Sink):
    """POST every envelope's :meth:`~streams.sinks.envelope.Envelope.body` to one URL.

    One sink (and so one queue) per URL: a receiver that is down delays only its own
    deliveries, and a retry never re-sends to a receiver that already answered.

    Parameters
    ----------
    url
        Receiver URL; never logged (errors name the sink as ``webhook #<index>``).
    secret
        HMAC key.
    index
        Position of the URL in the configuration, used in log and DLQ texts.
    timeout_s
        Timeout of one request.
    """

    name = "webhook"

    def __init__(self, url: str, secret: str, *, index: int = 0, timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook #{index}: expected an http:// or https:// URL")
        self._url = url
        self._secret = secret.encode()
        self.index = index
        self._http = HttpSession(timeout_s)

    def __repr__(self) -> str:  # never show the URL
        return f"WebhookSink(index={self.index})"

    async def setup(self) -> None:
        await self._http.open()

    async def send(self, env: Envelope) -> int:
        body = orjson.dumps(env.body())
        ts = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "distillwatch",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._secret, ts, body),
            DELIVERY_HEADER: env.delivery_id,
        }
        await post(self._http.session, self._url, data=body, headers=headers, what=repr(self))
        return 1

    async def close(self) -> None:
        await self._http.close()
