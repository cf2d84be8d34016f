"""Findings: what a detector says about one entity in one window, with its evidence."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

__all__ = ["SEVERITIES", "EntityType", "Finding", "Severity", "severity_rank"]

EntityType = Literal["account", "cluster"]
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


def severity_rank(severity: str) -> int:
    """0 for info, 1 for warning, 2 for critical."""
    return SEVERITIES.index(severity)  # type: ignore[arg-type]


@dataclass(slots=True)
class Finding:
    """A detector's verdict on one entity for one closed window.

    ``evidence`` is a plain JSON-ready dict: at least ``features``, ``baseline``,
    ``score``, ``threshold`` and ``signals`` (contributing signals, strongest first).
    Cluster findings also carry ``member_count`` and a capped ``members`` sample.

    ``org_id`` (account findings) is the org of the account's newest event that declared one;
    ``member_orgs`` (cluster findings) maps each listed member that declared an org to it, so
    it is never longer than ``members``. The suspension policy's org allowlist reads them:
    without them it could not know whose accounts a campaign contains.
    """

    entity_type: EntityType
    entity_id: str
    detector: str
    window_start: float
    window_end: float
    score: float
    threshold: float
    severity: Severity
    evidence: dict[str, Any] = field(default_factory=dict)
    member_count: int | None = None
    members: list[str] | None = None
    org_id: str | None = None
    member_orgs: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, for JSON. Shallow: ``evidence`` and ``members`` are this
        finding's own objects (a deep copy of a swarm's thousands of members per window cost
        more than detecting it); serialise the dict, do not mutate it."""
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(**d)


_FIELDS = tuple(f.name for f in fields(Finding))
