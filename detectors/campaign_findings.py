"""The ``cluster_campaign`` finding of a campaign: members, shared attributes, harvest totals
and ranked signals; a campaign larger than ``max_members`` is listed in parts.

Examples
--------
>>> from detectors.campaigns import Campaign
>>> c = Campaign("cmp-1", 0.0, members={f"a{i}": None for i in range(5)}, young={"a0"})
>>> fs = campaign_findings(c, 0.0, 60.0, min_z=4.0, critical_members=20,
...                        critical_young_share=0.5, critical_harvest_tokens=1e9, max_members=2)
>>> [(f.entity_id, len(f.members), f.member_count) for f in fs]
[('cmp-1', 2, 5), ('cmp-1/2', 2, 5), ('cmp-1/3', 1, 5)]
>>> fs[0].severity
'warning'
"""

from __future__ import annotations

from typing import Any

from detectors.campaigns import Campaign
from detectors.findings import Finding
from detectors.keys import KIND_NAMES, key_label

__all__ = ["campaign_finding", "campaign_findings", "orgs_of"]


def campaign_findings(
    c: Campaign,
    start: float,
    end: float,
    *,
    min_z: float,
    critical_members: int,
    critical_young_share: float,
    critical_harvest_tokens: float,
    max_members: int,
) -> list[Finding]:
    """The campaign's finding; a campaign larger than ``max_members`` is listed in parts
    (``<id>``, ``<id>/2``, ...), each with up to ``max_members`` members, so every member
    is on record however big the campaign grows."""
    f = campaign_finding(
        c, start, end, min_z=min_z, critical_members=critical_members,
        critical_young_share=critical_young_share,
        critical_harvest_tokens=critical_harvest_tokens, max_members=max_members,
    )
    members = list(c.members)
    cap = max_members
    if len(members) <= cap:
        return [f]
    parts = (len(members) + cap - 1) // cap
    out = []
    for i in range(parts):
        chunk = members[i * cap : (i + 1) * cap]
        out.append(
            Finding(
                f.entity_type,
                c.id if i == 0 else f"{c.id}/{i + 1}",
                f.detector,
                start,
                end,
                f.score,
                f.threshold,
                f.severity,
                {**f.evidence, "part": i + 1, "parts": parts, "campaign_id": c.id},
                member_count=len(members),
                members=chunk,
                member_orgs=orgs_of(c, chunk),
            )
        )
    return out


def campaign_finding(
    c: Campaign,
    start: float,
    end: float,
    *,
    min_z: float,
    critical_members: int,
    critical_young_share: float,
    critical_harvest_tokens: float,
    max_members: int,
) -> Finding:
    n = len(c.members)
    young_share = len(c.young) / max(n, 1)
    # Critical on departure (a big young cluster) or on totals (whatever the accounts'
    # age, a harvest this large is a campaign worth a page).
    critical = (
        n >= critical_members and young_share >= critical_young_share
    ) or c.output_tokens >= critical_harvest_tokens
    shared = sorted(c.keys.items(), key=lambda kv: -kv[1])
    signals = [
        {"signal": "suspicious_members_in_window", "score": c.window_members},
        {"signal": "suspicious_share_of_key_traffic", "score": round(c.window_share, 3)},
        {"signal": "young_account_share", "score": round(young_share, 3)},
        {"signal": "regular_timing_members", "score": c.regular},
        {"signal": "departure_z", "score": round(c.max_z, 2)},
    ]
    evidence: dict[str, Any] = {
        "features": {
            "members": n,
            "young_members": len(c.young),
            "suspicious_members_in_window": c.window_members,
            "keys": len(c.keys),
        },
        "baseline": {"founded_ts": c.founded_ts, "expected_suspicious_members": 0},
        "score": round(c.max_z, 3),
        "threshold": min_z,
        "signals": sorted(signals, key=lambda s: -float(s["score"])),
        "shared_attributes": [
            {"key": key_label(k), "kind": KIND_NAMES.get(k[0], k[0]), "members": m}
            for k, m in shared[:20]
        ],
        "harvest": {"requests": c.requests, "output_tokens": c.output_tokens},
        "member_count": n,
        "members_sample": list(c.members)[:20],
    }
    if c.groups:
        # Swarm groups of the same accounts, folded in rather than alerted on their own.
        evidence["folded_groups"] = [
            {"group": g, "members": m} for g, m in sorted(c.groups.items())[:20]
        ]
    return Finding(
        entity_type="cluster",
        entity_id=c.id,
        detector="cluster_campaign",
        window_start=start,
        window_end=end,
        score=round(c.max_z, 3),
        threshold=min_z,
        severity="critical" if critical else "warning",
        evidence=evidence,
        member_count=n,
        members=(listed := list(c.members)[:max_members]),
        member_orgs=orgs_of(c, listed),
    )


def orgs_of(c: Campaign, listed: list[str]) -> dict[str, str]:
    """Org of each listed member that declared one: bounded by the member list, so a finding
    never carries orgs of accounts it does not name."""
    members = c.members
    return {a: org for a in listed if (org := members.get(a)) is not None}
