"""Draw dashboard panels as SVG from a live Prometheus, for docs without a Grafana server.

    python grafana/render_panels.py --prometheus http://127.0.0.1:9090 --minutes 5 --out DIR

Grafana is not in Debian's archive, so the pictures in docs/oncall.md are drawn by this
script: each panel's queries (Grafana variables substituted as in the tests) are run
through Prometheus' HTTP API and drawn as a plain line chart (time series), a number (stat)
or a text table (table). It is a sketch of what Grafana shows, not Grafana's rendering.
Standard library only.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"
VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m", "$instance": ".*",
        "$rank": "1"}
COLORS = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9"]
W, H, PAD_L, PAD_B, PAD_T = 560, 240, 60, 28, 30
# Grafana's named colours (the ones the dashboards use for severity) as it draws them.
NAMED = {"red": "#f2495c", "orange": "#ff9830", "blue": "#5794f2", "green": "#73bf69"}


def _colour(name: str) -> str:
    return NAMED.get(name, name)


def _fixed_colours(panel: dict[str, Any]) -> dict[str, str]:
    """Series name → colour, from the panel's by-name overrides with a fixed colour."""
    out = {}
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"]["id"] != "byName":
            continue
        for prop in o["properties"]:
            if prop["id"] == "color" and prop["value"].get("mode") == "fixed":
                out[o["matcher"]["options"]] = _colour(prop["value"]["fixedColor"])
    return out


def _mapped(mappings: list[dict[str, Any]], value: str) -> tuple[str, str] | None:
    """(text, colour) of a value mapping that matches ``value``, as Grafana shows it."""
    for m in mappings:
        if m.get("type") != "value":
            continue
        for key, r in m.get("options", {}).items():
            try:
                hit = key == value or float(key) == float(value)
            except ValueError:
                hit = False
            if hit:
                return r.get("text") or value, _colour(r.get("color") or "#d8d9da")
    return None


def _threshold_colour(panel: dict[str, Any], v: float) -> str | None:
    """The colour of the highest threshold step at or below ``v`` (Grafana's rule)."""
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps")
    colour = None
    for st in steps or []:
        if st.get("value") is None or v >= float(st["value"]):
            colour = _colour(st["color"])
    return colour


def _by_name_mappings(panel: dict[str, Any], name: str) -> list[dict[str, Any]]:
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"] == {"id": "byName", "options": name}:
            for prop in o["properties"]:
                if prop["id"] == "mappings":
                    return prop["value"]  # type: ignore[no-any-return]
    return []


def substitute(expr: str) -> str:
    for name in sorted(VARS, key=len, reverse=True):
        expr = expr.replace(name, VARS[name])
    return expr


def _get(base: str, path: str, **params: Any) -> list[dict[str, Any]]:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    if body.get("status") != "success":
        raise RuntimeError(f"{params.get('query')}: {body.get('error')}")
    return body["data"]["result"]


def _legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt or fmt == "__auto":
        return ", ".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return substitute(out)


def _fmt(v: float, unit: str) -> str:
    if math.isnan(v):
        return "NaN"
    if unit == "percentunit":
        return f"{v * 100:.1f}%"
    suffix = {"s": " s", "ops": "/s", "reqps": "/s"}.get(unit, "")
    for div, sym in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.1f}{sym}{suffix}"
    return f"{v:.3g}{suffix}"


def _frame(title: str, body: str, width: int = W) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" '
        f'font-family="sans-serif" font-size="11">'
        f'<rect width="{width}" height="{H}" fill="#181b1f"/>'
        f'<text x="8" y="18" fill="#d8d9da" font-size="13">{html.escape(title)}</text>'
        f"{body}</svg>\n"
    )


def timeseries_svg(panel: dict[str, Any], base: str, start: float, end: float) -> str:
    step = max(1.0, (end - start) / 200)
    series = []
    for t in panel["targets"]:
        for r in _get(base, "/api/v1/query_range", query=substitute(t["expr"]),
                      start=start, end=end, step=step):
            pts = [(float(ts), float(v)) for ts, v in r["values"] if math.isfinite(float(v))]
            if pts:
                series.append((_legend(t.get("legendFormat", ""), r["metric"]), pts))
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    ys = [v for _, pts in series for _, v in pts] or [0.0]
    lo, hi = min(0.0, min(ys)), max(ys)
    hi = hi if hi > lo else lo + 1
    pw, ph = W - PAD_L - 10, H - PAD_T - PAD_B - 16 * min(len(series), 3)

    def x(ts: float) -> float:
        return PAD_L + (ts - start) / max(end - start, 1) * pw

    def y(v: float) -> float:
        return PAD_T + ph - (v - lo) / (hi - lo) * ph

    body = [f'<line x1="{PAD_L}" y1="{PAD_T + ph}" x2="{PAD_L + pw}" y2="{PAD_T + ph}" '
            'stroke="#444"/>']
    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        body.append(f'<text x="{PAD_L - 4}" y="{y(v) + 4:.1f}" fill="#aaa" '
                    f'text-anchor="end">{html.escape(_fmt(v, unit))}</text>')
    for sec, anchor in ((start, "start"), (end, "end")):
        label = time.strftime("%H:%M:%S", time.gmtime(sec))
        body.append(f'<text x="{x(sec):.1f}" y="{PAD_T + ph + 14}" fill="#aaa" '
                    f'text-anchor="{anchor}">{label} UTC</text>')
    fixed = _fixed_colours(panel)
    for i, (name, pts) in enumerate(series):
        c = fixed.get(name, COLORS[i % len(COLORS)])
        path = " ".join(f"{x(ts):.1f},{y(v):.1f}" for ts, v in pts)
        body.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{path}"/>')
        if i < 3:
            ly = PAD_T + ph + 30 + 14 * i
            body.append(f'<rect x="{PAD_L}" y="{ly - 8}" width="10" height="3" fill="{c}"/>'
                        f'<text x="{PAD_L + 14}" y="{ly}" fill="#ccc">{html.escape(name)}</text>')
    if not series:
        body.append(f'<text x="{W / 2}" y="{H / 2}" fill="#888" text-anchor="middle">'
                    "No data</text>")
    return _frame(panel["title"], "".join(body))


