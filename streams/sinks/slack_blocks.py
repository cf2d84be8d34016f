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
from streams.sinks.envelope import Envelope, console_link

__all__ = ["MAX_VALUE", "code", "esc", "fit", "link", "now_vs_typical", "plain", "render"]

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


# Typical values the detectors record under another name than the feature they describe:
# baseline key -> (feature key, label).
_TYPICAL_ALIASES: Final = {
    "tier_median_hourly_requests": ("hourly_requests", "hourly requests (tier median)"),
    "usual_harvest_like_per_hour": ("harvest_like_last_hour", "harvest-like requests per hour"),
}
_NOW_VS_TYPICAL = 4


def _ratio(now: Any, typical: Any) -> str:
    ok = isinstance(now, int | float) and isinstance(typical, int | float)
    if not ok or not math.isfinite(now) or not math.isfinite(typical) or typical <= 0:
        return ""
    return f" ({_num(now / typical)}x)"


def now_vs_typical(evidence: Any) -> list[tuple[str, Any, Any]]:
    """``(signal, now, typical)`` for an account alert: each value of the window
    (``evidence.features``) that the detector compared with a typical one
    (``evidence.baseline``), strongest signal first, at most four.

    >>> ev = {"features": {"requests": 160.0, "hourly_requests": 90.0},
    ...       "baseline": {"requests": 8.0, "tier_median_hourly_requests": 3.0},
    ...       "signals": [{"signal": "requests", "score": 9}]}
    >>> now_vs_typical(ev)
    [('requests', 160.0, 8.0), ('hourly requests (tier median)', 90.0, 3.0)]
    """
    ev = _dict(evidence)
    feats, base = _dict(ev.get("features")), _dict(ev.get("baseline"))
    pairs: dict[str, tuple[str, Any, Any]] = {}
    for key, typical in base.items():
        feat, label = _TYPICAL_ALIASES.get(str(key), (str(key), str(key)))
        if feat in feats:
            pairs[feat] = (label, feats[feat], typical)
    ranked = [str(_dict(s).get("signal")) for s in _list(ev.get("signals"))]
    order = [k for k in ranked if k in pairs] + [k for k in pairs if k not in ranked]
    return [pairs[k] for k in order[:_NOW_VS_TYPICAL]]


def _evidence_lines(change: Mapping[str, Any]) -> list[str]:
    ev = _dict(change.get("evidence"))
    feats = _dict(ev.get("features"))
    base = _dict(ev.get("baseline"))
    lines = []
    compared = now_vs_typical(ev) if change.get("entity_type") == "account" else []
    if compared:
        lines.append("• *now vs typical*: " + "; ".join(
            f"{code(name, 64)} {_num(now)} vs {_num(typ)}{_ratio(now, typ)}"
            for name, now, typ in compared
        ))
    for s in _list(ev.get("signals"))[:_SIGNALS]:
        s = _dict(s)
        name = str(s.get("signal"))
        line = f"• {code(name)}: score {_num(s.get('score'))}"
        if name in feats and not compared:
            line += f" — now {_num(feats[name])}"
            if name in base:
                line += f", typical {_num(base[name])}"
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
        # A running total over the campaign's life, not this window's amount: say so, and
        # since when (the campaign's founding time, when the detector recorded it).
        founded = base.get("founded_ts")
        since = f" (since {_utc(founded)} UTC)" if founded is not None else ""
        lines.append(
            f"• *harvested since the campaign opened*{since}: "
            + fit(
                (f"{_num(v)} {esc(str(k).replace('_', ' '))}" for k, v in harvest.items()),
                ", ",
                _FIELD_MAX,
            )
        )
    return lines


def _duration(seconds: Any) -> str:
    """``3d 4h``, ``2h 05m``, ``7m``: how long an alert has been open.

    >>> _duration(93784), _duration(7500), _duration(59), _duration("x")
    ('1d 2h', '2h 05m', '0m', '?')
    """
    try:
        s = max(0, int(float(seconds)))
    except (TypeError, ValueError, OverflowError):
        return "?"
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    if d:
        return f"{d}d {h}h"
    return f"{h}h {rem // 60:02d}m" if h else f"{rem // 60}m"


def _open_since(c: Mapping[str, Any], resolved: bool) -> str:
    """When the alert opened (``opened_ts``) and for how long, up to this change's time."""
    opened = c.get("opened_ts")
    if opened is None:
        return ""
    span = _duration(_float(c.get("ts"), _float(opened)) - _float(opened))
    verb = "was open" if resolved else "open for"
    return f"*Open since (UTC)*\n{_utc(opened)} ({verb} {span})"


def _account_facts(c: Mapping[str, Any]) -> str:
    """Org, tier and account age of an account alert, those the record carries."""
    ev = _dict(c.get("evidence"))
    feats, profile = _dict(ev.get("features")), _dict(ev.get("profile"))
    parts = []
    org = c.get("org_id") or ev.get("org_id")
    if org:
        parts.append(f"org {code(org, 64)}")
    tier = c.get("tier") or ev.get("tier")
    if tier:
        parts.append(f"tier {code(tier, 32)}")
    age = feats.get("account_age_days")
    if not isinstance(age, int | float) or not math.isfinite(age):
        age = profile.get("account_age_days")
    if isinstance(age, int | float) and math.isfinite(age):
        parts.append(f"age {_num(age)} days")
    return ("*Account*\n" + ", ".join(parts)) if parts else ""


def _float(v: Any, default: float = 0.0) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return default
    return f if math.isfinite(f) else default


def render(
    alerts: Mapping[str, Envelope],
    open_detectors: set[str],
    *,
    folded_accounts: int = 0,
    console_url: str | None = None,
) -> dict[str, Any]:
    """The chat payload (``text`` fallback + ``blocks``) for one entity's alerts.

    ``alerts`` maps detector to its latest envelope; ``open_detectors`` are those still open
    (none = the group is resolved); ``folded_accounts`` counts member accounts whose own
    alerts were folded into this cluster message; ``console_url`` is ``console.public_url``,
    the base of the link to each alert's console page (none when unset). Every block stays
    within Slack's limits whatever the alert holds (see the module docstring).
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
    else:
        fields.append(_account_facts(c))
    fields.insert(2, _open_since(c, resolved))
    fields = [f for f in fields if f]
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
    # No runbook base configured: no runbook link (a relative path is not clickable).
    links = [link(e.runbook_url, f"Runbook: {plain(e.detector, 64)}") for e in envs
             if e.runbook_url]
    links.insert(0, link(top.dashboard_url, "Grafana dashboard"))
    page = console_link(console_url, top.alert_id)
    if page:
        links.insert(0, link(page, "Open in the console"))
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
