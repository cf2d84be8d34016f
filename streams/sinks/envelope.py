"""What every sink receives: one alert change plus what delivery adds to it (effective
severity, agreeing detectors, runbook and dashboard links, a delivery id).

Examples
--------
>>> change = {"alert_id": "a1", "state": "opened", "entity_type": "account",
...           "entity_id": "acct-7", "detector": "account_baseline", "severity": "warning",
...           "ts": 120.0, "window_start": 60.0, "window_end": 120.0, "score": 9.0}
>>> env = Envelope.build(change, detectors=("account_baseline",), severity="warning",
...                      runbook_base="https://x/docs/detectors.md",
...                      grafana_url="https://grafana/d/dw")
>>> env.runbook_url
'https://x/docs/detectors.md#account_baseline'
>>> env.dashboard_url
'https://grafana/d/dw?from=-3540000&to=1020000'
>>> env.delivery_id == Envelope.build(change, detectors=(), severity="info").delivery_id
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["Envelope", "console_link", "dashboard_link", "delivery_id", "runbook_link"]

# Dashboard range around the alert's window: an hour of context before, 15 minutes after.
_BEFORE_S = 3600.0
_AFTER_S = 900.0


def runbook_link(base: str | None, detector: str) -> str:
    """``<base>#<detector>``: docs/detectors.md has one section per detector, anchored by name.

    The detector name comes from the alert record, so it is percent-encoded (and capped): a
    forged name cannot add a query, a second URL or markup to the link. No base (the setting
    ``sinks.runbook_url`` is unset) gives ``""``, which every sink reads as "no link": a
    relative path is not clickable in Slack and would point nowhere from a webhook receiver.

    >>> runbook_link("https://x/d.md", "a b|<c>?q=1")
    'https://x/d.md#a%20b%7C%3Cc%3E%3Fq%3D1'
    >>> runbook_link(None, "d")
    ''
    """
    if not base:
        return ""
    return f"{base}#{quote(detector[:100], safe='')}"


def console_link(base: str | None, alert_id: str) -> str:
    """The console's page of one alert, ``<base>/alerts/<alert id>`` (streams/console routes
    ``/alerts/{alert_id}``); ``""`` without a base (``console.public_url`` unset).

    The alert id comes from the alert record: percent-encoded whole, so a forged id cannot
    climb out of ``/alerts/`` (``../login``) or add a query.

    >>> console_link("https://dw.example/", "a/../b?x")
    'https://dw.example/alerts/a%2F..%2Fb%3Fx'
    >>> console_link(None, "a")
    ''
    """
    if not base:
        return ""
    return f"{base.rstrip('/')}/alerts/{quote(alert_id[:200], safe='')}"


def dashboard_link(grafana_url: str, change: Mapping[str, Any]) -> str:
    """The dashboard URL with the alert's time range (Grafana takes epoch milliseconds)."""
    start = float(change.get("window_start") or change.get("ts") or 0.0)
    end = float(change.get("window_end") or change.get("ts") or start)
    query = urlencode(
        {"from": int((start - _BEFORE_S) * 1000), "to": int((end + _AFTER_S) * 1000)}
    )
    sep = "&" if "?" in grafana_url else "?"
    return f"{grafana_url}{sep}{query}"


def delivery_id(change: Mapping[str, Any]) -> str:
    """Deterministic id of one alert change: the same change redelivered by Kafka gets the
    same id, so sinks and receivers can drop the copy."""
    raw = "|".join(
        str(change.get(k)) for k in ("alert_id", "state", "ts", "score", "severity")
    )
    raw += f"|{change.get('member_count')}"
    return hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One alert change on its way to the sinks.

    ``severity`` is the effective severity (the detector's, raised when independent detectors
    agree, see :func:`streams.sinks.policy.effective_severity`); ``change["severity"]`` keeps
    the detector's own. ``detectors`` lists the independent detectors that currently flag the
    entity, this alert's own included.
    """

    change: Mapping[str, Any]
    delivery_id: str
    severity: str
    detectors: tuple[str, ...]
    runbook_url: str
    dashboard_url: str
    system: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        change: Mapping[str, Any],
        *,
        detectors: tuple[str, ...],
        severity: str,
        runbook_base: str | None = None,
        grafana_url: str = "http://localhost:3000/d/distillwatch-overview/distillwatch",
        system: bool = False,
    ) -> Envelope:
        return cls(
            change=change,
            delivery_id=delivery_id(change),
            severity=severity,
            detectors=detectors,
            runbook_url=runbook_link(runbook_base, str(change.get("detector"))),
            dashboard_url=dashboard_link(grafana_url, change),
            system=system,
        )

    @property
    def alert_id(self) -> str:
        return str(self.change["alert_id"])

    @property
    def state(self) -> str:
        return str(self.change.get("state"))

    @property
    def entity_type(self) -> str:
        return str(self.change.get("entity_type"))

    @property
    def entity_id(self) -> str:
        return str(self.change.get("entity_id"))

    @property
    def detector(self) -> str:
        return str(self.change.get("detector"))

    def body(self) -> dict[str, Any]:
        """The JSON document webhooks receive: the alert change, unchanged, plus delivery's
        additions beside it."""
        return {
            "type": "system_alert" if self.system else "alert",
            "delivery_id": self.delivery_id,
            "severity": self.severity,
            "agreeing_detectors": list(self.detectors),
            "runbook_url": self.runbook_url or None,
            "dashboard_url": self.dashboard_url,
            "alert": dict(self.change),
        }
