"""What every account finding shows: the window's features and the account's profile."""

from __future__ import annotations

from typing import Any

from detectors.baseline import AccountBaseline
from detectors.features import window_features
from detectors.findings import Finding, Severity
from detectors.windows import AccountWindow, ClosedWindow

__all__ = ["account_finding", "evidence_features", "evidence_profile"]


def evidence_features(acc: AccountWindow) -> dict[str, float | None]:
    """The window's features as a finding shows them: rounded, NaN as null (valid JSON)."""
    return {k: (None if v != v else round(v, 4)) for k, v in window_features(acc).items()}


def evidence_profile(base: AccountBaseline, now: float) -> dict[str, float | None]:
    """The account's long-run profile, rounded, NaN as null."""
    return {k: (None if v != v else round(v, 3)) for k, v in base.profile(now).items()}


def account_finding(
    detector: str,
    account_id: str,
    acc: AccountWindow,
    base: AccountBaseline,
    closed: ClosedWindow,
    *,
    score: float,
    threshold: float,
    severity: Severity,
    baseline: dict[str, Any],
    signals: list[dict[str, Any]],
    features: dict[str, float | None] | None = None,
    **extra: Any,
) -> Finding:
    """An account rule's finding for ``closed``: the window's features (or ``features``), the
    rule's ``baseline``, the account's profile, any ``extra`` evidence, then score, threshold
    and ``signals``, in that order (replay output is compared byte for byte)."""
    score = round(score, 3)
    return Finding(
        entity_type="account",
        entity_id=account_id,
        detector=detector,
        org_id=acc.org_id,
        window_start=closed.start,
        window_end=closed.end,
        score=score,
        threshold=threshold,
        severity=severity,
        evidence={
            "features": evidence_features(acc) if features is None else features,
            "baseline": baseline,
            "profile": evidence_profile(base, closed.end),
            **extra,
            "score": score,
            "threshold": threshold,
            "signals": signals,
        },
    )
