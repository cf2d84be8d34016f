"""Alert lifecycle: findings in, alert state changes (opened / updated / resolved) out.

One open alert per (entity, detector). Its id is deterministic — a hash of entity, detector
and the window that opened it — so at-least-once redelivery never pages twice, and a finding
for a window that was already processed is ignored.

Examples
--------
>>> from detectors.findings import Finding
>>> book = AlertBook(window_s=60, quiet_windows=2)
>>> f = Finding("account", "a1", "account_baseline", 0, 60, 9.0, 6.0, "warning")
>>> [c["state"] for c in book.observe(f)]
['opened']
>>> book.observe(f)  # redelivered: same window, nothing new
[]
>>> [c["state"] for c in book.tick(60 + 2 * 60)]
['resolved']
"""

from __future__ import annotations

import hashlib
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from detectors.findings import SEVERITIES, Finding, severity_rank

__all__ = ["AlertBook", "alert_id"]

AlertKey = tuple[str, str, str]


def alert_id(entity_type: str, entity_id: str, detector: str, window_start: float) -> str:
    """Deterministic id of the alert that ``window_start`` opened."""
    raw = f"{entity_type}|{entity_id}|{detector}|{int(window_start)}".encode()
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:20]


@dataclass(slots=True)
class _Open:
    alert_id: str
    opened_ts: float
    last_window_end: float
    severity: str
    score: float
    member_count: int | None
    last: Finding


