"""Alert evidence in plain words, for ``alerts show`` and the console.

The evidence dict is the detector's (detectors/pipeline.py, detectors/clusters.py); it came
off Kafka, so nothing in it is trusted to have a shape: every access is defensive.

>>> lines = evidence_lines({"entity_type": "account", "evidence": {
...     "features": {"requests": 400.0}, "baseline": {"requests": 20.0},
...     "signals": [{"signal": "requests", "score": 9.5}]}})
>>> lines[0]
'requests: now 400, typical 20 (20x; score 9.5)'
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["age", "evidence_lines", "num", "utc"]


def num(v: Any) -> str:
    """A number for people: thousands separated, three significant digits below 100."""
    if isinstance(v, bool) or not isinstance(v, int | float) or (
        isinstance(v, float) and not math.isfinite(v)
    ):
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def utc(ts: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def age(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``7m``: how long, to the nearest minute."""
    m = max(0, int(seconds // 60))
    d, h = m // 1440, (m // 60) % 24
    if d:
        return f"{d}d {h}h"
    return f"{h}h {m % 60}m" if h else f"{m}m"


def _d(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _l(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else []


def evidence_lines(alert: Mapping[str, Any]) -> list[str]:
    """The evidence of ``alert`` (a store row or an alert change) as sentences."""
    ev = _d(alert.get("evidence"))
    feats, base = _d(ev.get("features")), _d(ev.get("baseline"))
    out = []
    for s in _l(ev.get("signals"))[:6]:
        s = _d(s)
        name = str(s.get("signal"))
        line = f"{name}: "
        if name in feats:
            now, typ = feats[name], base.get(name)
            line += f"now {num(now)}"
            if typ is not None:
                line += f", typical {num(typ)}"
                if isinstance(now, int | float) and isinstance(typ, int | float) and typ > 0:
                    line += f" ({num(now / typ)}x; score {num(s.get('score'))})"
                else:
                    line += f" (score {num(s.get('score'))})"
            else:
                line += f" (score {num(s.get('score'))})"
        else:
            line += f"{num(s.get('score'))}"
        out.append(line)
    shared = [_d(a) for a in _l(ev.get("shared_attributes"))]
    if shared:
        out.append("shared by members: " + "; ".join(
            f"{a.get('kind', 'key')} {a.get('key')} ({num(a.get('members'))} members)"
            for a in shared[:8]
        ) + (f" and {len(shared) - 8} more" if len(shared) > 8 else ""))
    if "young_members" in feats and "members" in feats:
        out.append(f"young accounts: {num(feats['young_members'])} of "
                   f"{num(feats['members'])} members")
    harvest = _d(ev.get("harvest"))
    if harvest:
        since = base.get("founded_ts")
        out.append(
            f"harvested so far: {num(harvest.get('output_tokens'))} output tokens in "
            f"{num(harvest.get('requests'))} requests (running total"
            + (f" since {utc(since)})" if since else ")")
        )
    return out
