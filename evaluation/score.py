"""Score alert state changes against simulator labels, at the account level.

An account counts as *flagged* from the first alert change (opened or updated) with
severity warning or critical whose entity is the account, or which is a cluster alert
listing the account among its members. An alert is *false* when it is an account alert on
a non-campaign account, or a cluster alert whose listed members are less than half campaign
accounts.

>>> labels = Labels.from_records([
...     {"type": "scenario", "name": "t", "start_ts": 0, "end_ts": 86400},
...     {"type": "campaign", "campaign_id": "c1", "kind": "hydra", "start_ts": 3600,
...      "end_ts": 86400},
...     {"type": "account", "account_id": "a", "label": "campaign", "campaign_id": "c1",
...      "population": "campaign:hydra"},
...     {"type": "account", "account_id": "b", "label": "benign", "campaign_id": None,
...      "population": "benign"}])
>>> alerts = [{"alert_id": "x", "state": "opened", "entity_type": "account",
...            "entity_id": "a", "detector": "d", "severity": "warning", "ts": 4200}]
>>> r = score(labels, alerts)
>>> r.precision, r.recall, r.campaigns[0].delay_s
(1.0, 1.0, 600.0)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "AlertOutcome",
    "CampaignScore",
    "DetectorScore",
    "Labels",
    "PopulationScore",
    "Score",
    "read_jsonl",
    "score",
]

_RANK = {"info": 0, "warning": 1, "critical": 2}


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every non-empty line of a JSON-lines file."""
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


@dataclass
class Labels:
    """Ground truth written by ``distillwatch simulate --labels``."""

    name: str
    start_ts: float
    end_ts: float
    label: dict[str, str]
    campaign_of: dict[str, str | None]
    population: dict[str, str]
    campaigns: dict[str, dict[str, Any]]

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]]) -> Labels:
        name, start, end = "?", None, None
        label: dict[str, str] = {}
        camp_of: dict[str, str | None] = {}
        pop: dict[str, str] = {}
        campaigns: dict[str, dict[str, Any]] = {}
        for r in records:
            kind = r.get("type", "account" if "account_id" in r else None)
            if kind == "scenario":
                name, start, end = r.get("name", "?"), r["start_ts"], r["end_ts"]
            elif kind == "campaign":
                campaigns[r["campaign_id"]] = r
            elif kind == "account":
                aid = r["account_id"]
                label[aid] = r["label"]
                camp_of[aid] = r.get("campaign_id")
                pop[aid] = r.get("population") or r["label"]
            else:
                raise ValueError(f"labels: unknown record type {kind!r} in {r!r}")
        if start is None or end is None:
            raise ValueError("labels: no scenario record (start_ts / end_ts)")
        return cls(name, float(start), float(end), label, camp_of, pop, campaigns)

    @classmethod
    def read(cls, path: str | Path) -> Labels:
        return cls.from_records(read_jsonl(path))

    @property
    def days(self) -> float:
        return max(self.end_ts - self.start_ts, 1.0) / 86400.0

    def is_campaign(self, account_id: str) -> bool:
        return self.label.get(account_id) == "campaign"

    @property
    def benign_accounts(self) -> int:
        return sum(1 for v in self.label.values() if v != "campaign")

    @property
    def campaign_accounts(self) -> int:
        return sum(1 for v in self.label.values() if v == "campaign")


@dataclass
class AlertOutcome:
    """One alert (all its changes folded): who it flagged, when, and whether it was false."""

    alert_id: str
    entity_type: str
    entity_id: str
    detector: str
    first_ts: float
    severity: str
    flagged: dict[str, float]  # account -> first ts this alert flagged it
    false: bool


@dataclass
class CampaignScore:
    campaign_id: str
    kind: str
    start_ts: float
    accounts: int
    flagged: int
    first_flag_ts: float | None

    @property
    def detected(self) -> bool:
        return self.first_flag_ts is not None

    @property
    def delay_s(self) -> float | None:
        return None if self.first_flag_ts is None else self.first_flag_ts - self.start_ts

    @property
    def share_flagged(self) -> float:
        return self.flagged / self.accounts if self.accounts else 0.0


