"""Dead-letter records: what goes to ``requests-dlq`` for a rejected payload."""

from __future__ import annotations

import base64
import time
from typing import Any

from detectors.events import InvalidEvent

__all__ = ["dlq_record"]


def dlq_record(
    payload: bytes,
    err: InvalidEvent,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    keep_bytes: int = 4096,
) -> dict[str, Any]:
    """A JSON-ready record of one rejected payload.

    The original bytes are kept (base64, so nothing is lost to decoding) up to ``keep_bytes``;
    ``payload_size`` and ``truncated`` say whether that was all of it.

    >>> rec = dlq_record(b"oops", InvalidEvent("not_json", "bad"), topic="requests",
    ...                  partition=0, offset=7)
    >>> rec["reason"], rec["offset"], rec["payload_text"], rec["truncated"]
    ('not_json', 7, 'oops', False)
    """
    kept = payload[:keep_bytes]
    return {
        "reason": err.reason,
        "field": err.field,
        "message": str(err),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "payload_size": len(payload),
        "truncated": len(payload) > keep_bytes,
        "payload_b64": base64.b64encode(kept).decode(),
        "payload_text": kept.decode("utf-8", errors="replace"),
        "rejected_at": time.time(),
    }
