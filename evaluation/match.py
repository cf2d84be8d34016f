"""Do these alerts belong to this labels file? ``evaluate`` asks before scoring.

Scoring the alerts of one scenario against another's labels gives numbers that look like a
result (every alert a false positive, every campaign missed) and mean nothing. The alerts
carry no scenario name, but they name accounts and times: if most alerted accounts are not
in the labels, or most alerts fall outside the scenario's time span, they are another run's.

>>> from evaluation.score import Labels
>>> labels = Labels("s1", 0.0, 3600.0, {"a": "benign", "b": "attack"}, {}, {}, {})
>>> mismatch(labels, [{"entity_type": "account", "entity_id": "a", "ts": 60.0}]) is None
True
>>> print(mismatch(labels, [{"entity_type": "account", "entity_id": "zz", "ts": 60.0}]))
1 of 1 alerted accounts are not in the labels of scenario 's1'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from evaluation.score import Labels

__all__ = ["mismatch"]

# Alerts may resolve a while after the scenario's last event (quiet windows, holds).
_SLACK_S = 86400.0


def _accounts(alerts: Iterable[Mapping[str, Any]]) -> set[str]:
    out: set[str] = set()
    for a in alerts:
        if a.get("entity_type") == "account":
            out.add(str(a.get("entity_id")))
        members = a.get("members")
        if isinstance(members, list):
            out.update(str(m) for m in members)
    return out


def mismatch(labels: Labels, alerts: list[Mapping[str, Any]]) -> str | None:
    """Why ``alerts`` do not look like ``labels``' scenario, or None if they may."""
    if not alerts:
        return None
    accounts = _accounts(alerts)
    unknown = [a for a in accounts if a not in labels.label]
    if accounts and len(unknown) * 2 > len(accounts):
        return (f"{len(unknown)} of {len(accounts)} alerted accounts are not in the labels of "
                f"scenario {labels.name!r}")
    ts = [float(a["ts"]) for a in alerts if isinstance(a.get("ts"), int | float)]
    outside = [t for t in ts
               if not labels.start_ts - _SLACK_S <= t <= labels.end_ts + _SLACK_S]
    if ts and len(outside) * 2 > len(ts):
        return (f"{len(outside)} of {len(ts)} alerts are outside the time span of scenario "
                f"{labels.name!r}")
    return None
