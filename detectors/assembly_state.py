"""Campaign assembly's state as plain JSON-ready data, and back, checked field by field.

What a snapshot holds: the key baselines, the campaigns (ids, keys, members, harvest totals,
model shares), the template index, the current cluster window's per-key suspects, and the
assembly's event-time position (per key partition watermarks, the boundary). Windows not
assembled yet are not in it: they are read again from the windows topic, from the offset
stored beside the snapshot. Restoring only parses data -- no pickle, nothing is evaluated --
and anything that does not fit the schema raises :class:`StateFormatError`.

Examples
--------
>>> from detectors.assembly import CampaignAssembly, Candidate
>>> asm = CampaignAssembly(window_s=60, cluster_min_members=5)
>>> for minute in range(3):
...     susp = [{"a": f"h{i}", "w": minute * 60.0, "k": [["pay", "card-1"]], "x": 0.8,
...              "y": True, "r": True, "n": 1, "o": 2000, "g": None, "m": None, "f": []}
...             for i in range(10)]
...     _ = asm.add({"t": "wt", "w": minute * 60.0, "p": 0, "keys": [], "susp": susp})
...     asm.watermark(0, minute * 60.0 + 60)
...     _ = asm.close()
>>> twin = load(CampaignAssembly(window_s=60, cluster_min_members=5), dump(asm))
>>> sorted(twin.clusters.campaigns) == sorted(asm.clusters.campaigns)
True
>>> load(CampaignAssembly(), {"v": 99})
Traceback (most recent call last):
...
detectors.assembly_state.StateFormatError: unknown campaign state version 99
"""

from __future__ import annotations

import math
from typing import Any

from detectors.assembly import CampaignAssembly, Candidate
from detectors.campaigns import Campaign
from detectors.clusters import canonical_key
from detectors.keyagg import KeyAgg, KeyBaseline
from detectors.keys import KIND_NAMES, STRONG_KINDS, Key
from detectors.summary import AccountSummary, SummaryFormatError

__all__ = ["VERSION", "StateFormatError", "dump", "load"]

VERSION = 1


class StateFormatError(ValueError):
    """A campaign-state snapshot that is not in the current format."""


# -- encoding --------------------------------------------------------------------------------


def _fl(v: float) -> float | str:
    return v if math.isfinite(v) else repr(v)


def _k(k: Key) -> list[Any]:
    return list(k)


def _agg(a: KeyAgg) -> dict[str, Any]:
    return {"m": [[acct, y, o] for acct, (y, o) in a.members.items()], "y": a.young,
            "r": a.regular, "s": a.susp_aw, "n": a.requests, "o": a.output_tokens,
            "g": [[g, c] for g, c in a.orgs.items()], "sy": a.synced,
            "h": sorted(a.harvesters or ())}


def _campaign(c: Campaign) -> dict[str, Any]:
    return {
        "id": c.id, "f": c.founded_ts, "keys": [[_k(k), n] for k, n in c.keys.items()],
        "m": [[a, o] for a, o in c.members.items()], "y": sorted(c.young),
        "g": [[g, n] for g, n in c.orgs.items()], "la": _fl(c.last_active),
        "rq": c.requests, "ot": c.output_tokens, "z": _fl(c.max_z),
        "wm": c.window_members, "ws": c.window_share, "rg": c.regular,
        "mn": c.models_now, "ms": c.model_share, "mw": c.model_windows, "mf": c.model_first,
        "pv": c.pivot, "pu": _fl(c.pivot_until), "fg": c.groups,
    }


