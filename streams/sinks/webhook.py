"""Generic webhook sink: POST the alert JSON, signed with HMAC-SHA256 over timestamp and body.

Headers of every request:

- ``X-Distillwatch-Timestamp``: Unix seconds when this attempt was signed;
- ``X-Distillwatch-Signature``: ``v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``;
- ``X-Distillwatch-Delivery``: a copy of the body's ``delivery_id``, for logs and routing.

A receiver recomputes the signature with :func:`verify`, rejects timestamps older than its
tolerance (a captured request cannot be replayed later) and remembers delivery ids for that
long (so a replay within the tolerance, or our own retry after a lost response, is dropped).
The id to remember is ``delivery_id`` *inside the verified body* (:func:`verified_body`
returns it): the delivery header is not covered by the signature, so anyone replaying a
captured request could change it and get past a check keyed on it.

:func:`verify` is meant to sit in front of anything: whatever the request holds (no header,
an empty or non-ASCII signature, ``v2=``, a timestamp in Arabic-Indic digits, bytes or ``None``) it
answers False and never raises.

Examples
--------
>>> body = b'{"delivery_id": "d1", "alert": {}}'
>>> sig = sign(b"k", 1700000000, body)
>>> sig[:3], verify(b"k", "1700000000", body, sig, now=1700000010)
('v1=', True)
>>> verify(b"k", "1700000000", body + b" ", sig, now=1700000010)  # body changed
False
>>> verify(b"k", "1700000000", body, sig, now=1700009999)  # too old: a replay
False
>>> verify(b"k", None, body, None), verify(b"k", "1700000000", body, "v1=\u00e9" * 22)
(False, False)
>>> verified_body(b"k", "1700000000", body, sig, now=1700000010)["delivery_id"]
'd1'
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

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
    "verified_body",
    "verify",
]

SIGNATURE_HEADER = "X-Distillwatch-Signature"
TIMESTAMP_HEADER = "X-Distillwatch-Timestamp"
DELIVERY_HEADER = "X-Distillwatch-Delivery"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 of ``b"<timestamp>." + body``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def _ascii(value: object) -> str | None:
    """``value`` as an ASCII str, or None: header values may arrive as str, bytes or None."""
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or not value.isascii():
        return None
    return value


# "v1=" + 64 hex digits; anything else is rejected before any HMAC is computed.
_SIGNATURE_LEN = 3 + 2 * hashlib.sha256().digest_size
# Timestamps are Unix seconds: more digits than this is garbage (and int() of a huge digit
# string costs time).
_MAX_TS_DIGITS = 12


def verify(
    secret: bytes | str,
    timestamp: str | bytes | None,
    body: bytes,
    signature: str | bytes | None,
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """True when ``signature`` matches and ``timestamp`` is within ``tolerance_s`` of now.

    False (never an exception) for a missing, empty, non-ASCII, wrong-length or wrong-scheme
    signature, a timestamp that is not plain ASCII digits, a stale one, or a body that is not
    bytes: a receiver can call it on any request as it arrives."""
    try:
        ts_text = _ascii(timestamp)
        sig = _ascii(signature)
        if ts_text is None or sig is None or not isinstance(body, bytes | bytearray):
            return False
        # str.isdigit() alone accepts other scripts' digits and int() accepts "+1", " 1".
        if not (0 < len(ts_text) <= _MAX_TS_DIGITS and ts_text.isdigit()):
            return False
        if len(sig) != _SIGNATURE_LEN or not sig.startswith("v1="):
            return False
        ts = int(ts_text)
        now = time.time() if now is None else float(now)
        if not abs(now - ts) <= tolerance_s:  # NaN tolerance or clock compares False
            return False
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        return hmac.compare_digest(sign(key, ts, bytes(body)).encode(), sig.encode())
    except Exception:  # a receiver's gate must answer, not crash: anything odd is a no
        return False


def verified_body(
    secret: bytes | str,
    timestamp: str | bytes | None,
    body: bytes,
    signature: str | bytes | None,
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> dict[str, Any] | None:
    """The parsed body when :func:`verify` accepts the request, else None.

    Its ``delivery_id`` is the key to de-duplicate on: it is inside the signed bytes."""
    if not verify(secret, timestamp, body, signature, now=now, tolerance_s=tolerance_s):
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("delivery_id"), str):
        return None
    return doc


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
            # A convenience copy: receivers de-duplicate on the signed body's delivery_id.
            DELIVERY_HEADER: env.delivery_id,
        }
        await post(self._http.session, self._url, data=body, headers=headers, what=repr(self))
        return 1

    async def close(self) -> None:
        await self._http.close()
