"""Coordinated clusters: many accounts that share a key and act together, while each member
looks modest.

Per account-window the pipeline calls :meth:`ClusterDetector.observe` with the account's
keys (:mod:`detectors.keys`), its extraction-likeness (0..1, from its long-run profile) and
a few flags. The detector keeps, per key, aggregates over a *cluster window* of
``cluster_windows`` account windows (10 minutes by default): account-windows, distinct
suspicious members, young and regular-timing members, requests, output tokens, and the
organisations of the members. Keys persist only once they have had a few suspicious
members; their baseline is the exponentially weighted number of suspicious members per
cluster window.

A key is flagged when, in the current cluster window, it has at least ``min_members``
distinct suspicious members, they are at least ``min_share`` of its traffic, and their count
departs from its baseline by ``min_z`` (Poisson z; a new key has baseline 0). Flagged keys
join a *campaign*: the campaign whose members they overlap, or a new one whose id derives
from the founding key, so the id stays stable while members are banned and replaced. While
any of its keys keeps showing suspicious members, the campaign emits one finding per
account window (one alert, updated as it grows) with its members, the shared attributes,
running harvest totals and ranked signals.

A key whose suspicious members are nearly all old accounts of one declared organisation is
not flagged: an organisation running evaluation harnesses on its own keys is a customer.

Examples
--------
>>> det = ClusterDetector(window_s=60, cluster_windows=10, min_members=5)
>>> findings = []
>>> for minute in range(20):
...     for i in range(10):
...         acct = f"h{minute % 6}-{i}"
...         det.observe(acct, [("pay", "card-1")], extraction=0.8, young=True, regular=True,
...                     requests=1, output_tokens=2000, org=None, models={"m": 1},
...                     ts=minute * 60.0)
...     findings += det.end_window(minute * 60.0, minute * 60.0 + 60)
>>> findings[0].detector, findings[0].severity, findings[0].member_count
('cluster_campaign', 'warning', 10)
>>> findings[-1].severity, findings[-1].member_count
('critical', 60)
>>> findings[-1].evidence["shared_attributes"][0]["key"]
'pay:card-1'
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from detectors.findings import Finding
from detectors.keys import KIND_NAMES, STRONG_KINDS, Key, key_label

__all__ = ["Campaign", "ClusterDetector"]


class _Agg:
    """One key in the current cluster window."""

    __slots__ = (
        "members",
        "orgs",
        "output_tokens",
        "regular",
        "requests",
        "susp_aw",
        "synced",
        "young",
    )

    def __init__(self) -> None:
        self.members: dict[str, tuple[bool, str | None]] = {}  # account -> (young, org)
        self.young = 0
        self.regular = 0
        self.susp_aw = 0
        self.requests = 0
        self.output_tokens = 0
        self.orgs: dict[str | None, int] = {}
        self.synced = 0  # members already folded into the key's campaign


class _KeyState:
    """A key's baseline across cluster windows (only keys that ever had suspects)."""

    __slots__ = ("ew_susp", "last_seen", "recent", "windows")

    def __init__(self) -> None:
        self.ew_susp = 0.0
        self.windows = 0
        self.last_seen = 0.0
        # Suspicious members of the last hour (account -> young), so a key flagged now
        # also names the members it had before the alarm: at one request per hour, most
        # of a campaign was seen in earlier cluster windows.
        self.recent: dict[str, tuple[bool, str | None]] = {}


@dataclass(slots=True)
class Campaign:
    """A set of flagged keys and their suspicious members, with running totals."""

    id: str
    founded_ts: float
    keys: dict[Key, int] = field(default_factory=dict)  # key -> suspicious members seen
    # Insertion-ordered members -> the org each declared (None: none), for the allowlist.
    members: dict[str, str | None] = field(default_factory=dict)
    young: set[str] = field(default_factory=set)
    orgs: dict[str | None, int] = field(default_factory=dict)  # members per declared org
    last_active: float = 0.0
    requests: int = 0
    output_tokens: int = 0
    max_z: float = 0.0
    window_members: int = 0
    window_share: float = 0.0
    regular: int = 0
    models_now: dict[str, int] = field(default_factory=dict)
    model_share: dict[str, float] = field(default_factory=dict)
    model_windows: int = 0
    model_first: dict[str, float] = field(default_factory=dict)
    pivot: dict[str, Any] | None = None
    pivot_until: float = -math.inf


