"""The boundary of the delivery stage: one raw ``alerts`` record in, and either a validated
alert change handed to the :class:`~streams.sinks.dispatch.Dispatcher` or an ``alerts-dlq``
record with a reason. :meth:`AlertIntake.handle` never raises (except on cancellation), so
the delivery agent cannot crash on a record and lose it on restart (issue 11, item 6).

Checks, in order: the record signature (streams/integrity.py; reason ``bad_signature``), JSON
(``not_json``), an object (``not_object``), the fields the sinks read (``invalid_alert``,
via :class:`AlertChange`), then :meth:`Dispatcher.submit` itself (``dispatch_error``).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detectors.findings import SEVERITIES
from streams.integrity import RecordSigner
from streams.logsafe import safe
from streams.metrics import RecordMetrics
from streams.sinks.dispatch import Dispatcher, DlqWriter
from streams.sinks.envelope import Envelope

__all__ = ["AlertChange", "AlertIntake", "invalid_reason", "rejected_record"]

log = logging.getLogger(__name__)

_PAYLOAD_TEXT = 4096  # bytes of the original value kept in a DLQ record


class AlertChange(BaseModel):
    """The fields of an alert change the sinks and the policy read, checked once here so a
    sink never meets a value it cannot handle. Other fields pass through unchecked."""

    model_config = ConfigDict(extra="allow", frozen=True)

    alert_id: str = Field(min_length=1, max_length=256)
    state: Literal["opened", "updated", "resolved"]
    entity_type: Literal["account", "cluster"]
    entity_id: str = Field(min_length=1)
    detector: str = Field(min_length=1, max_length=128)
    severity: Literal[SEVERITIES]  # type: ignore[valid-type]
    ts: float | None = None
    window_start: float | None = None
    window_end: float | None = None
    score: float | None = None
    threshold: float | None = None
    member_count: int | None = Field(None, ge=0)
    members: list[str] | None = None
    evidence: dict[str, Any] | None = None

    @field_validator("ts", "window_start", "window_end", "score", "threshold")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


def invalid_reason(change: dict[str, Any]) -> str | None:
    """None when ``change`` is a valid alert change, else the first problem (field: error)."""
    try:
        AlertChange.model_validate(change)
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(p) for p in e["loc"]) or "alert"
        return f"{loc}: {e['msg']}"
    return None


def rejected_record(
    reason: str, error: str, where: dict[str, Any], raw: bytes
) -> dict[str, Any]:
    """The ``alerts-dlq`` record of an input record we did not act on: the reason, where it
    was (``source_topic``, ``partition``, ``offset``) and its first bytes as text."""
    return {
        "sink": None,
        "reason": reason,
        "error": error,
        **where,
        "payload_size": len(raw),
        "payload_text": raw[:_PAYLOAD_TEXT].decode("utf-8", "replace"),
    }


class AlertIntake:
    """Verify, decode, validate and submit one ``alerts`` record; dead-letter what fails.

    ``topic`` is the configured name of the alerts topic (part of the signed data)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        dlq: DlqWriter,
        signer: RecordSigner,
        topic: str,
        metrics: RecordMetrics,
    ) -> None:
        self.dispatcher = dispatcher
        self.dlq = dlq
        self.signer = signer
        self.topic = topic
        self.metrics = metrics

    async def handle(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
        *,
        partition: int | None = None,
        offset: int | None = None,
    ) -> Envelope | None:
        """Deliver or dead-letter one record; the envelope when it was submitted."""
        where = {"source_topic": self.topic, "partition": partition, "offset": offset}
        raw = value if isinstance(value, bytes | bytearray) else b""
        if value is None or not self.signer.verify(self.topic, key, bytes(raw), headers):
            # Never parsed, never echoed as an "alert": replaying it would be the attack.
            why = "null value" if value is None else self.signer.reason(headers).replace("_", " ")
            return await self._reject("bad_signature", why, where, raw)
        try:
            change = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return await self._reject("not_json", "not JSON", where, raw)
        if not isinstance(change, dict):
            return await self._reject("not_object", "not an object", where, raw)
        problem = invalid_reason(change)
        if problem is not None:
            return await self._reject("invalid_alert", problem, where, raw, change)
        try:
            return await self.dispatcher.submit(change)
        except Exception as err:
            log.exception("dispatcher failed on alert %s", safe(change.get("alert_id")))
            return await self._reject("dispatch_error", type(err).__name__, where, raw, change)

    async def _reject(
        self,
        reason: str,
        error: str,
        where: dict[str, Any],
        raw: bytes,
        change: dict[str, Any] | None = None,
    ) -> None:
        self.metrics.rejected.labels("alerts", reason).inc()
        aid = change.get("alert_id") if change is not None else None
        log.warning(
            "alerts record at partition %s offset %s sent to alerts-dlq: %s (%s)",
            where["partition"], where["offset"], reason, safe(error, 200),
        )
        rec = rejected_record(reason, error, where, raw)
        if isinstance(aid, str):
            rec["alert_id"] = aid
        if change is not None:
            rec["alert"] = change
        await self.dlq(rec)
        return None
