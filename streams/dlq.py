"""Dead-letter records: what goes to ``requests-dlq`` for a rejected payload, and how it gets
there without ever being lost."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from detectors.events import InvalidEvent
from streams.logsafe import safe
from streams.retry import Failure, RetryError, retry_until_stopped

__all__ = ["MESSAGE_CHARS", "dlq_record", "publish"]

log = logging.getLogger(__name__)

#: Longest ``message`` of a DLQ record: the payload itself is kept separately.
MESSAGE_CHARS = 200


def dlq_record(
    payload: bytes | None,
    err: InvalidEvent,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    keep_bytes: int = 4096,
) -> dict[str, Any]:
    """A JSON-ready record of one rejected payload.

    The original bytes are kept (base64, so nothing is lost to decoding) up to ``keep_bytes``;
    ``payload_size`` and ``truncated`` say whether that was all of it. ``message`` is escaped
    and at most :data:`MESSAGE_CHARS` long: it is echoed in log lines, so it must not carry a
    60 KB value or a newline that forges a line. A record without a value (``None``) has
    ``payload_size`` 0 and ``payload_b64`` null.

    >>> rec = dlq_record(b"oops", InvalidEvent("not_json", "bad"), topic="requests",
    ...                  partition=0, offset=7)
    >>> rec["reason"], rec["offset"], rec["payload_text"], rec["truncated"]
    ('not_json', 7, 'oops', False)
    >>> dlq_record(None, InvalidEvent("null_value", "none"), topic="requests", partition=0,
    ...            offset=8)["payload_b64"] is None
    True
    """
    data = b"" if payload is None else bytes(payload)
    kept = data[:keep_bytes]
    return {
        "reason": err.reason,
        "field": err.field,
        "message": safe(str(err), MESSAGE_CHARS),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "payload_size": len(data),
        "truncated": len(data) > keep_bytes,
        "payload_b64": None if payload is None else base64.b64encode(kept).decode(),
        "payload_text": None if payload is None else kept.decode("utf-8", errors="replace"),
        "rejected_at": time.time(),
    }


class _Unwritten(Exception):
    """A round of DLQ writes in which ``count`` records failed; ``first`` is one error."""

    def __init__(self, count: int, first: BaseException) -> None:
        super().__init__(f"{count} dead-letter record(s) unwritten")
        self.count = count
        self.first = first


async def publish(
    send: Callable[[bytes], Any],
    records: Sequence[dict[str, Any]],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_failure: Callable[[int], None] | None = None,
    first_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
) -> None:
    """Write every record to the dead-letter topic, retrying failed writes until they land.

    ``send(value)`` is a producer's send for the DLQ topic (a coroutine whose result is the
    delivery future). The caller commits offsets only after this returns, so a record whose
    DLQ write failed is never committed past: it is retried here with capped exponential
    backoff (each failed round logs and calls ``on_failure(n_failed)``, e.g. a metric), and if
    the worker is told to stop first, this raises so nothing is committed.
    """
    pending = list(records)

    async def write_round() -> None:
        # One round sends every pending record at once; only the failed ones go again.
        nonlocal pending
        futs: list[Any] = []
        for rec in pending:
            try:
                futs.append(await send(orjson.dumps(rec)))
            except Exception as err:  # e.g. no metadata for the topic yet
                futs.append(err)
        results = await asyncio.gather(
            *(f for f in futs if not isinstance(f, BaseException)), return_exceptions=True
        )
        it = iter(results)
        outcome = [f if isinstance(f, BaseException) else next(it) for f in futs]
        failed = [rec for rec, r in zip(pending, outcome, strict=True)
                  if isinstance(r, BaseException)]
        if failed:
            pending = failed
            raise _Unwritten(len(failed), next(r for r in outcome if isinstance(r, BaseException)))

    def failed_round(f: Failure) -> None:
        err = f.error
        count, first = (err.count, err.first) if isinstance(err, _Unwritten) else (1, err)
        what = safe(f"{type(first).__name__}: {first}")
        if f.giving_up:
            log.error("dead-letter write failed for %d record(s), not retrying: the worker "
                      "is stopping: %s", count, what)
        else:
            log.error("dead-letter write failed for %d record(s), retrying in %.1fs: %s",
                      count, f.retry_in_s, what)
        if on_failure is not None:
            on_failure(count)

    if not pending:
        return
    try:
        await retry_until_stopped(write_round, initial_s=first_delay_s, max_s=max_delay_s,
                                  should_stop=should_stop, on_failure=failed_round)
    except RetryError as gave_up:
        last = gave_up.last_attempt.exception()
        raise RuntimeError(
            f"stopping with {len(pending)} dead-letter record(s) unwritten"
        ) from (last.first if isinstance(last, _Unwritten) else last)
