"""Block Kit rendering of one Slack alert group: everything on-call needs in one glance.

Text from alerts (entity ids, member ids, detector names) is untrusted: it is escaped for
Slack mrkdwn (``&``, ``<``, ``>``), so an account named ``<!channel>`` cannot ping a channel
or forge a link.

Examples
--------
>>> esc("<!channel> & co")
'&lt;!channel&gt; &amp; co'
>>> link("https://g/d?a=1|x>", "Grafana")
'<https://g/d?a=1%7Cx%3E|Grafana>'
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from detectors.findings import severity_rank
from streams.sinks.envelope import Envelope

__all__ = ["esc", "link", "render"]

_EMOJI = {"info": ":large_blue_circle:", "warning": ":warning:", "critical": ":rotating_light:"}
_HEADER_MAX = 150
_TEXT_MAX = 2900
_SAMPLE = 8
_SIGNALS = 3
_SHARED = 4


def esc(text: Any) -> str:
    """Escape untrusted text for mrkdwn."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """A mrkdwn link; a URL that is not absolute http(s) is shown as text."""
    if not url.startswith(("http://", "https://")):
        return f"{esc(label)}: `{esc(url)}`"
    safe = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe}|{esc(label)}>"


def _num(v: Any) -> str:
    if not isinstance(v, int | float) or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _utc(ts: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError):
        return "?"


def _evidence_lines(change: Mapping[str, Any]) -> list[str]:
    ev = change.get("evidence") or {}
    feats = ev.get("features") or {}
    base = ev.get("baseline") or {}
    lines = []
    for s in (ev.get("signals") or [])[:_SIGNALS]:
        name = str(s.get("signal"))
        line = f"• *{esc(name)}*: score {_num(s.get('score'))}"
        if name in feats:
            line += f" — now {_num(feats[name])}"
            if name in base:
                line += f", baseline {_num(base[name])}"
        lines.append(line)
    shared = ev.get("shared_attributes") or []
    if shared:
        parts = [
            f"{esc(a.get('kind', 'key'))} `{esc(a.get('key'))}` ({_num(a.get('members'))})"
            for a in shared[:_SHARED]
        ]
        more = f" and {len(shared) - _SHARED} more" if len(shared) > _SHARED else ""
        lines.append("• *shared by members*: " + "; ".join(parts) + more)
    harvest = ev.get("harvest") or {}
    if harvest:
        lines.append(
            "• *harvest in the window*: "
            + ", ".join(f"{_num(v)} {esc(k).replace('_', ' ')}" for k, v in harvest.items())
        )
    return lines


def render(
    alerts: Mapping[str, Envelope],
    open_detectors: set[str],
    *,
    folded_accounts: int = 0,
) -> dict[str, Any]:
    """The chat payload (``text`` fallback + ``blocks``) for one entity's alerts.

    ``alerts`` maps detector to its latest envelope; ``open_detectors`` are those still open
    (none = the group is resolved); ``folded_accounts`` counts member accounts whose own
    alerts were folded into this cluster message.
    """
    envs = list(alerts.values())
    live = [e for e in envs if e.detector in open_detectors] or envs
    top = max(live, key=lambda e: (severity_rank(e.severity), float(e.change.get("score") or 0)))
    c = top.change
    resolved = not open_detectors
    severity = top.severity
    etype, eid = top.entity_type, top.entity_id
    detectors = sorted(set(top.detectors) | set(open_detectors))
    head = ":white_check_mark: RESOLVED" if resolved else f"{_EMOJI[severity]} {severity.upper()}"
    header = f"{head} · {etype} {eid}"
    if len(header) > _HEADER_MAX:
        header = header[: _HEADER_MAX - 1] + "…"
    agree = f" ({len(top.detectors)} detectors agree)" if len(top.detectors) > 1 else ""
    fields = [
        f"*Entity*\n{esc(etype)} `{esc(eid)}`",
        f"*Severity*\n{esc(severity)}{agree}" + (" — resolved" if resolved else ""),
        f"*Detectors*\n{esc(', '.join(detectors))}",
        f"*Score*\n{_num(c.get('score'))} (threshold {_num(c.get('threshold'))})",
        f"*Window (UTC)*\n{_utc(c.get('window_start'))} to {_utc(c.get('window_end'))[11:]}",
    ]
    if etype == "cluster":
        fields.insert(3, f"*Members*\n{_num(int(c.get('member_count') or 0))}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    evidence = _evidence_lines(c)
    if evidence:
        text = "*Key evidence*\n" + "\n".join(evidence)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:_TEXT_MAX]}})
    if etype == "cluster":
        members = [str(m) for m in (c.get("members") or [])]
        total = int(c.get("member_count") or len(members))
        sample = ", ".join(f"`{esc(m)}`" for m in members[:_SAMPLE])
        more = total - min(len(members), _SAMPLE)
        ctx = f"Members: {sample}" + (f" … (+{more:,})" if more > 0 else "")
        if folded_accounts:
            ctx += f" · {folded_accounts:,} member account alert(s) folded into this message"
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": ctx[:_TEXT_MAX]}]}
        )
    links = [link(e.runbook_url, f"Runbook: {e.detector}") for e in envs]
    links.append(link(top.dashboard_url, "Grafana dashboard"))
    ids = ", ".join(f"`{esc(e.alert_id)}`" for e in envs)
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": " · ".join(links)[:_TEXT_MAX]},
                {"type": "mrkdwn", "text": f"alert {ids}"[:_TEXT_MAX]},
            ],
        }
    )
    state = "RESOLVED" if resolved else severity.upper()
    text = (
        f"[{state}] {etype} {esc(eid)}: {esc(', '.join(detectors))}, "
        f"score {_num(c.get('score'))} (threshold {_num(c.get('threshold'))})"
    )
    return {"text": text, "blocks": blocks}