def stat_svg(panel: dict[str, Any], base: str, end: float) -> str:
    t = panel["targets"][0]
    res = _get(base, "/api/v1/query", query=substitute(t["expr"]), time=end)
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    colour = NAMED["green"]
    if panel.get("options", {}).get("textMode") == "name":
        text = ", ".join(_legend(t.get("legendFormat", ""), r["metric"]) for r in res)
    else:
        text = _fmt(float(res[0]["value"][1]), unit) if res else "No data"
        hit = _mapped(panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []),
                      res[0]["value"][1]) if res else None
        if hit:
            text, colour = hit
        elif res:
            colour = _threshold_colour(panel, float(res[0]["value"][1])) or colour
    return _frame(panel["title"], f'<text x="{W / 2}" y="{H / 2 + 14}" fill="{colour}" '
                  f'font-size="{40 if len(text) < 14 else 16}" text-anchor="middle">'
                  f"{html.escape(text)}</text>")


def table_svg(panel: dict[str, Any], base: str, end: float) -> str:
    rows: dict[str, dict[str, str]] = {}
    cols = ["rank", "alert_id", "detector", "severity"]
    for t in panel["targets"]:
        for r in _get(base, "/api/v1/query", query=substitute(t["expr"]), time=end):
            row = rows.setdefault(r["metric"].get("rank", "?"), {})
            if t["refId"] == "A":
                row.update({k: r["metric"].get(k, "") for k in cols})
            else:
                row[t["refId"]] = _fmt(float(r["value"][1]), "s" if t["refId"] == "E" else "")
    header = ["Rank", "Alert id", "Detector", "Severity", "Score/thr", "Members",
              "Output tokens", "Flagged for"]
    body, y0 = [], 44
    xs = [8, 46, 206, 336, 410, 480, 550, 650]
    for i, h in enumerate(header):
        body.append(f'<text x="{xs[i]}" y="{y0}" fill="#aaa">{html.escape(h)}</text>')
    severity = _by_name_mappings(panel, "Severity")
    for j, rank in enumerate(sorted(rows, key=lambda r: int(r) if r.isdigit() else 99)):
        row = rows[rank]
        vals = [row.get(c, "") for c in cols] + [row.get(c, "") for c in "BCDE"]
        for i, v in enumerate(vals):
            fill = "#d8d9da"
            if i == 3 and (hit := _mapped(severity, str(v))):
                v, fill = hit
            body.append(f'<text x="{xs[i]}" y="{y0 + 18 * (j + 1)}" fill="{fill}">'
                        f"{html.escape(str(v)[:22])}</text>")
    return _frame(panel["title"], "".join(body), width=760)


def render(dashboard: dict[str, Any], titles: list[str], base: str, start: float,
           end: float) -> dict[str, str]:
    """Panel title → SVG, for the panels of ``dashboard`` named in ``titles``."""
    out = {}
    for p in dashboard["panels"]:
        if p.get("title") not in titles or p["type"] == "row":
            continue
        if p["type"] == "timeseries":
            out[p["title"]] = timeseries_svg(p, base, start, end)
        elif p["type"] == "stat":
            out[p["title"]] = stat_svg(p, base, end)
        elif p["type"] == "table":
            out[p["title"]] = table_svg(p, base, end)
    return out


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--minutes", type=float, default=5.0, help="time range ending now")
    ap.add_argument("--out", type=Path, required=True, help="directory for the SVG files")
    ap.add_argument("--dashboard", default="overview", help="dashboard file stem")
    ap.add_argument("titles", nargs="+", help="panel titles to draw")
    args = ap.parse_args(argv)
    d = json.loads((DASHBOARDS / f"{args.dashboard}.json").read_text())
    end = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    for title, svg in render(d, args.titles, args.prometheus, end - args.minutes * 60,
                             end).items():
        (args.out / f"{args.dashboard}-{slug(title)}.svg").write_text(svg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