def dump(asm: CampaignAssembly) -> dict[str, Any]:
    """Everything :func:`load` needs, JSON-ready (call it between windows)."""
    cd, book, tpl = asm.clusters, asm.clusters.book, asm.templates
    return {
        "v": VERSION,
        "asm": {"b": _fl(asm.boundary), "parts": asm.parts,
                "marks": [[p, _fl(b)] for p, b in asm._marks.items()],
                "cand": [s.to_wire() for s in asm._candidates.values()],
                "n": [asm.duplicates, asm.late, asm.rejected, asm.windows]},
        "cd": {
            "cw": None if cd._cw_start is None else cd._cw_start,
            "tot": cd._tot,
            "agg": [[_k(k), _agg(a)] for k, a in cd._agg.items()],
            # A set: sorted so that the same state always makes the same snapshot (its
            # iteration order follows the process's string hash seed).
            "flag": [_k(k) for k in sorted(cd._flagged_now, key=repr)],
            "ak": [[a, [_k(k) for k in ks]] for a, ks in cd._acct_keys.items()],
            "base": [[_k(k), _fl(b.ew_susp), b.windows, _fl(b.last_seen),
                      [[a, y, o] for a, (y, o) in b.recent.items()]]
                     for k, b in cd._keys.items()],
        },
        "book": {
            "c": [_campaign(c) for c in book.campaigns.values()],
            "kc": [[_k(k), cid] for k, cid in book.key_campaign.items()],
            "ac": book.acct_campaign,
            "mg": book._merged,
        },
        "tpl": {
            "ix": [[bk, gid, fp] for bk, (gid, fp) in tpl._index.items()],
            "bands": tpl._bands,
            "seen": {g: _fl(t) for g, t in tpl._last_seen.items()},
            "pend": [[bk, [[fp, a] for fp, a in tpl.candidates(bk)]] for bk in tpl._pending],
            "dirty": sorted(tpl._dirty),
        },
    }


# -- decoding, every field checked -------------------------------------------------------------


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise StateFormatError(f"campaign state: {what}")


def _num(v: Any) -> float:
    if isinstance(v, str) and v in ("inf", "-inf", "nan"):
        return float(v)
    _need(isinstance(v, int | float) and not isinstance(v, bool), "a number is not a number")
    return float(v)


def _int(v: Any) -> int:
    _need(isinstance(v, int) and not isinstance(v, bool), "a count is not an integer")
    return int(v)


def _str(v: Any) -> str:
    _need(isinstance(v, str) and len(v) <= 1024, "an id is not a string")
    return str(v)


def _ostr(v: Any) -> str | None:
    return None if v is None else _str(v)


def _bool(v: Any) -> bool:
    _need(isinstance(v, bool), "a flag is not a boolean")
    return bool(v)


def _list(v: Any) -> list[Any]:
    _need(isinstance(v, list), "a list is not a list")
    return list(v)


def _dict(v: Any) -> dict[str, Any]:
    _need(isinstance(v, dict), "an object is not an object")
    return dict(v)


def _key(v: Any) -> Key:
    _need(
        isinstance(v, list) and 2 <= len(v) <= 3 and v[0] in KIND_NAMES
        and all(x is None or (isinstance(x, str | int) and not isinstance(x, bool)) for x in v[1:]),
        "a key is not [kind, value(, value)]",
    )
    return tuple(v)


def _counts(v: Any) -> dict[str, int]:
    return {_str(k): _int(n) for k, n in _dict(v).items()}


def _shares(v: Any) -> dict[str, float]:
    return {_str(k): _num(n) for k, n in _dict(v).items()}


def _members(v: Any) -> dict[str, tuple[bool, str | None]]:
    out = {}
    for e in _list(v):
        a, y, o = _list(e)
        out[_str(a)] = (_bool(y), _ostr(o))
    return out


def _load_agg(k: Key, d: dict[str, Any]) -> KeyAgg:
    a = KeyAgg(k)
    a.members = _members(d["m"])
    a.young, a.regular, a.susp_aw = _int(d["y"]), _int(d["r"]), _int(d["s"])
    a.requests, a.output_tokens, a.synced = _int(d["n"]), _int(d["o"]), _int(d["sy"])
    # Absent in snapshots written before harvesters were counted.
    a.harvesters = {_str(x) for x in _list(d.get("h", []))} or None
    # Checked, but derived from the members now (KeyAgg.orgs).
    for g, n in map(_list, _list(d["g"])):
        _ostr(g), _int(n)
    return a


def _load_campaign(d: dict[str, Any]) -> Campaign:
    pivot = d["pv"]
    _need(pivot is None or isinstance(pivot, dict), "pivot is not an object")
    return Campaign(
        id=_str(d["id"]), founded_ts=_num(d["f"]),
        keys={_key(k): _int(n) for k, n in map(_list, _list(d["keys"]))},
        members={_str(a): _ostr(o) for a, o in map(_list, _list(d["m"]))},
        young={_str(a) for a in _list(d["y"])},
        orgs={_ostr(g): _int(n) for g, n in map(_list, _list(d["g"]))},
        last_active=_num(d["la"]), requests=_int(d["rq"]), output_tokens=_int(d["ot"]),
        max_z=_num(d["z"]), window_members=_int(d["wm"]), window_share=_num(d["ws"]),
        regular=_int(d["rg"]), models_now=_counts(d["mn"]), model_share=_shares(d["ms"]),
        model_windows=_int(d["mw"]), model_first=_shares(d["mf"]), pivot=pivot,
        pivot_until=_num(d["pu"]),
        # Absent in snapshots written before groups were folded into campaigns.
        groups=_counts(d.get("fg", {})),
    )


