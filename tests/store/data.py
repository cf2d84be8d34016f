"""Alert changes shaped like the worker's (detectors/alerts.py), for store and console
tests that do not need a worker: a campaign that opens, grows, and an account alert."""

from __future__ import annotations

from typing import Any

T0 = 1_800_000_000.0


def campaign(aid: str = "c0ffee0000000000cafe", n: int = 3) -> list[dict[str, Any]]:
    """``n`` changes of one cluster alert: opened, then updated as it grows."""
    out = []
    for i in range(n):
        members = [f"acct-{j}" for j in range(10 + 10 * i)]
        out.append({
            "alert_id": aid, "state": "opened" if i == 0 else "updated",
            "entity_type": "cluster", "entity_id": "camp-1", "detector": "cluster_campaign",
            "severity": "critical" if i else "warning", "ts": T0 + 600 * i, "opened_ts": T0,
            "window_start": T0 - 600 + 600 * i, "window_end": T0 + 600 * i,
            "score": 5.0 + 3 * i, "threshold": 4.0, "member_count": len(members),
            "members": members, "member_orgs": {},
            "evidence": {
                "features": {"members": len(members), "young_members": len(members) - 1},
                "baseline": {"founded_ts": T0 - 600, "expected_suspicious_members": 0},
                "signals": [{"signal": "suspicious_members_in_window", "score": len(members)},
                            {"signal": "young_account_share", "score": 0.9}],
                "shared_attributes": [{"key": "card:f00d", "kind": "payment fingerprint",
                                       "members": len(members)},
                                      {"key": "net:203.0.113.0/24", "kind": "network /24",
                                       "members": len(members) - 2}],
                "harvest": {"requests": 100 * (i + 1), "output_tokens": 400_000 * (i + 1)},
            },
        })
    return out


def account(aid: str = "acc0000000000000beef") -> dict[str, Any]:
    return {
        "alert_id": aid, "state": "opened", "entity_type": "account", "entity_id": "ramp-1",
        "detector": "account_baseline", "severity": "warning", "ts": T0 + 60,
        "opened_ts": T0 + 60, "window_start": T0, "window_end": T0 + 60, "score": 9.5,
        "threshold": 6.0,
        "evidence": {"features": {"requests": 400.0, "output_tokens": 90000.0},
                     "baseline": {"requests": 20.0, "output_tokens": 5000.0},
                     "signals": [{"signal": "requests", "score": 9.5}]},
    }