class AlertBook:
    """Keep open alerts, update them on new findings and resolve them after quiet windows.

    Parameters
    ----------
    window_s
        Window length, used to count quiet windows in event time.
    quiet_windows
        Windows without a finding after which an open alert is resolved.
    max_members
        Cap on the member list carried by cluster alerts.
    update_ratio
        An open alert emits ``updated`` when its score or member count changes by at least
        this fraction, or its severity changes; smaller changes are folded in silently so a
        long campaign does not flood the ``alerts`` topic.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        quiet_windows: int = 3,
        max_members: int = 10_000,
        update_ratio: float = 0.2,
    ) -> None:
        self.window_s = window_s
        self.quiet_windows = quiet_windows
        self.max_members = max_members
        self.update_ratio = update_ratio
        self._open: dict[AlertKey, _Open] = {}
        # Newest window end processed per key, kept after resolution (until pruned) so that a
        # redelivered old finding cannot open a second alert.
        self._done_until: dict[AlertKey, float] = {}
        # Keys whose state changed since the last pop_dirty(): what a durable store must write.
        self._dirty: set[AlertKey] = set()
        # Open alerts per severity, kept as alerts open, escalate and resolve: the worker
        # reads it after every finding, and counting the open alerts each time made folding
        # a campaign's thousands of account findings quadratic.
        self._by_severity: dict[str, int] = dict.fromkeys(SEVERITIES, 0)

    @property
    def open_count(self) -> int:
        return len(self._open)

    def open_by_severity(self) -> dict[str, int]:
        """Open alerts per severity (a copy; O(1))."""
        return dict(self._by_severity)

    def _opened(self, key: AlertKey, o: _Open) -> None:
        self._by_severity[o.severity] += 1  # an unknown severity raises before it is kept
        self._open[key] = o

    def _closed(self, key: AlertKey) -> _Open | None:
        o = self._open.pop(key, None)
        if o is not None:
            self._by_severity[o.severity] -= 1
        return o

    def _change(self, state: str, o: _Open, ts: float) -> dict[str, Any]:
        f = o.last
        out: dict[str, Any] = {
            "alert_id": o.alert_id,
            "state": state,
            "entity_type": f.entity_type,
            "entity_id": f.entity_id,
            "detector": f.detector,
            "severity": o.severity,
            "ts": ts,
            "opened_ts": o.opened_ts,
            "window_start": f.window_start,
            "window_end": f.window_end,
            "score": round(o.score, 4),
            "threshold": f.threshold,
            "evidence": f.evidence,
        }
        # Orgs ride along for the suspension policy's org allowlist (it cannot look them up).
        if f.org_id is not None:
            out["org_id"] = f.org_id
        if f.entity_type == "cluster":
            out["member_count"] = f.member_count or 0
            members = out["members"] = (f.members or [])[: self.max_members]
            orgs = f.member_orgs or {}
            # Only the listed members' orgs: as bounded as the list itself.
            out["member_orgs"] = {m: orgs[m] for m in members if m in orgs}
        return out

    def observe(self, f: Finding) -> list[dict[str, Any]]:
        """Fold one finding in; return the state changes it causes (none, one, or a
        ``resolved`` for the previous episode followed by a new ``opened``)."""
        key = (f.entity_type, f.entity_id, f.detector)
        if f.window_end <= self._done_until.get(key, float("-inf")):
            return []
        self._done_until[key] = f.window_end
        self._dirty.add(key)
        out: list[dict[str, Any]] = []
        o = self._open.get(key)
        quiet_until = o.last_window_end + self.quiet_windows * self.window_s if o else 0.0
        if o is not None and f.window_start >= quiet_until:
            # Enough quiet windows passed before this one: that episode ended, whether or not a
            # tick saw the gap. Deciding it from the windows alone keeps alert ids independent
            # of how the caller batches windows and ticks (worker and replay agree).
            self._closed(key)
            out.append(self._change("resolved", o, quiet_until))
            o = None
        if o is None:
            o = _Open(
                alert_id(f.entity_type, f.entity_id, f.detector, f.window_start),
                f.window_end,
                f.window_end,
                f.severity,
                f.score,
                f.member_count,
                f,
            )
            self._opened(key, o)
            out.append(self._change("opened", o, f.window_end))
            return out
        o.last_window_end = f.window_end
        o.last = f
        changed = severity_rank(f.severity) > severity_rank(o.severity)
        if changed:
            self._by_severity[o.severity] -= 1
            self._by_severity[f.severity] += 1
            o.severity = f.severity
        if abs(f.score - o.score) >= self.update_ratio * max(abs(o.score), 1e-9):
            o.score = f.score
            changed = True
        if f.member_count is not None and abs(f.member_count - (o.member_count or 0)) >= (
            self.update_ratio * max(o.member_count or 0, 1)
        ):
            o.member_count = f.member_count
            changed = True
        if changed:
            out.append(self._change("updated", o, f.window_end))
        return out

    def refresh(self, ts: float) -> list[dict[str, Any]]:
        """An ``updated`` change for every open alert whose newest finding was folded in
        silently (a change smaller than ``update_ratio``): the end of a replay uses it so
        the last member lists are on record."""
        out = []
        for o in self._open.values():
            f = o.last
            if f.score != o.score or (f.member_count or 0) != (o.member_count or 0):
                o.score = f.score
                o.member_count = f.member_count
                out.append(self._change("updated", o, ts))
        return out

    def tick(
        self, watermark: float, detectors: Container[str] | None = None, *, among: bool = True
    ) -> list[dict[str, Any]]:
        """Resolve alerts quiet for ``quiet_windows`` windows of event time before
        ``watermark``; prune dedupe memory that is too old to matter.

        With ``detectors``, only the alerts of those detectors (``among=False``: of every
        other detector) follow this watermark: campaign assembly runs behind the account
        stage, and the account stage's watermark must not resolve a campaign whose next
        finding is still on its way."""
        horizon = self.quiet_windows * self.window_s
        out = []
        for key, o in list(self._open.items()):
            if detectors is not None and (key[2] in detectors) != among:
                continue
            if watermark >= o.last_window_end + horizon:
                self._closed(key)
                self._dirty.add(key)
                out.append(self._change("resolved", o, watermark))
        if len(self._done_until) > 4 * len(self._open) + 1024:
            # Findings older than a day of event time are never redelivered in practice.
            cutoff = watermark - 86400
            for key in [k for k, t in self._done_until.items() if t < cutoff]:
                del self._done_until[key]
                self._dirty.add(key)
        return out

    # -- durable state: one small JSON-ready record per (entity, detector) ---------------------

    def pop_dirty(self) -> dict[AlertKey, dict[str, Any] | None]:
        """State records changed since the last call (``None``: forget the key)."""
        out = {key: self.dump_key(key) for key in self._dirty}
        self._dirty.clear()
        return out

    def dump_key(self, key: AlertKey) -> dict[str, Any] | None:
        done = self._done_until.get(key)
        if done is None:
            return None
        o = self._open.get(key)
        rec: dict[str, Any] = {"done_until": done, "open": None}
        if o is not None:
            rec["open"] = {
                "alert_id": o.alert_id,
                "opened_ts": o.opened_ts,
                "last_window_end": o.last_window_end,
                "severity": o.severity,
                "score": o.score,
                "member_count": o.member_count,
                "last": o.last.to_dict(),
            }
        return rec

    def load_key(self, key: AlertKey, rec: dict[str, Any] | None) -> None:
        """Restore one key's state from :meth:`dump_key` output (after a restart)."""
        self._closed(key)
        self._done_until.pop(key, None)
        if rec is None:
            return
        self._done_until[key] = float(rec["done_until"])
        o = rec.get("open")
        if o is not None:
            self._opened(key, _Open(
                o["alert_id"],
                o["opened_ts"],
                o["last_window_end"],
                o["severity"],
                o["score"],
                o["member_count"],
                Finding.from_dict(o["last"]),
            ))
