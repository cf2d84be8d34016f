"""Block Kit rendering of one Slack alert group: everything on-call needs in one glance.

Text from alerts (entity ids, member ids, detector names, evidence keys) is untrusted: anyone
who can write to ``alerts`` chooses it. Slack mrkdwn has no escape character, so:

- :func:`code` puts a value in an inline code span, where formatting does not apply; a
  backtick in the value (which would close the span) becomes U+02CB (a lookalike that
  closes nothing) and control characters
  (newlines, terminal escapes, bidi overrides) are shown escaped, so the value stays one
  inert piece of one line;
- :func:`esc` is for text outside a code span: ``*``, ``~`` and backticks become lookalikes,
  ``_`` too where it could open or close italics (``snake_case`` stays readable), and ``://``
  is defanged so no bare URL is linked;
- both escape ``&``, ``<`` and ``>`` (``<!channel>`` would ping a channel, ``<url|label>``
  would disguise a link) and cap the value at :data:`MAX_VALUE` characters, so one 2,000
  character id cannot push a block past Slack's limits and get the whole message refused.

Examples
--------
>>> esc("<!channel> & co")
'&lt;!channel&gt; &amp; co'
>>> out = esc("*bold* _it_ ~s~ `x` see https://evil")
>>> [c for c in "*_~`" if c in out], out.endswith("see https[:]//evil")
([], True)
>>> esc("account_baseline")
'account_baseline'
>>> span = code("a`*b*`\\n<https://evil|click>")
>>> span.count("`"), "\\n" in span, span[-16:]
(2, False, '/evil|click&gt;`')
>>> len(code("x" * 2000)) < 250
True
>>> link("https://g/d?a=1|x>", "Grafana")
'<https://g/d?a=1%7Cx%3E|Grafana>'
>>> fit(["aa", "bb", "cc"], ", ", 8)
'aa, bb …'
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

from detectors.findings import severity_rank
from streams.logsafe import safe
from streams.sinks.envelope import Envelope

__all__ = ["MAX_VALUE", "code", "esc", "fit", "link", "plain", "render"]

#: Characters kept of one untrusted value (an id of 2,000 characters is cut to this).
MAX_VALUE: Final = 200

_EMOJI = {"info": ":large_blue_circle:", "warning": ":warning:", "critical": ":rotating_light:"}
# Slack's limits: header 150, section text 3000, a field 2000, fallback text 40,000; a little
# margin below each so the "…" marker always fits.
_HEADER_MAX = 150
_TEXT_MAX = 2900
_FIELD_MAX = 1900
_FALLBACK_MAX = 3000
_SAMPLE = 8
_SIGNALS = 3
_SHARED = 4

_ENTITIES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# Lookalikes (written as escapes: they are meant to look like what they replace).
_GRAVE, _STAR, _TILDE, _LOW_LINE = "\u02cb", "\u2217", "\u223c", "\uff3f"
_LOOKALIKES = str.maketrans({"`": _GRAVE, "*": _STAR, "~": _TILDE})
# An underscore opens or closes italics only next to a non-word character or an end.
_LOOSE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# Characters left as they are in a link target; everything else is percent-encoded.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%-._~"


def plain(text: Any, limit: int = MAX_VALUE) -> str:
    """Untrusted text for a ``plain_text`` object or the fallback text: one line, capped,
    with ``://`` defanged so a client does not turn it into a link."""
    return safe(str(text), limit).replace("://", "[:]//")


def esc(text: Any, limit: int = MAX_VALUE) -> str:
    """Untrusted text shown as itself in mrkdwn, outside a code span (see module docs)."""
    out = plain(text, limit).translate(_ENTITIES).translate(_LOOKALIKES)
    return _LOOSE_UNDERSCORE.sub(_LOW_LINE, out)


def code(text: Any, limit: int = MAX_VALUE) -> str:
    """Untrusted text as one inline code span that nothing in it can close."""
    inner = safe(str(text), limit).translate(_ENTITIES).replace("`", _GRAVE)
    return f"`{inner or ' '}`"


def fit(parts: Iterable[str], sep: str, limit: int) -> str:
    """Join whole ``parts`` while the result stays within ``limit`` characters; a cut is
    marked with `` …``. Never cuts inside a part, so no code span, entity or link is broken."""
    out = ""
    for p in parts:
        candidate = p if not out else out + sep + p
        if len(candidate) > limit - 2:
            return (out + " …") if out else "…"
        out = candidate
    return out


def link(url: str, label: str) -> str:
    """A mrkdwn link; a URL that is not absolute http(s) is shown as text."""
    if not url.startswith(("http://", "https://")):
        return f"{esc(label)}: {code(url)}"
    return f"<{quote(url, safe=_URL_SAFE)}|{esc(label)}>"


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


