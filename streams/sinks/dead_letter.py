"""The ``alerts-dlq`` writer: signed, retried with backoff, and loud when it cannot write.

Before, a failed DLQ write was only logged and the record was gone. Now a write is retried
with capped exponential backoff until it succeeds: every ``alarm_every`` failed attempts
count one ``distillwatch_dlq_write_failures_total`` and log an ERROR, and the caller (the
delivery agent, a sink runner) waits instead of moving past the record. Only once the worker
is stopping does the writer give a record up after one round, again with the metric and an
ERROR naming the alert id, so shutdown cannot hang on a dead broker.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import Counter

from streams.integrity import RecordSigner
from streams.logsafe import safe
from streams.retry import Failure, RetryError, retry_until_stopped

__all__ = ["DeadLetterWriter", "Send"]

log = logging.getLogger(__name__)

#: Writes one record (key, value, headers) and returns once the broker acknowledged it.
Send = Callable[[bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[None]]


class DeadLetterWriter:
    """Callable ``await writer(record)`` that writes one signed ``alerts-dlq`` record.

    Parameters
    ----------
    send
        Produces and waits for the acknowledgement.
    signer, topic
        Every DLQ record is signed for ``topic`` so downstream readers can tell ours apart.
    failures
        ``distillwatch_dlq_write_failures_total``.
    alarm_every
        Failed attempts per alarm (metric + ERROR).
    initial_s, max_s
        Backoff between attempts: ``initial_s * 2**n`` capped at ``max_s``.
    """

    def __init__(
        self,
        send: Send,
        signer: RecordSigner,
        topic: str,
        failures: Counter,
        *,
        alarm_every: int = 5,
        initial_s: float = 0.1,
        max_s: float = 5.0,
    ) -> None:
        self.send = send
        self.signer = signer
        self.topic = topic
        self.failures = failures
        self.alarm_every = max(1, alarm_every)
        self.initial_s = initial_s
        self.max_s = max_s
        #: Set at shutdown: give up after one round instead of retrying for ever.
        self.stopping = False

    async def __call__(self, rec: dict[str, Any]) -> None:
        aid = rec.get("alert_id")
        key = aid.encode() if isinstance(aid, str) and aid else None
        # default=str: a DLQ record must never fail to serialise (it is the last resort).
        value = orjson.dumps(rec, default=str, option=orjson.OPT_NON_STR_KEYS)
        headers = self.signer.headers(self.topic, key, value)

        def alarm(f: Failure) -> None:
            # Count and log once per ``alarm_every`` failed attempts, not on each one: a
            # dead broker would otherwise flood the log every few seconds.
            if f.attempt % self.alarm_every:
                return
            self.failures.inc()
            if f.giving_up:
                log.error(
                    "alerts-dlq write failed %s times while stopping; record for "
                    "alert %s (reason %s) is LOST: %r",
                    f.attempt, safe(aid), safe(rec.get("reason")), f.error,
                )
            else:
                log.error(
                    "alerts-dlq write failed %s times for alert %s (reason %s): %r; "
                    "still retrying, delivery waits on it",
                    f.attempt, safe(aid), safe(rec.get("reason")), f.error,
                )

        try:
            await retry_until_stopped(
                lambda: self.send(key, value, headers),
                initial_s=self.initial_s,
                max_s=self.max_s,
                # While stopping, a record still gets the round of attempts one alarm
                # stands for, then is given up (the alarm above logged it as LOST).
                should_stop=lambda: self.stopping,
                check_stop_every=self.alarm_every,
                on_failure=alarm,
            )
        except RetryError:
            return
