"""What every account finding shows: the window's features and the account's profile."""

from __future__ import annotations

from detectors.baseline import AccountBaseline
from detectors.features import window_features
from detectors.windows import AccountWindow

__all__ = ["evidence_features", "evidence_profile"]


def evidence_features(acc: AccountWindow) -> dict[str, float | None]:
    """The window's features as a finding shows them: rounded, NaN as null (valid JSON)."""
    return {k: (None if v != v else round(v, 4)) for k, v in window_features(acc).items()}


def evidence_profile(base: AccountBaseline, now: float) -> dict[str, float | None]:
    """The account's long-run profile, rounded, NaN as null."""
    return {k: (None if v != v else round(v, 3)) for k, v in base.profile(now).items()}
