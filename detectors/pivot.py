"""The model-pivot detector: an established campaign moves most of its traffic to a model it
started using only recently (a new model launched, and the operator switches its harvest).

Per cluster window, :func:`track_models` folds the models the campaign's suspicious members
used into a slow moving share per model, and records a pivot when a model first seen at
least two cluster windows after the campaign was founded carries half or more of its traffic
within six hours of its first request. :func:`pivot_finding` is the finding while it holds.

Examples
--------
>>> from detectors.campaigns import Campaign
>>> c = Campaign("cmp-1", founded_ts=0.0)
>>> for w in range(1, 5):
...     c.models_now = {"old": 40} if w < 4 else {"old": 5, "new": 35}
...     if w == 3:
...         c.models_now["new"] = 1
...     track_models(c, end=w * 600.0, span=600.0, hold_windows=9)
>>> c.pivot["model"], c.pivot["share_now"], c.pivot_until
('new', 0.875, 7800.0)
>>> pivot_finding(c, 2340.0, 2400.0, max_members=10).detector
'cluster_model_pivot'
"""

from __future__ import annotations

from detectors.campaign_findings import orgs_of
from detectors.campaigns import Campaign
from detectors.findings import Finding

__all__ = ["pivot_finding", "track_models"]


def track_models(c: Campaign, end: float, span: float, hold_windows: int) -> None:
    """Close a cluster window of ``span`` seconds ending at ``end`` for ``c``'s models."""
    total = sum(c.models_now.values())
    for m in c.models_now:
        c.model_first.setdefault(m, end)
    if total < 10:
        c.models_now = {}
        return
    shares = {m: n / total for m, n in c.models_now.items()}
    for m, sh in shares.items():
        first = c.model_first[m]
        before = c.model_share.get(m, 0.0)
        # A model the campaign started using after it was established, now carrying
        # most of its traffic within hours of its first request.
        if (
            sh >= 0.5
            and c.model_windows >= 2
            and first - c.founded_ts >= 2 * span
            and end - first <= 6 * 3600
            and (c.pivot is None or c.pivot.get("model") != m)
        ):
            c.pivot = {"model": m, "share_now": round(sh, 3), "share_before": round(
                before, 3), "requests": total, "first_seen": first}
            c.pivot_until = end + hold_windows * span
    for m in set(c.model_share) | set(shares):
        prev = c.model_share.get(m, 0.0)
        c.model_share[m] = prev + 0.3 * (shares.get(m, 0.0) - prev)
    c.model_windows += 1
    c.models_now = {}


def pivot_finding(c: Campaign, start: float, end: float, max_members: int) -> Finding:
    """The campaign's ``cluster_model_pivot`` finding for the account window [start, end)."""
    p = c.pivot or {}
    score = float(p.get("share_now", 0.0)) - float(p.get("share_before", 0.0))
    return Finding(
        entity_type="cluster",
        entity_id=c.id,
        detector="cluster_model_pivot",
        window_start=start,
        window_end=end,
        score=round(score, 3),
        threshold=0.4,
        severity="warning",
        evidence={
            "features": p,
            "baseline": {"model_share": {m: round(v, 3) for m, v in c.model_share.items()}},
            "score": round(score, 3),
            "threshold": 0.4,
            "signals": [{"signal": f"share_on_{p.get('model')}", "score": round(score, 3)}],
            "member_count": len(c.members),
            "members_sample": list(c.members)[:20],
        },
        member_count=len(c.members),
        members=(listed := list(c.members)[:max_members]),
        member_orgs=orgs_of(c, listed),
    )
