"""Contracts every detector follows (River's manners: plain dicts in and out)."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["AnomalyDetector"]


class AnomalyDetector(Protocol):
    """``learn_one`` updates state; ``score_one`` says how anomalous ``x`` is (higher is
    more anomalous, 0 during warm-up). Scoring never mutates state."""

    def learn_one(self, x: dict[str, Any]) -> None: ...

    def score_one(self, x: dict[str, Any]) -> float: ...