@dataclass
class DetectorScore:
    detector: str
    alerts: int = 0
    false_alerts: int = 0
    critical_false: int = 0
    campaign_accounts: int = 0
    benign_accounts: int = 0

    @property
    def precision(self) -> float | None:
        n = self.campaign_accounts + self.benign_accounts
        return self.campaign_accounts / n if n else None


@dataclass
class PopulationScore:
    population: str
    accounts: int
    flagged: int = 0
    critical_alerts: int = 0


@dataclass
class Score:
    """Account-level quality of one set of alerts (or the rate-limit baseline)."""

    name: str
    days: float
    benign_accounts: int
    campaign_accounts: int
    flagged_campaign: int
    flagged_benign: int
    flagged_unknown: int
    alerts: int
    false_alerts: int
    critical_false_alerts: int
    campaigns: list[CampaignScore]
    detectors: list[DetectorScore] = field(default_factory=list)
    populations: list[PopulationScore] = field(default_factory=list)
    outcomes: list[AlertOutcome] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        n = self.flagged_campaign + self.flagged_benign + self.flagged_unknown
        return self.flagged_campaign / n if n else None

    @property
    def recall(self) -> float | None:
        return self.flagged_campaign / self.campaign_accounts if self.campaign_accounts else None

    @property
    def false_alerts_per_1k_day(self) -> float:
        return self.false_alerts / max(self.benign_accounts / 1000.0, 1e-9) / self.days

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "campaign_accounts": self.campaign_accounts,
            "benign_accounts": self.benign_accounts,
            "flagged_campaign_accounts": self.flagged_campaign,
            "flagged_benign_accounts": self.flagged_benign,
            "flagged_unknown_accounts": self.flagged_unknown,
            "alerts": self.alerts,
            "false_alerts": self.false_alerts,
            "false_alerts_per_1k_benign_per_day": round(self.false_alerts_per_1k_day, 4),
            "critical_false_alerts": self.critical_false_alerts,
            "campaigns": [
                {
                    "campaign_id": c.campaign_id,
                    "kind": c.kind,
                    "accounts": c.accounts,
                    "detected": c.detected,
                    "delay_s": c.delay_s,
                    "flagged_accounts": c.flagged,
                    "share_flagged": round(c.share_flagged, 4),
                }
                for c in self.campaigns
            ],
            "detectors": [
                {
                    "detector": d.detector,
                    "alerts": d.alerts,
                    "false_alerts": d.false_alerts,
                    "critical_false_alerts": d.critical_false,
                    "campaign_accounts_flagged": d.campaign_accounts,
                    "benign_accounts_flagged": d.benign_accounts,
                    "precision": d.precision,
                }
                for d in self.detectors
            ],
            "populations": [
                {
                    "population": p.population,
                    "accounts": p.accounts,
                    "flagged": p.flagged,
                    "critical_alerts": p.critical_alerts,
                }
                for p in self.populations
            ],
        }


def fold_alerts(labels: Labels, changes: Iterable[dict[str, Any]]) -> list[AlertOutcome]:
    """Fold alert state changes into one outcome per alert id (warning or worse only)."""
    by_id: dict[str, AlertOutcome] = {}
    members_seen: dict[str, set[str]] = defaultdict(set)
    for c in changes:
        if c.get("state") == "resolved" or _RANK.get(c.get("severity", "info"), 0) < 1:
            continue
        aid = c["alert_id"]
        ts = float(c["ts"])
        o = by_id.get(aid)
        if o is None:
            o = by_id[aid] = AlertOutcome(aid, c["entity_type"], c["entity_id"], c["detector"],
                                          ts, c["severity"], {}, False)
        if _RANK[c["severity"]] > _RANK[o.severity]:
            o.severity = c["severity"]
        o.first_ts = min(o.first_ts, ts)
        accounts = [c["entity_id"]] if c["entity_type"] == "account" else c.get("members") or []
        for a in accounts:
            if a not in o.flagged or ts < o.flagged[a]:
                o.flagged[a] = ts
        members_seen[aid].update(accounts)
    for o in by_id.values():
        seen = members_seen[o.alert_id]
        bad = sum(1 for a in seen if not labels.is_campaign(a))
        o.false = not seen or bad * 2 > len(seen) or (
            o.entity_type == "account" and not labels.is_campaign(o.entity_id)
        )
    return sorted(by_id.values(), key=lambda o: (o.first_ts, o.alert_id))


