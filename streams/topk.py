"""The worst flagged accounts and clusters as a bounded top-k for Prometheus, without ids.

Prometheus keeps one time series per distinct label set, so an account id, IP or fingerprint
as a label value would make the series count grow with the attack (a campaign of 25,000
accounts would be 25,000 series per metric) and would copy identifying data into a system
with wider access and longer retention than the alert trail. So the entities are exposed by
**rank**: ``rank="1"`` is the worst open entity of its type now, ``rank="K"`` the K-th. Each
metric has at most ``2 * K`` series (two entity types), whatever the traffic.

The entity id itself is not exported. ``distillwatch_top_entity_info`` carries the
``alert_id`` of each rank instead: a hash that joins to the Slack message and the ``alerts``
topic, where the entity, its members and the evidence are. Alert ids change only when an
alert opens, so the info series churn at the alert rate (a few a day), not the event rate.

Ranking: severity first, then score / threshold (how many times over its threshold), which
compares detectors whose raw scores have different scales. Only entities with an open alert
are ranked; a resolved alert leaves the ranking, so memory is bounded by the open alerts. An
entity with open alerts from several detectors is one entity, shown by its worst alert.

Examples
--------
>>> from prometheus_client import CollectorRegistry
>>> worst = WorstEntities(k=2)
>>> registry = CollectorRegistry()
>>> registry.register(TopKCollector(worst))
>>> def finding(entity, score, tokens, end):
...     return {"type": "finding", "entity_type": "account", "entity_id": entity,
...             "detector": "account_baseline", "severity": "warning", "score": score,
...             "threshold": 6.0, "window_start": end - 60, "window_end": end,
...             "member_count": None, "evidence": {"features": {"output_tokens": tokens}}}
>>> def opened(entity):
...     return {"state": "opened", "alert_id": "id-" + entity, "entity_type": "account",
...             "entity_id": entity, "detector": "account_baseline", "severity": "warning"}
>>> worst.update(finding("a1", 12.0, 5000, 60), [opened("a1")])
>>> worst.update(finding("a2", 30.0, 900, 60), [opened("a2")])
>>> worst.update(finding("a1", 9.0, 7000, 120), [])
>>> registry.get_sample_value("distillwatch_top_entity_score_ratio",
...                           {"entity_type": "account", "rank": "1"})
5.0
>>> registry.get_sample_value("distillwatch_top_entity_output_tokens",
...                           {"entity_type": "account", "rank": "2"})
12000.0
>>> registry.get_sample_value("distillwatch_flagged_entities",
...                           {"entity_type": "account", "severity": "warning"})
2.0
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from detectors.findings import SEVERITIES, severity_rank

__all__ = ["ENTITY_TYPES", "TOP_K", "TopKCollector", "WorstEntities"]

ENTITY_TYPES = ("account", "cluster")
TOP_K = 10

_Key = tuple[str, str, str]


@dataclass(slots=True)
class _Flagged:
    alert_id: str
    detector: str
    severity: str
    ratio: float = 0.0
    members: int = 1
    output_tokens: float = 0.0
    first_ts: float = float("inf")
    last_end: float = float("-inf")

    def sort_key(self) -> tuple[int, float]:
        return (severity_rank(self.severity), self.ratio)


@dataclass(frozen=True, slots=True)
class Ranked:
    """One rank of the ranking, as exported (no entity id)."""

    rank: int
    alert_id: str
    detector: str
    severity: str
    ratio: float
    members: int
    output_tokens: float
    first_ts: float


class WorstEntities:
    """Entities (accounts, clusters) with an open alert, ranked worst first.

    Parameters
    ----------
    k
        Ranks exported per entity type. Each ranked metric has at most ``2 * k`` series; a
        larger ``k`` shows more of a campaign on the dashboards at the cost of series.
    """

    def __init__(self, k: int = TOP_K) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self._flagged: dict[_Key, _Flagged] = {}
        # The scrape runs in the metrics server's thread, updates in the event loop.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._flagged)

    def update(self, msg: dict[str, Any], changes: Iterable[dict[str, Any]]) -> None:
        """Fold one findings-topic message and the alert changes it caused.

        ``changes`` open and resolve entries; a ``finding`` message refreshes the score and
        members of its open entry and its harvest: ``evidence.harvest.output_tokens`` when the
        detector reports a running total (clusters), else the sum of the flagged windows'
        ``evidence.features.output_tokens`` (accounts). A finding for a window already counted
        (redelivery) is ignored.
        """
        with self._lock:
            for c in changes:
                self._apply(c)
            if msg.get("type") == "finding":
                self._observe(msg)

    def _apply(self, change: dict[str, Any]) -> None:
        key = (change["entity_type"], change["entity_id"], change["detector"])
        state = change["state"]
        if state == "resolved":
            self._flagged.pop(key, None)
            return
        f = self._flagged.get(key)
        if f is None:
            # "updated" creates too: after a restart the alert state is restored from its
            # changelog but this ranking is not, so the first change re-enters the alert.
            self._flagged[key] = _Flagged(
                change["alert_id"], change["detector"], change["severity"]
            )
        else:
            f.severity = change["severity"]

    def _observe(self, msg: dict[str, Any]) -> None:
        f = self._flagged.get((msg["entity_type"], msg["entity_id"], msg["detector"]))
        if f is None or msg["window_end"] <= f.last_end:
            return
        f.last_end = msg["window_end"]
        f.first_ts = min(f.first_ts, msg["window_start"])
        threshold = msg.get("threshold") or 0.0
        f.ratio = msg["score"] / threshold if threshold > 0 else msg["score"]
        if severity_rank(msg["severity"]) > severity_rank(f.severity):
            f.severity = msg["severity"]
        members = msg.get("member_count")
        f.members = int(members) if members is not None else 1
        evidence = msg.get("evidence") or {}
        harvest = evidence.get("harvest")
        if isinstance(harvest, dict) and "output_tokens" in harvest:
            # Cluster detectors report the campaign's running total since it was founded.
            f.output_tokens = max(f.output_tokens, float(harvest["output_tokens"]))
        else:
            # Account findings carry one window's features: sum the flagged windows.
            features = evidence.get("features") or {}
            f.output_tokens += float(features.get("output_tokens", 0.0))

    def _worst_per_entity(self) -> dict[tuple[str, str], _Flagged]:
        # An entity can have open alerts from several detectors (a campaign flagged by
        # cluster_campaign and cluster_model_pivot): it is one entity, shown by its worst
        # alert, with the largest member count and harvest any of them reports.
        out: dict[tuple[str, str], _Flagged] = {}
        for (etype, eid, _det), f in self._flagged.items():
            cur = out.get((etype, eid))
            if cur is None:
                out[(etype, eid)] = replace(f)  # a copy: merged below, outside the lock
                continue
            members, tokens = max(cur.members, f.members), max(cur.output_tokens, f.output_tokens)
            first = min(cur.first_ts, f.first_ts)
            if f.sort_key() > cur.sort_key():
                cur.alert_id, cur.detector, cur.severity, cur.ratio = (
                    f.alert_id, f.detector, f.severity, f.ratio)
            cur.members, cur.output_tokens, cur.first_ts = members, tokens, first
        return out

    def top(self, entity_type: str) -> list[Ranked]:
        """The ``k`` worst open entities of ``entity_type``, rank 1 first."""
        with self._lock:
            merged = self._worst_per_entity()
        rows = [f for (etype, _id), f in merged.items() if etype == entity_type]
        rows.sort(key=_Flagged.sort_key, reverse=True)
        return [
            Ranked(i, f.alert_id, f.detector, f.severity, f.ratio, f.members,
                   f.output_tokens, f.first_ts)
            for i, f in enumerate(rows[: self.k], start=1)
        ]

    def totals(self) -> dict[str, dict[str, float]]:
        """Per entity type: open entities by (worst) severity, their members and harvest."""
        out = {
            t: {**{s: 0.0 for s in SEVERITIES}, "members": 0.0, "output_tokens": 0.0}
            for t in ENTITY_TYPES
        }
        with self._lock:
            merged = self._worst_per_entity()
        for (etype, _id), f in merged.items():
            row = out.setdefault(
                etype, {**{s: 0.0 for s in SEVERITIES}, "members": 0.0, "output_tokens": 0.0}
            )
            row[f.severity] += 1
            row["members"] += f.members
            row["output_tokens"] += f.output_tokens
        return out


class TopKCollector(Collector):
    """Exports a :class:`WorstEntities` at scrape time (see the module docstring)."""

    def __init__(self, worst: WorstEntities, prefix: str = "distillwatch") -> None:
        self.worst = worst
        self.prefix = prefix

    def describe(self) -> Iterable[Metric]:
        # Register without calling collect(): the families are known up front.
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        p = self.prefix
        lbl = ["entity_type", "rank"]
        return (
            GaugeMetricFamily(
                f"{p}_top_entity_score_ratio",
                "Score over threshold of the rank-th worst open entity",
                labels=lbl,
            ),
            GaugeMetricFamily(
                f"{p}_top_entity_severity",
                "Severity of the rank-th worst open entity (0 info, 1 warning, 2 critical)",
                labels=lbl,
            ),
            GaugeMetricFamily(
                f"{p}_top_entity_members",
                "Member accounts of the rank-th worst open entity (1 for an account)",
                labels=lbl,
            ),
            GaugeMetricFamily(
                f"{p}_top_entity_output_tokens",
                "Output tokens in the flagged windows of the rank-th worst open entity",
                labels=lbl,
            ),
            GaugeMetricFamily(
                f"{p}_top_entity_first_flagged_timestamp_seconds",
                "Event-time start of the first flagged window of the rank-th worst open entity",
                labels=lbl,
            ),
            GaugeMetricFamily(
                f"{p}_top_entity_info",
                "Alert id, detector and severity of the rank-th worst open entity (value 1)",
                labels=[*lbl, "alert_id", "detector", "severity"],
            ),
            GaugeMetricFamily(
                f"{p}_flagged_entities",
                "Entities with an open alert, by entity type and severity",
                labels=["entity_type", "severity"],
            ),
            GaugeMetricFamily(
                f"{p}_flagged_members",
                "Member accounts summed over entities with an open alert",
                labels=["entity_type"],
            ),
            GaugeMetricFamily(
                f"{p}_flagged_output_tokens",
                "Output tokens in flagged windows summed over entities with an open alert",
                labels=["entity_type"],
            ),
        )

    def collect(self) -> Iterator[Metric]:
        ratio, sev, members, tokens, first, info, ent, mem, tok = self._families()
        for etype in ENTITY_TYPES:
            for r in self.worst.top(etype):
                lv = [etype, str(r.rank)]
                ratio.add_metric(lv, r.ratio)
                sev.add_metric(lv, severity_rank(r.severity))
                members.add_metric(lv, r.members)
                tokens.add_metric(lv, r.output_tokens)
                if r.first_ts != float("inf"):
                    first.add_metric(lv, r.first_ts)
                info.add_metric([*lv, r.alert_id, r.detector, r.severity], 1)
        for etype, row in self.worst.totals().items():
            for s in SEVERITIES:
                ent.add_metric([etype, s], row[s])
            mem.add_metric([etype], row["members"])
            tok.add_metric([etype], row["output_tokens"])
        yield from (ratio, sev, members, tokens, first, info, ent, mem, tok)