class ClusterDetector:
    """Per-key cluster-window aggregates, key baselines, and campaigns.

    Parameters
    ----------
    window_s
        The account window length; cluster windows are ``cluster_windows`` of them.
    cluster_windows
        Account windows per cluster window (the horizon of per-key aggregates).
    min_members
        Distinct suspicious members a key needs in a cluster window to be flagged.
    min_share
        Share of the key's account-windows that must be suspicious (keeps a popular ASN or
        a popular tool's system prompt, with a few odd users among thousands, quiet).
    min_z
        Poisson z of the suspicious-member count over the key's baseline.
    suspicious
        Extraction-likeness at which an account counts as a suspicious member.
    critical_members, critical_young_share
        A campaign is critical from this many members when at least this share of them are
        young accounts; otherwise it is a warning.
    hold_windows
        Cluster windows a campaign stays active after its keys last showed suspects.
    critical_harvest_tokens
        Output tokens harvested by a campaign's suspicious members from which it is critical
        whatever its members' age.
    baseline_alpha
        Weight of the newest cluster window in a key's baseline.
    max_members
        Cap on the member list a finding carries.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        cluster_windows: int = 10,
        min_members: int = 6,
        min_share: float = 0.5,
        min_z: float = 4.0,
        suspicious: float = 0.5,
        critical_members: int = 20,
        critical_young_share: float = 0.5,
        hold_windows: int = 9,
        critical_harvest_tokens: float = 50_000_000.0,
        baseline_alpha: float = 0.1,
        max_members: int = 10_000,
    ) -> None:
        self.window_s = window_s
        self.cluster_windows = cluster_windows
        self.min_members = min_members
        self.min_share = min_share
        self.min_z = min_z
        self.suspicious = suspicious
        self.critical_members = critical_members
        self.critical_young_share = critical_young_share
        self.hold_windows = hold_windows
        self.critical_harvest_tokens = critical_harvest_tokens
        self.baseline_alpha = baseline_alpha
        self.max_members = max_members
        self._span = window_s * cluster_windows
        self._cw_start: float | None = None
        # Account-windows per key in the current cluster window, under the key's hash: most
        # keys are one account's (its /24, payment fingerprint, signup hour), and holding
        # their tuples and strings here was most of the detector's memory per account. Only
        # keys with suspicious members are ever read back; a 64-bit collision is harmless.
        self._tot: dict[int, int] = {}
        self._agg: dict[Key, _Agg] = {}
        self._touched: set[Key] = set()
        self._flagged_now: set[Key] = set()
        self._acct_keys: dict[str, list[Key]] = {}
        self._keys: dict[Key, _KeyState] = {}
        self._key_campaign: dict[Key, str] = {}
        self._acct_campaign: dict[str, str] = {}
        self._merged: dict[str, str] = {}  # merged campaign id -> the one it joined
        self.campaigns: dict[str, Campaign] = {}
        self._aw_seen: set[tuple[str, str]] = set()

    # -- per account-window ------------------------------------------------------------------

    def observe(
        self,
        account_id: str,
        keys: list[Key],
        *,
        extraction: float,
        young: bool,
        regular: bool,
        requests: int,
        output_tokens: int,
        org: str | None,
        models: dict[str, int] | None,
        ts: float,
    ) -> None:
        """Count one closed account-window into the aggregates of its keys."""
        self._roll(ts)
        tot = self._tot
        for k in keys:
            h = hash(k)
            tot[h] = tot.get(h, 0) + 1
        if extraction < self.suspicious:
            return
        agg_map = self._agg
        prev = self._acct_keys.get(account_id)
        self._acct_keys[account_id] = (
            keys if prev is None else prev + [k for k in keys if k not in prev]
        )
        campaigns_hit: set[str] = set()
        known = self._acct_campaign.get(account_id)
        if known is not None:
            # A member still harvesting keeps its campaign active, whatever its keys do.
            known = self._find(known)
            campaigns_hit.add(known)
            self.campaigns[known].last_active = ts + self.window_s
        for k in keys:
            agg = agg_map.get(k)
            if agg is None:
                agg = agg_map[k] = _Agg()
            agg.susp_aw += 1
            agg.requests += requests
            agg.output_tokens += output_tokens
            if account_id not in agg.members:
                agg.members[account_id] = (young, org)
                agg.young += young
                agg.regular += regular
                agg.orgs[org] = agg.orgs.get(org, 0) + 1
            self._touched.add(k)
            cid = self._key_campaign.get(k)
            if cid is not None:
                cid = self._find(cid)
                campaigns_hit.add(cid)
                if k[0] in STRONG_KINDS:
                    # A suspicious account on a campaign's template, card, /24 or signup
                    # cohort joins it at once (replacements of banned members included).
                    c = self.campaigns[cid]
                    if account_id not in c.members:
                        c.members[account_id] = org
                        c.orgs[org] = c.orgs.get(org, 0) + 1
                        self._acct_campaign.setdefault(account_id, cid)
                        if young:
                            c.young.add(account_id)
                    elif org is not None and c.members[account_id] is None:
                        c.members[account_id] = org  # joined where its org was not known
                    c.last_active = ts + self.window_s
        for cid in campaigns_hit:
            c = self.campaigns[cid]
            c.requests += requests
            c.output_tokens += output_tokens
            if models:
                for m, n in models.items():
                    c.models_now[m] = c.models_now.get(m, 0) + n

    def _roll(self, ts: float) -> None:
        start = ts - ts % self._span
        if self._cw_start is None:
            self._cw_start = start
        elif start > self._cw_start:
            self._close_cluster_window(self._cw_start + self._span)
            self._cw_start = start

    # -- per account window close --------------------------------------------------------------

    def end_window(self, start: float, end: float) -> list[Finding]:
        """After every account-window of ``[start, end)`` was observed: flag keys, grow
        campaigns, and return one finding per active campaign (and per pivot)."""
        self._roll(start)
        self._evaluate_touched(end)
        self._touched.clear()
        out = []
        hold = self.hold_windows * self._span
        for c in self.campaigns.values():
            if end - c.last_active <= hold and not self._customer(c):
                out.extend(self._findings(c, start, end))
            if c.pivot is not None and end <= c.pivot_until:
                out.append(self._pivot_finding(c, start, end))
        if self._cw_start is not None and end >= self._cw_start + self._span:
            self._close_cluster_window(self._cw_start + self._span)
            self._cw_start = end - end % self._span
        return out

    def _stats(self, k: Key, agg: _Agg) -> tuple[int, float, float]:
        n = len(agg.members)
        share = agg.susp_aw / max(self._tot.get(hash(k), 0), 1)
        st = self._keys.get(k)
        base = st.ew_susp if st is not None else 0.0
        z = (n - base) / math.sqrt(base + 1.0)
        return n, share, z

    def _customer(self, c: Campaign) -> bool:
        """Mostly old accounts of one declared organisation: a customer's own keys."""
        n = len(c.members)
        if not n or not c.orgs:
            return False
        org, top = max(c.orgs.items(), key=lambda kv: kv[1])
        return org is not None and top >= 0.6 * n and len(c.young) < 0.3 * n

    def _org_dominated(self, agg: _Agg) -> bool:
        n = len(agg.members)
        org, top = max(agg.orgs.items(), key=lambda kv: kv[1])
        return org is not None and top >= 0.8 * n and agg.young < 0.3 * n

    def _evaluate_touched(self, now: float) -> None:
        """Grow campaigns through their keys, then flag new keys; new keys whose members
        share a strong key (card, template, /24, cohort) are one operator: one campaign."""
        onset: list[Key] = []
        for k in sorted(self._touched, key=key_label):
            agg = self._agg.get(k)
            if agg is None:
                continue
            n, share, z = self._stats(k, agg)
            cid = self._key_campaign.get(k)
            if cid is not None:
                cid = self._key_campaign[k] = self._find(cid)
                # Already part of a campaign: grow it while the key keeps showing suspects.
                if n >= 3 and share >= self.min_share and not self._org_dominated(agg):
                    c = self.campaigns[cid]
                    c.last_active = now
                    self._add_members(c, k, agg)
                    self._flagged_now.add(k)
            elif (
                n >= self.min_members
                and share >= self.min_share
                and z >= self.min_z
                and not self._org_dominated(agg)
            ):
                onset.append(k)
            elif k[0] in STRONG_KINDS and n >= 2 and share >= self.min_share:
                # Too small to flag on its own, but if most of its suspects already belong
                # to one campaign, the key is that campaign's too (its other /24, card...).
                votes: dict[str, int] = {}
                for a in agg.members:
                    c_of = self._acct_campaign.get(a)
                    if c_of is not None:
                        c_of = self._find(c_of)
                        votes[c_of] = votes.get(c_of, 0) + 1
                if votes:
                    best, nv = max(votes.items(), key=lambda kv: (kv[1], kv[0]))
                    if nv * 2 >= n and not self._org_dominated(agg):
                        c = self.campaigns[best]
                        self._key_campaign[k] = best
                        c.keys.setdefault(k, 0)
                        self._add_members(c, k, agg)
        if not onset:
            return
        parent = {k: k for k in onset}

        def find(k: Key) -> Key:
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        via: dict[Key, Key] = {}
        for k in onset:
            for a in self._agg[k].members:
                for k2 in self._acct_keys.get(a, ()):
                    if k2 == k or k2[0] not in STRONG_KINDS:
                        continue
                    j = via.setdefault(k2, k)
                    if j != k:
                        ra, rb = find(j), find(k)
                        if ra != rb:
                            parent[rb] = ra
        groups: dict[Key, list[Key]] = {}
        for k in onset:
            groups.setdefault(find(k), []).append(k)
        for keys in groups.values():
            self._flag(keys, now)

    def _flag(self, keys: list[Key], now: float) -> None:
        members = {a for k in keys for a in self._agg[k].members}
        # Join the campaign these suspects already belong to, if any.
        votes: dict[str, int] = {}
        for a in members:
            c_of = self._acct_campaign.get(a)
            if c_of is not None:
                c_of = self._find(c_of)
                votes[c_of] = votes.get(c_of, 0) + 1
        linked = sorted(
            (c for c, nv in votes.items() if nv >= max(3, 0.2 * len(members))),
            key=lambda c: (self.campaigns[c].founded_ts, c),
        )
        cid = None
        if linked:
            # The keys link these campaigns: one operator. Keep the oldest id.
            cid = linked[0]
            for other in linked[1:]:
                self._merge(cid, other)
        if cid is None:
            if not any(k[0] in STRONG_KINDS for k in keys):
                # A busy ASN or a common agent alone names no operator.
                return
            founder = min(key_label(k) for k in keys)
            digest = hashlib.sha1(founder.encode(), usedforsecurity=False).hexdigest()
            cid = f"cmp-{digest[:12]}"
            if cid not in self.campaigns:
                self.campaigns[cid] = Campaign(cid, now)
        c = self.campaigns[cid]
        for k in keys:
            agg = self._agg[k]
            _, _, z = self._stats(k, agg)
            self._flagged_now.add(k)
            self._key_campaign[k] = cid
            c.keys.setdefault(k, 0)
            c.max_z = max(c.max_z, z)
            self._add_members(c, k, agg)
            st = self._keys.get(k)
            if st is not None and st.recent and k[0] in STRONG_KINDS:
                for acct, (young, org) in st.recent.items():
                    if acct not in c.members:
                        c.members[acct] = org
                        c.orgs[org] = c.orgs.get(org, 0) + 1
                        self._acct_campaign.setdefault(acct, cid)
                        if young:
                            c.young.add(acct)
                st.recent = {}
        c.last_active = now

    def _find(self, cid: str) -> str:
        """The surviving campaign of ``cid`` after merges."""
        while cid not in self.campaigns:
            cid = self._merged[cid]
        return cid

    def _merge(self, into: str, other: str) -> None:
        a, b = self.campaigns[into], self.campaigns.pop(other)
        self._merged[other] = into
        a.keys.update({k: max(v, a.keys.get(k, 0)) for k, v in b.keys.items()})
        a.members.update(b.members)
        a.young |= b.young
        for o, v in b.orgs.items():
            a.orgs[o] = a.orgs.get(o, 0) + v
        a.requests += b.requests
        a.output_tokens += b.output_tokens
        a.max_z = max(a.max_z, b.max_z)
        a.last_active = max(a.last_active, b.last_active)
        for m, v in b.models_now.items():
            a.models_now[m] = a.models_now.get(m, 0) + v
        for k in b.keys:
            self._key_campaign[k] = into

    def _add_members(self, c: Campaign, k: Key, agg: _Agg) -> None:
        # Members are insertion-ordered: only those added since the last call are new here.
        weak = k[0] not in STRONG_KINDS
        for a, (young, org) in islice(agg.members.items(), agg.synced, None):
            if a in c.members:
                if young:
                    c.young.add(a)
                if org is not None and c.members[a] is None:
                    c.members[a] = org  # joined where its org was not known
                continue
            # Weak keys (a busy ASN, a common agent) add only accounts another key links.
            if weak and a not in self._acct_campaign:
                continue
            c.members[a] = org
            c.orgs[org] = c.orgs.get(org, 0) + 1
            self._acct_campaign.setdefault(a, c.id)
            if young:
                c.young.add(a)
        agg.synced = len(agg.members)
        c.keys[k] = max(c.keys.get(k, 0), len(agg.members))
        c.window_members = max(c.window_members, len(agg.members))
        c.window_share = max(c.window_share, agg.susp_aw / max(self._tot.get(hash(k), 0), 1))
        c.regular = max(c.regular, agg.regular)

    # -- per cluster window close --------------------------------------------------------------

    def _close_cluster_window(self, end: float) -> None:
        a = self.baseline_alpha
        keys = self._keys
        for k, agg in self._agg.items():
            n = len(agg.members)
            st = keys.get(k)
            if st is None:
                if n < 3:
                    continue
                st = keys[k] = _KeyState()
            if k not in self._flagged_now:
                # A flagged key's baseline does not learn the attack.
                st.ew_susp += a * (n - st.ew_susp)
            st.windows += 1
            st.last_seen = end
            if k not in self._key_campaign:
                st.recent.update(agg.members)
                if len(st.recent) > 4 * n + 64:
                    # Keep roughly the last hour: drop the oldest insertions.
                    for old in list(st.recent)[: len(st.recent) - 4 * n - 64]:
                        del st.recent[old]
        for k, st in keys.items():
            if k not in self._agg:
                st.ew_susp *= 1 - a
        for c in self.campaigns.values():
            self._track_models(c, end)
            c.window_members = 0
            c.window_share = 0.0
            c.regular = 0
        if len(keys) > 100_000:
            cutoff = end - 7 * 86400
            for k in [k for k, st in keys.items() if st.last_seen < cutoff]:
                del keys[k]
        self._tot = {}
        self._agg = {}
        self._touched = set()
        self._flagged_now = set()
        self._acct_keys = {}

    def _track_models(self, c: Campaign, end: float) -> None:
        total = sum(c.models_now.values())
        for m in c.models_now:
            c.model_first.setdefault(m, end)
        if total < 10:
            c.models_now = {}
            return
        shares = {m: n / total for m, n in c.models_now.items()}
        for m, sh in shares.items():
            first = c.model_first[m]
            before = c.model_share.get(m, 0.0)
            # A model the campaign started using after it was established, now carrying
            # most of its traffic within hours of its first request.
            if (
                sh >= 0.5
                and c.model_windows >= 2
                and first - c.founded_ts >= 2 * self._span
                and end - first <= 6 * 3600
                and (c.pivot is None or c.pivot.get("model") != m)
            ):
                c.pivot = {"model": m, "share_now": round(sh, 3), "share_before": round(
                    before, 3), "requests": total, "first_seen": first}
                c.pivot_until = end + self.hold_windows * self._span
        for m in set(c.model_share) | set(shares):
            prev = c.model_share.get(m, 0.0)
            c.model_share[m] = prev + 0.3 * (shares.get(m, 0.0) - prev)
        c.model_windows += 1
        c.models_now = {}

    # -- findings --------------------------------------------------------------------------------

    def _findings(self, c: Campaign, start: float, end: float) -> list[Finding]:
        """The campaign's finding; a campaign larger than ``max_members`` is listed in parts
        (``<id>``, ``<id>/2``, ...), each with up to ``max_members`` members, so every member
        is on record however big the campaign grows."""
        f = self._finding(c, start, end)
        members = list(c.members)
        cap = self.max_members
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
                    member_orgs=_orgs_of(c, chunk),
                )
            )
        return out

    def _finding(self, c: Campaign, start: float, end: float) -> Finding:
        n = len(c.members)
        young_share = len(c.young) / max(n, 1)
        # Critical on departure (a big young cluster) or on totals (whatever the accounts'
        # age, a harvest this large is a campaign worth a page).
        critical = (
            n >= self.critical_members and young_share >= self.critical_young_share
        ) or c.output_tokens >= self.critical_harvest_tokens
        shared = sorted(c.keys.items(), key=lambda kv: -kv[1])
        signals = [
            {"signal": "suspicious_members_in_window", "score": c.window_members},
            {"signal": "suspicious_share_of_key_traffic", "score": round(c.window_share, 3)},
            {"signal": "young_account_share", "score": round(young_share, 3)},
            {"signal": "regular_timing_members", "score": c.regular},
            {"signal": "departure_z", "score": round(c.max_z, 2)},
        ]
        return Finding(
            entity_type="cluster",
            entity_id=c.id,
            detector="cluster_campaign",
            window_start=start,
            window_end=end,
            score=round(c.max_z, 3),
            threshold=self.min_z,
            severity="critical" if critical else "warning",
            evidence={
                "features": {
                    "members": n,
                    "young_members": len(c.young),
                    "suspicious_members_in_window": c.window_members,
                    "keys": len(c.keys),
                },
                "baseline": {"founded_ts": c.founded_ts, "expected_suspicious_members": 0},
                "score": round(c.max_z, 3),
                "threshold": self.min_z,
                "signals": sorted(signals, key=lambda s: -float(s["score"])),
                "shared_attributes": [
                    {"key": key_label(k), "kind": KIND_NAMES.get(k[0], k[0]), "members": m}
                    for k, m in shared[:20]
                ],
                "harvest": {"requests": c.requests, "output_tokens": c.output_tokens},
                "member_count": n,
                "members_sample": list(c.members)[:20],
            },
            member_count=n,
            members=(listed := list(c.members)[: self.max_members]),
            member_orgs=_orgs_of(c, listed),
        )

    def _pivot_finding(self, c: Campaign, start: float, end: float) -> Finding:
        p = c.pivot or {}
        score = float(p.get("share_now", 0.0)) - float(p.get("share_before", 0.0))
        return Finding(
            entity_type="cluster",
            entity_id=c.id,
            detector="cluster_model_pivot",
            window_start=start,
            window_end=end,
            score=round(score, 3),
            threshold=0.4,
            severity="warning",
            evidence={
                "features": p,
                "baseline": {"model_share": {m: round(v, 3) for m, v in c.model_share.items()}},
                "score": round(score, 3),
                "threshold": 0.4,
                "signals": [{"signal": f"share_on_{p.get('model')}", "score": round(score, 3)}],
                "member_count": len(c.members),
                "members_sample": list(c.members)[:20],
            },
            member_count=len(c.members),
            members=(listed := list(c.members)[: self.max_members]),
            member_orgs=_orgs_of(c, listed),
        )

    @property
    def tracked_keys(self) -> int:
        return len(self._keys)


def _orgs_of(c: Campaign, listed: list[str]) -> dict[str, str]:
    """Org of each listed member that declared one: bounded by the member list, so a finding
    never carries orgs of accounts it does not name."""
    members = c.members
    return {a: org for a in listed if (org := members.get(a)) is not None}