def score(labels: Labels, changes: Iterable[dict[str, Any]], name: str = "distillwatch") -> Score:
    """Account-level precision/recall, false alerts, per campaign, detector and population."""
    outcomes = fold_alerts(labels, changes)
    return score_outcomes(labels, outcomes, name)


def score_outcomes(labels: Labels, outcomes: list[AlertOutcome], name: str) -> Score:
    first: dict[str, float] = {}
    by_det: dict[str, DetectorScore] = {}
    det_accounts: dict[str, set[str]] = defaultdict(set)
    pops: dict[str, PopulationScore] = {}
    for pop in labels.population.values():
        p = pops.get(pop)
        if p is None:
            p = pops[pop] = PopulationScore(pop, 0)
        p.accounts += 1
    pop_critical: dict[str, set[str]] = defaultdict(set)
    for o in outcomes:
        for a, ts in o.flagged.items():
            if a not in first or ts < first[a]:
                first[a] = ts
        d = by_det.get(o.detector)
        if d is None:
            d = by_det[o.detector] = DetectorScore(o.detector)
        d.alerts += 1
        d.false_alerts += o.false
        d.critical_false += o.false and o.severity == "critical"
        det_accounts[o.detector].update(o.flagged)
        if o.severity == "critical":
            for a in o.flagged:
                if a in labels.population:
                    pop_critical[labels.population[a]].add(o.alert_id)
    for det, accts in det_accounts.items():
        by_det[det].campaign_accounts = sum(1 for a in accts if labels.is_campaign(a))
        by_det[det].benign_accounts = len(accts) - by_det[det].campaign_accounts
    for a in first:
        pop = labels.population.get(a)
        if pop is not None:
            pops[pop].flagged += 1
    for pop, ids in pop_critical.items():
        pops[pop].critical_alerts = len(ids)
    campaigns = []
    members: dict[str, list[str]] = defaultdict(list)
    for a, c in labels.campaign_of.items():
        if c is not None:
            members[c].append(a)
    for cid, rec in labels.campaigns.items():
        start = float(rec["start_ts"])
        accts = members.get(cid, [])
        # A blend host flagged for its own traffic before the campaign began is not a
        # detection of the campaign.
        times = [first[a] for a in accts if a in first and first[a] >= start]
        n_flagged = sum(1 for a in accts if a in first)
        campaigns.append(CampaignScore(cid, rec.get("kind", "?"), start, len(accts), n_flagged,
                                       min(times) if times else None))
    flagged_campaign = sum(1 for a in first if labels.is_campaign(a))
    flagged_unknown = sum(1 for a in first if a not in labels.label)
    false = [o for o in outcomes if o.false]
    return Score(
        name=name,
        days=labels.days,
        benign_accounts=labels.benign_accounts,
        campaign_accounts=labels.campaign_accounts,
        flagged_campaign=flagged_campaign,
        flagged_benign=len(first) - flagged_campaign - flagged_unknown,
        flagged_unknown=flagged_unknown,
        alerts=len(outcomes),
        false_alerts=len(false),
        critical_false_alerts=sum(1 for o in false if o.severity == "critical"),
        campaigns=campaigns,
        detectors=sorted(by_det.values(), key=lambda d: d.detector),
        populations=sorted(pops.values(), key=lambda p: p.population),
        outcomes=outcomes,
    )