def _dict(v: Any) -> Mapping[str, Any]:
    # Evidence comes from the alerts topic: a forged record may put anything anywhere.
    return v if isinstance(v, Mapping) else {}


def _list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else []


def _evidence_lines(change: Mapping[str, Any]) -> list[str]:
    ev = _dict(change.get("evidence"))
    feats = _dict(ev.get("features"))
    base = _dict(ev.get("baseline"))
    lines = []
    for s in _list(ev.get("signals"))[:_SIGNALS]:
        s = _dict(s)
        name = str(s.get("signal"))
        line = f"• {code(name)}: score {_num(s.get('score'))}"
        if name in feats:
            line += f" — now {_num(feats[name])}"
            if name in base:
                line += f", baseline {_num(base[name])}"
        lines.append(line)
    shared = [_dict(a) for a in _list(ev.get("shared_attributes"))]
    if shared:
        parts = [
            f"{esc(a.get('kind', 'key'))} {code(a.get('key'))} ({_num(a.get('members'))})"
            for a in shared[:_SHARED]
        ]
        more = f" and {len(shared) - _SHARED} more" if len(shared) > _SHARED else ""
        lines.append("• *shared by members*: " + "; ".join(parts) + more)
    harvest = _dict(ev.get("harvest"))
    if harvest:
        lines.append(
            "• *harvest in the window*: "
            + fit(
                (f"{_num(v)} {esc(str(k).replace('_', ' '))}" for k, v in harvest.items()),
                ", ",
                _FIELD_MAX,
            )
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
    alerts were folded into this cluster message. Every block stays within Slack's limits
    whatever the alert holds (see the module docstring).
    """
    envs = list(alerts.values())
    live = [e for e in envs if e.detector in open_detectors] or envs
    top = max(live, key=lambda e: (severity_rank(e.severity), float(e.change.get("score") or 0)))
    c = top.change
    resolved = not open_detectors
    severity = top.severity
    etype, eid = top.entity_type, top.entity_id
    detectors = sorted(set(top.detectors) | set(open_detectors))
    emoji = _EMOJI.get(severity, ":grey_question:")
    head = ":white_check_mark: RESOLVED" if resolved else f"{emoji} {plain(severity.upper(), 20)}"
    header = f"{head} · {plain(etype, 20)} {plain(eid, _HEADER_MAX)}"
    if len(header) > _HEADER_MAX:
        header = header[: _HEADER_MAX - 1] + "…"
    agree = f" ({len(top.detectors)} detectors agree)" if len(top.detectors) > 1 else ""
    fields = [
        f"*Entity*\n{esc(etype, 20)} {code(eid)}",
        f"*Severity*\n{esc(severity, 20)}{agree}" + (" — resolved" if resolved else ""),
        "*Detectors*\n" + fit((code(d, 64) for d in detectors), ", ", _FIELD_MAX - 20),
        f"*Score*\n{_num(c.get('score'))} (threshold {_num(c.get('threshold'))})",
        f"*Window (UTC)*\n{_utc(c.get('window_start'))} to {_utc(c.get('window_end'))[11:]}",
    ]
    if etype == "cluster":
        fields.insert(3, f"*Members*\n{_num(_int(c.get('member_count')))}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    evidence = _evidence_lines(c)
    if evidence:
        text = fit(["*Key evidence*", *evidence], "\n", _TEXT_MAX)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if etype == "cluster":
        members = _list(c.get("members"))
        total = _int(c.get("member_count")) or len(members)
        sample = fit((code(m) for m in members[:_SAMPLE]), ", ", _TEXT_MAX - 200)
        more = total - min(len(members), _SAMPLE)
        ctx = f"Members: {sample}" + (f" … (+{more:,})" if more > 0 else "")
        if folded_accounts:
            ctx += f" · {folded_accounts:,} member account alert(s) folded into this message"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": ctx}]})
    links = [link(e.runbook_url, f"Runbook: {plain(e.detector, 64)}") for e in envs]
    links.insert(0, link(top.dashboard_url, "Grafana dashboard"))
    ids = fit((code(e.alert_id) for e in envs), ", ", _TEXT_MAX)
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": fit(links, " · ", _TEXT_MAX)},
                {"type": "mrkdwn", "text": f"alert {ids}"},
            ],
        }
    )
    # The fallback text is mrkdwn too (and shown raw in notifications): escaped the same way.
    state = "RESOLVED" if resolved else esc(severity.upper(), 20)
    shown = fit((esc(d, 64) for d in detectors), ", ", 1000)
    text = (
        f"[{state}] {esc(etype, 20)} {esc(eid)}: {shown}, "
        f"score {_num(c.get('score'))} (threshold {_num(c.get('threshold'))})"
    )
    return {"text": text[:_FALLBACK_MAX], "blocks": blocks}


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError, OverflowError):
        return 0
