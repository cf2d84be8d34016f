"""labelled_keys (cluster_keys returns its keys) must give the keys the reference below names
and exactly what key_label makes of them (routing and the swarm view read its labels instead
of formatting their own), and the swarm view built from its link labels must equal the one
built from the event."""

from __future__ import annotations

import itertools

from detectors.cohort import LINK_KINDS, account_view
from detectors.events import Event
from detectors.keys import (
    LINK_KEY_KINDS,
    Key,
    cluster_keys,
    key_label,
    key_labels,
    labelled_keys,
    net_prefix,
)
from detectors.windows import AccountWindow

_IPS = (None, "203.0.113.7", "2001:db8:1:2::5", "nodots", "not:an:ip", "10.0.0")
_ASNS = (None, 0, 64500)
_TEXT = (None, "x", "ua/1 (linux)")
_CREATED = (None, 0.0, 3700.5, 1.7e9)


def _reference_keys(ev: Event) -> list[Key]:
    """The keys, spelt out field by field (the generic form the fast builder unrolls)."""
    out: list[Key] = []
    if ev.ip is not None:
        if ":" not in ev.ip:
            head, sep, _ = ev.ip.rpartition(".")
            if sep:
                out.append(("ip24", head))
        elif (p := net_prefix(ev.ip)) is not None:
            out.append(("ip24", p))
    for kind, v in (("asn", ev.asn), ("ua", ev.user_agent), ("pay", ev.payment_fingerprint),
                    ("org", ev.org_id), ("sys", ev.system_prompt_fingerprint)):
        if v is not None:
            out.append((kind, v))
    if ev.account_created_ts is not None:
        out.append(("cohort", int(ev.account_created_ts // 3600), ev.asn))
    return out


def _events() -> list[Event]:
    out = []
    for i, (ip, asn, ua, pay, org, sys_fp, created) in enumerate(itertools.product(
        _IPS, _ASNS, _TEXT, _TEXT, _TEXT, _TEXT, _CREATED
    )):
        out.append(Event(f"a{i}", 90000.0, "m", 1, 1, ip=ip, asn=asn, user_agent=ua,
                         payment_fingerprint=pay, org_id=org, system_prompt_fingerprint=sys_fp,
                         account_created_ts=created))
    return out


def test_labelled_keys_match_cluster_keys_and_their_labels() -> None:
    for ev in _events():
        keys = _reference_keys(ev)
        lk = labelled_keys(ev)
        assert lk.keys == keys
        assert cluster_keys(ev) == keys
        assert [type(v) for k in lk.keys for v in k] == [type(v) for k in keys for v in k]
        assert lk.labels == [key_label(k) for k in keys]
        assert lk.links == [key_label(k) for k in keys if k[0] in LINK_KINDS]
        assert key_labels(ev) == (lk.labels, lk.links)


def test_link_kinds_in_step_with_the_swarm_detector() -> None:
    # tplb (prompt bands) are added by account_view, never a cluster key.
    assert LINK_KINDS - {"tplb"} == LINK_KEY_KINDS


def test_account_view_from_shared_links_is_the_same() -> None:
    for ev in _events()[::7]:
        acc = AccountWindow()
        acc.add(ev)
        acc.fps = ["00000000000000ff", "zz"]
        own = account_view(ev.account_id, acc, 60.0)
        shared = account_view(ev.account_id, acc, 60.0, labelled_keys(ev).links)
        assert own == shared  # a NaN age is the same math.nan object in both