def load(asm: CampaignAssembly, state: Any) -> CampaignAssembly:
    """Fill a fresh ``asm`` (built from the configuration) with a :func:`dump` snapshot;
    raise :class:`StateFormatError` if it does not fit, leaving ``asm`` unusable."""
    s = _dict(state)
    if s.get("v") != VERSION:
        raise StateFormatError(f"unknown campaign state version {s.get('v')!r}")
    try:
        a, c, b, t = _dict(s["asm"]), _dict(s["cd"]), _dict(s["book"]), _dict(s["tpl"])
        asm.boundary = _num(a["b"])
        asm.parts = _int(a["parts"])
        asm._marks = {_int(p): _num(x) for p, x in map(_list, _list(a["marks"]))}
        # Snapshots before Candidate held whole summaries: the same fields are read.
        cands = [Candidate.of(AccountSummary.from_wire(x)) for x in _list(a["cand"])]
        asm._candidates = {x.account_id: x for x in cands}
        asm.duplicates, asm.late, asm.rejected, asm.windows = map(_int, _list(a["n"]))
        cd = asm.clusters
        cd._cw_start = None if c["cw"] is None else _num(c["cw"])
        cd._tot = _counts(c["tot"])
        cd._agg = {}
        for k, v in map(_list, _list(c["agg"])):
            key = canonical_key(_key(k))
            cd._agg[key] = _load_agg(key, _dict(v))
        cd._flagged_now = {_key(k) for k in _list(c["flag"])}
        # Only strong keys are kept, as the aggregates' tuples; snapshots written before
        # hold every key (the others never linked anything).
        cd._acct_keys = {}
        for acct, ks in map(_list, _list(c["ak"])):
            keys = [_key(k) for k in _list(ks)]
            cd._acct_keys[_str(acct)] = tuple(
                agg.key if (agg := cd._agg.get(k)) is not None else canonical_key(k)
                for k in keys if k[0] in STRONG_KINDS)
        cd._keys = {}
        for k, ew, n, last, recent in map(_list, _list(c["base"])):
            kb = cd._keys[_key(k)] = KeyBaseline()
            kb.ew_susp, kb.windows, kb.last_seen = _num(ew), _int(n), _num(last)
            kb.recent = _members(recent)
        book = cd.book
        book.campaigns = {x.id: x for x in (_load_campaign(_dict(d)) for d in _list(b["c"]))}
        book.key_campaign = {_key(k): _str(cid) for k, cid in map(_list, _list(b["kc"]))}
        book.acct_campaign = {_str(k): _str(v) for k, v in _dict(b["ac"]).items()}
        book._merged = {_str(k): _str(v) for k, v in _dict(b["mg"]).items()}
        cd._group_campaign = {g: x.id for x in book.campaigns.values() for g in x.groups}
        tpl = asm.templates
        tpl._index = {_int(bk): (_str(g), _int(fp)) for bk, g, fp in map(_list, _list(t["ix"]))}
        tpl._bands = _counts(t["bands"])
        tpl._last_seen = {_str(g): _num(x) for g, x in _dict(t["seen"]).items()}
        tpl._pending = {_int(bk): [(_int(fp), _str(acct)) for fp, acct in map(_list, _list(xs))]
                        for bk, xs in map(_list, _list(t["pend"]))}
        tpl._dirty = {_int(x) for x in _list(t["dirty"])}
        for cid in list(book.key_campaign.values()) + list(book.acct_campaign.values()):
            # Every id resolves to a live campaign within a bounded walk: a forged forward
            # would otherwise loop or raise later, in the middle of a window.
            for _ in range(len(book._merged) + 1):
                if cid in book.campaigns:
                    break
                cid = book._merged[cid]
            _need(cid in book.campaigns, "a merged campaign id does not resolve")
    except StateFormatError:
        raise
    except (KeyError, TypeError, ValueError, SummaryFormatError) as err:
        raise StateFormatError(f"campaign state: {type(err).__name__}: {err}") from None
    return asm
