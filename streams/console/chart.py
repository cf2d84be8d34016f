"""A small inline SVG chart of an alert's timeline: score, members and harvest over time.

Three stacked step lines sharing the time axis, each scaled to its own maximum (they have
different units); the numbers are in the table under it. Only numbers and fixed labels go
into the SVG, so it needs no escaping beyond the times in the tooltips.

>>> svg = timeline_svg([{"ts": 0, "score": 5, "member_count": 10, "harvest_tokens": 1e5},
...                     {"ts": 60, "score": 8, "member_count": 20, "harvest_tokens": 3e5}])
>>> svg.startswith("<svg") and svg.count("<polyline") == 3
True
>>> timeline_svg([])
''
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from streams.store.words import num, utc

__all__ = ["timeline_svg"]

W, ROW, PAD_L, PAD_R = 640, 56, 120, 16
SERIES = (("score", "score", "#c0392b"), ("member_count", "members", "#2c6fbb"),
          ("harvest_tokens", "harvest (tokens)", "#7b4fa0"))


def timeline_svg(changes: Sequence[Mapping[str, Any]]) -> str:
    rows = [(k, label, colour) for k, label, colour in SERIES
            if any(isinstance(c.get(k), int | float) for c in changes)]
    if not changes or not rows:
        return ""
    t0 = float(changes[0]["ts"])
    t1 = max(float(changes[-1]["ts"]), t0 + 1)
    span = W - PAD_L - PAD_R
    h = ROW * len(rows) + 20
    out = [f'<svg class="timeline" viewBox="0 0 {W} {h}" width="{W}" height="{h}" '
           'role="img" aria-label="score, members and harvest over time" '
           'xmlns="http://www.w3.org/2000/svg">']
    for i, (key, label, colour) in enumerate(rows):
        top = i * ROW + 6
        vals = [(float(c["ts"]), c.get(key)) for c in changes]
        vals = [(t, float(v)) for t, v in vals if isinstance(v, int | float)]
        hi = max(v for _, v in vals) or 1.0
        pts = []
        for j, (t, v) in enumerate(vals):
            x = PAD_L + span * (t - t0) / (t1 - t0)
            y = top + (ROW - 16) * (1 - v / hi)
            if j:
                pts.append(f"{x:.1f},{pts[-1].split(',')[1]}")  # a step: hold, then jump
            pts.append(f"{x:.1f},{y:.1f}")
        last_y = pts[-1].split(",")[1]
        pts.append(f"{W - PAD_R:.1f},{last_y}")
        out.append(f'<text x="4" y="{top + 14}" font-size="12" fill="#333">{label}</text>')
        out.append(f'<text x="4" y="{top + 30}" font-size="12" fill="{colour}">'
                   f'max {escape(num(hi))}</text>')
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{top + ROW - 10}" '
                   f'y2="{top + ROW - 10}" stroke="#ddd"/>')
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                   f'points="{" ".join(pts)}"/>')
        for t, v in vals:
            x = PAD_L + span * (t - t0) / (t1 - t0)
            y = top + (ROW - 16) * (1 - v / hi)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                       f'<title>{escape(utc(t))}: {escape(num(v))}</title></circle>')
    out.append(f'<text x="{PAD_L}" y="{h - 4}" font-size="11" fill="#666">'
               f'{escape(utc(t0))}</text>')
    out.append(f'<text x="{W - PAD_R}" y="{h - 4}" font-size="11" fill="#666" '
               f'text-anchor="end">{escape(utc(t1))}</text>')
    out.append("</svg>")
    return "\n".join(out)
