"""Folding ``alerts`` and ``actions`` records into the store, idempotently.

No Kafka here: :mod:`streams.store.ingest` verifies each record's signature and hands it
over; tests call these methods directly. Each record is one transaction, and a duplicate
(the same alert change, or the same audit record bytes) hits a unique key and changes
nothing, so redelivery after a crash, two store processes, or the console inserting its own
audit records before the consumer reads them back are all harmless.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import DataError, IntegrityError

from streams.logsafe import safe
from streams.store.schema import actions, alert_changes, alerts

__all__ = ["StoreWriter", "record_digest"]

log = logging.getLogger(__name__)

STATES = ("opened", "updated", "resolved")

#: Console decisions that change an alert's row (see streams.console.actions).
CONSOLE = "console"


def record_digest(value: bytes) -> str:
    """The dedupe key of an audit record: SHA-256 of its exact bytes."""
    return hashlib.sha256(value).hexdigest()


def _num(v: Any) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _str(v: Any, limit: int = 256) -> str | None:
    # PostgreSQL text cannot hold NUL; ids come from traffic, so an attacker can put one in.
    return None if v is None else str(v)[:limit].replace("\x00", "\ufffd")


def _int(v: Any) -> int | None:
    """A count that fits the INTEGER columns of every database."""
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31:
        return v
    return None


def clean(v: Any) -> Any:
    r"""``v`` made storable anywhere: no NUL in strings, no NaN or infinity (JSON has
    neither; detectors saturate to infinity), keys as strings.

    >>> clean({"k" + chr(0): [float("inf"), 1.5, "x"]}) == {"k\ufffd": [None, 1.5, "x"]}
    True
    """
    if isinstance(v, str):
        return v.replace("\x00", "\ufffd")
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {clean(str(k)): clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [clean(x) for x in v]
    return v


def _harvest(change: Mapping[str, Any]) -> tuple[float | None, float | None]:
    ev = change.get("evidence")
    h = ev.get("harvest") if isinstance(ev, Mapping) else None
    if not isinstance(h, Mapping):
        return None, None
    return _num(h.get("output_tokens")), _num(h.get("requests"))


class StoreWriter:
    """Writes verified records into the store behind ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.unstorable = 0

    def add_alert(self, change: Mapping[str, Any]) -> bool:
        """Store one alert change and fold it into its alert's row; False if it was already
        stored (redelivery) or is not an alert change."""
        aid, state = change.get("alert_id"), change.get("state")
        ts = _num(change.get("ts"))
        if not isinstance(aid, str) or state not in STATES or ts is None:
            log.warning("store: not an alert change (alert_id/state/ts), skipped")
            return False
        aid = _str(aid, 64) or ""
        tokens, requests = _harvest(change)
        members = change.get("members") if isinstance(change.get("members"), list) else None
        members = [_str(m) for m in members] if members is not None else None
        member_count = change.get("member_count")
        row = {
            "severity": _str(change.get("severity"), 16) or "info",
            "score": _num(change.get("score")),
            "threshold": _num(change.get("threshold")),
            "member_count": _int(member_count),
            "harvest_tokens": tokens,
            "harvest_requests": requests,
        }
        evidence = clean(change["evidence"]) if isinstance(change.get("evidence"), dict) else None
        with self.engine.connect() as conn:
            try:
                with conn.begin():
                    conn.execute(insert(alert_changes).values(
                        alert_id=aid, state=state, ts=ts, evidence=evidence, **row))
                    self._fold(conn, change, aid, state, ts, row, evidence, members)
            except IntegrityError:
                return False  # this change is stored already
            except DataError as err:
                return self._unstorable("alert change", aid, err)
        return True

    def _fold(self, conn: Any, change: Mapping[str, Any], aid: str, state: str, ts: float,
              row: dict[str, Any], evidence: Any, members: list[Any] | None) -> None:
        current = conn.execute(
            select(alerts.c.updated_ts, alerts.c.state).where(alerts.c.alert_id == aid)
        ).first()
        opened = _num(change.get("opened_ts")) or ts
        latest = {**row, "evidence": evidence, "updated_ts": ts,
                  "state": "resolved" if state == "resolved" else "open",
                  "resolved_ts": ts if state == "resolved" else None}
        if members is not None:
            latest["members"] = members
        if current is None:
            conn.execute(insert(alerts).values(
                alert_id=aid,
                entity_type=_str(change.get("entity_type"), 16) or "?",
                entity_id=_str(change.get("entity_id")) or "?",
                detector=_str(change.get("detector"), 64) or "?",
                org_id=_str(change.get("org_id")),
                opened_ts=opened,
                false_positive=False,
                **latest,
            ))
            return
        # Out of order (a redelivered old change after a newer one): keep the newest state;
        # at equal times a resolution wins over an update.
        if ts > current.updated_ts or (ts == current.updated_ts and state == "resolved"):
            conn.execute(update(alerts).where(alerts.c.alert_id == aid).values(**latest))

    def add_action(self, value: bytes, rec: Mapping[str, Any] | None = None) -> bool:
        """Store one audit record (``value`` is its exact bytes); False if already stored.

        Console records (``decision == "console"``) also update the alert's row:
        acknowledged, assigned, marked false positive."""
        if rec is None:
            try:
                rec = orjson.loads(value)
            except orjson.JSONDecodeError:
                return False
        if not isinstance(rec, Mapping) or not isinstance(rec.get("decision"), str):
            log.warning("store: not an audit record (decision), skipped")
            return False
        aid = rec.get("alert_id")
        aid = _str(aid, 64) if isinstance(aid, str) else None
        count = _int(rec.get("count"))
        with self.engine.connect() as conn:
            try:
                with conn.begin():
                    conn.execute(insert(actions).values(
                        digest=record_digest(value),
                        ts=_num(rec.get("ts")) or 0.0,
                        alert_id=aid,
                        decision=_str(rec["decision"], 32),
                        action=_str(rec.get("action"), 32),
                        account_id=_str(rec.get("account_id")),
                        count=count,
                        by=_str(rec.get("by")),
                        note=_str(rec.get("note"), 2000),
                        reason=_str(rec.get("reason"), 2000),
                        record=clean(dict(rec)),
                    ))
                    if rec["decision"] == CONSOLE and aid is not None:
                        self._console(conn, aid, rec)
            except IntegrityError:
                return False
            except DataError as err:
                return self._unstorable("audit record", aid, err)
        return True

    def _unstorable(self, what: str, aid: str | None, err: DataError) -> bool:
        # The database refused a value (a type or size limit this module does not know):
        # skip the record rather than stop the store on it forever.
        self.unstorable += 1
        log.error("store: %s for alert %s refused by the database (%s), skipped", what,
                  safe(aid), type(err.orig).__name__ if err.orig is not None else err)
        return False

    def _console(self, conn: Any, aid: str, rec: Mapping[str, Any]) -> None:
        by, action = _str(rec.get("by")), rec.get("action")
        values: dict[str, Any] = {}
        if action == "acknowledge":
            values = {"acked_by": by, "acked_ts": _num(rec.get("ts"))}
        elif action == "assign":
            values = {"assignee": _str(rec.get("assignee"))}
        elif action == "false_positive":
            values = {"false_positive": True, "fp_by": by, "fp_note": _str(rec.get("note"), 2000)}
        if values:
            conn.execute(update(alerts).where(alerts.c.alert_id == aid).values(**values))


def encode(rec: Mapping[str, Any]) -> bytes:
    """The bytes an audit record is written (and deduplicated) as."""
    return orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)
