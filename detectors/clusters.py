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
from collections.abc import Iterable

from detectors.campaign_findings import campaign_findings
from detectors.campaigns import Campaign, CampaignBook, UnionFind
from detectors.findings import Finding
from detectors.keyagg import KeyAgg, KeyBaseline, fold_baselines, key_stats, org_dominated
from detectors.keys import KIND_NAMES, STRONG_KINDS, Key, key_label
from detectors.pivot import pivot_finding, track_models

__all__ = ["Campaign", "ClusterDetector", "canonical_key"]

# Each kind name as one string object: keys decoded from the wire carry their own copies.
_KINDS = {k: k for k in KIND_NAMES}


def canonical_key(k: Key) -> Key:
    """``k`` with its kind as the module's string (equal, one object for every key).

    >>> canonical_key(("p" + "ay", "c1"))[0] is canonical_key(("pay", "c2"))[0]
    True
    """
    kind = _KINDS.get(k[0])
    return k if kind is None or kind is k[0] else (kind, *k[1:])


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
    fold_share
        A coordination group (a ``cohort_swarm`` finding) at least this share of whose
        members belong to one campaign is that campaign's: its members join it and it is
        named in the campaign's evidence instead of becoming an alert of its own.
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
        fold_share: float = 0.5,
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
        self.fold_share = fold_share
        self.max_members = max_members
        self._span = window_s * cluster_windows
        self._cw_start: float | None = None
        # Account-windows per key label in the current cluster window. The per-key stage
        # (detectors/keycount.py) counts them for every key and sends the running totals of
        # the keys suspects touched (:meth:`set_totals`); template keys, which only suspects
        # carry, are counted here.
        self._tot: dict[str, int] = {}
        self._agg: dict[Key, KeyAgg] = {}
        self._touched: set[Key] = set()
        self._flagged_now: set[Key] = set()
        # Suspicious account -> its strong keys this cluster window (the keys' own tuples,
        # from ``_agg``): only strong keys link flagged keys into one campaign, so only
        # they are kept (issue 16: lists of every key's decoded tuple were ~36 B per account).
        self._acct_keys: dict[str, tuple[Key, ...]] = {}
        self._keys: dict[Key, KeyBaseline] = {}
        self.book = CampaignBook()
        # Group id -> the campaign it was folded into (derived from the campaigns' groups).
        self._group_campaign: dict[str, str] = {}

    @property
    def campaigns(self) -> dict[str, Campaign]:
        return self.book.campaigns

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
        harvester: bool = False,
    ) -> None:
        """Count one closed account-window into the aggregates of its keys (``harvester``:
        an account rule flagged it in this window)."""
        self._roll(ts)
        tot = self._tot
        for k in keys:
            if k[0] == "tpl":
                label = key_label(k)
                tot[label] = tot.get(label, 0) + 1
        if extraction < self.suspicious:
            return
        book = self.book
        campaigns = book.campaigns
        agg_map = self._agg
        touched = self._touched
        prev = self._acct_keys.get(account_id)
        entry = (young, org)
        if prev:
            # The member tuple of its earlier windows, when it is the same: its aggregates
            # then share one tuple for the cluster window, not one per account-window.
            first = agg_map.get(prev[0])
            old = first.members.get(account_id) if first is not None else None
            if old == entry:
                entry = old
        strong: list[Key] = []
        campaigns_hit: set[str] = set()
        known = book.campaign_of(account_id)
        if known is not None:
            # A member still harvesting keeps its campaign active, whatever its keys do.
            campaigns_hit.add(known)
            campaigns[known].last_active = ts + self.window_s
        for k in keys:
            agg = agg_map.get(k)
            if agg is None:
                k = canonical_key(k)
                agg = agg_map[k] = KeyAgg(k)
            else:
                k = agg.key  # the cluster window's one tuple of this key
            agg.add(account_id, young=young, regular=regular, org=org, requests=requests,
                    output_tokens=output_tokens, harvester=harvester, entry=entry)
            touched.add(k)
            if k[0] in STRONG_KINDS:
                strong.append(k)
            cid = book.key_campaign.get(k)
            if cid is not None:
                cid = book.find(cid)
                campaigns_hit.add(cid)
                if k[0] in STRONG_KINDS:
                    # A suspicious account on a campaign's template, card, /24 or signup
                    # cohort joins it at once (replacements of banned members included).
                    c = campaigns[cid]
                    if account_id not in c.members:
                        book.add_member(c, account_id, young=young, org=org)
                    elif org is not None and c.members[account_id] is None:
                        c.members[account_id] = org  # joined where its org was not known
                    c.last_active = ts + self.window_s
        self._acct_keys[account_id] = (
            tuple(strong) if prev is None else prev + tuple(k for k in strong if k not in prev)
        )
        for cid in campaigns_hit:
            c = campaigns[cid]
            c.requests += requests
            c.output_tokens += output_tokens
            if models:
                for m, n in models.items():
                    c.models_now[m] = c.models_now.get(m, 0) + n

    def set_totals(self, ts: float, totals: Iterable[tuple[str, int]]) -> None:
        """Running account-window totals (this cluster window) of the keys, by label, as the
        per-key stage counted them up to and including the window starting at ``ts``."""
        self._roll(ts)
        self._tot.update(totals)

    def _roll(self, ts: float) -> None:
        start = ts - ts % self._span
        if self._cw_start is None:
            self._cw_start = start
        elif start > self._cw_start:
            self._close_cluster_window(self._cw_start + self._span)
            self._cw_start = start

    # -- per account window close --------------------------------------------------------------

    def end_window(
        self, start: float, end: float, groups: Iterable[Finding] = ()
    ) -> list[Finding]:
        """After every account-window of ``[start, end)`` was observed: flag keys, grow
        campaigns, fold in the window's coordination ``groups`` that are mostly one
        campaign's (:meth:`fold`), and return one finding per active campaign (and per
        pivot), then the groups that are no campaign's."""
        self._roll(start)
        self._evaluate_touched(end)
        self._touched.clear()
        out = []
        alone = [g for g in groups if not self.fold(g)]
        hold = self.hold_windows * self._span
        book = self.book
        for c in book.campaigns.values():
            if end - c.last_active <= hold and not book.customer(c):
                out.extend(campaign_findings(
                    c, start, end, min_z=self.min_z, critical_members=self.critical_members,
                    critical_young_share=self.critical_young_share,
                    critical_harvest_tokens=self.critical_harvest_tokens,
                    max_members=self.max_members,
                ))
            if c.pivot is not None and end <= c.pivot_until:
                out.append(pivot_finding(c, start, end, self.max_members))
        if self._cw_start is not None and end >= self._cw_start + self._span:
            self._close_cluster_window(self._cw_start + self._span)
            self._cw_start = end - end % self._span
        out.extend(alone)
        return out

    def fold(self, group: Finding) -> bool:
        """Fold a coordination group into the campaign most of its members already belong
        to (at least ``fold_share``): its members join the campaign, the group is named in
        the campaign's evidence, and True says it needs no alert of its own. The swarm and
        the campaign are then two views of one operator — two pages and two approvals for
        one campaign would be noise. While that campaign is quiet (not active) the group is
        still its own and stays silent: the campaign was reported, and it opens again if its
        keys show suspects. A customer's campaign (see
        :meth:`~detectors.campaigns.CampaignBook.customer`) takes no group. Once folded, a
        group stays with its campaign (its later members join it too)."""
        members = group.members or []
        gid = group.entity_id
        size = group.member_count or len(members)
        book = self.book
        cid = self._group_campaign.get(gid)
        if cid is not None:
            # Folded before: it stays that campaign's (one alert while it grows), and a
            # group reported again without new members changes nothing.
            c = book.campaigns[book.find(cid)]
            if c.groups.get(gid) == size:
                return True
        else:
            votes = self._vote(members)
            if not votes:
                return False
            # Most members first, then the oldest campaign: the same choice in every process.
            cid = max(votes, key=lambda c: (votes[c], -book.campaigns[c].founded_ts, c))
            c = book.campaigns[cid]
            if votes[cid] < self.fold_share * len(members) or book.customer(c):
                return False
            self._group_campaign[gid] = cid
        orgs = group.member_orgs or {}
        known = c.members
        for a in members:
            # Members of a group are young (the detector judges only young accounts). A group
            # is reported every window: only its new members cost anything.
            if a not in known or (known[a] is None and a in orgs):
                book.add_member(c, a, young=True, org=orgs.get(a))
        c.groups[gid] = size
        return True

    def _stats(self, k: Key, agg: KeyAgg) -> tuple[int, float, float]:
        return key_stats(agg, self._tot.get(key_label(k), 0), self._keys.get(k))

    def _vote(self, accounts: object) -> dict[str, int]:
        """Campaigns these accounts already belong to, with how many of them each."""
        votes: dict[str, int] = {}
        for a in accounts:  # type: ignore[attr-defined]
            c_of = self.book.campaign_of(a)
            if c_of is not None:
                votes[c_of] = votes.get(c_of, 0) + 1
        return votes

    def _add_members(self, c: Campaign, k: Key, agg: KeyAgg) -> None:
        share = agg.susp_aw / max(self._tot.get(key_label(k), 0), 1)
        self.book.add_key_members(c, k, agg, share)

    def _evaluate_touched(self, now: float) -> None:
        """Grow campaigns through their keys, then flag new keys; new keys whose members
        share a strong key (card, template, /24, cohort) are one operator: one campaign."""
        book = self.book
        onset: list[Key] = []
        for k in sorted(self._touched, key=key_label):
            agg = self._agg.get(k)
            if agg is None:
                continue
            n, share, z = self._stats(k, agg)
            cid = book.key_campaign.get(k)
            if cid is not None:
                cid = book.key_campaign[k] = book.find(cid)
                # Already part of a campaign: grow it while the key keeps showing suspects.
                if n >= 3 and share >= self.min_share and not org_dominated(agg):
                    c = book.campaigns[cid]
                    c.last_active = now
                    self._add_members(c, k, agg)
                    self._flagged_now.add(k)
            elif (
                n >= self.min_members
                and share >= self.min_share
                and z >= self.min_z
                and not org_dominated(agg)
            ):
                onset.append(k)
            elif k[0] in STRONG_KINDS and n >= 2 and share >= self.min_share:
                # Too small to flag on its own, but if most of its suspects already belong
                # to one campaign, the key is that campaign's too (its other /24, card...).
                votes = self._vote(agg.members)
                best, nv = max(votes.items(), key=lambda kv: (kv[1], kv[0]),
                               default=(None, 0))
                if best is not None and nv * 2 >= n and not org_dominated(agg):
                    c = book.campaigns[best]
                    book.key_campaign[k] = best
                    c.keys.setdefault(k, 0)
                    self._add_members(c, k, agg)
                elif agg.harvesters and not org_dominated(agg):
                    # An account rule caught one of its suspects harvesting, and the others
                    # share its card, /24, template or signup cohort and harvest-like
                    # profile while sending most of the key's traffic: its accomplices.
                    # Two harvesters (two accounts harvesting hour after hour on one card:
                    # account_ramp's pair) are a campaign as well.
                    onset.append(k)
        if not onset:
            return
        uf: UnionFind[Key] = UnionFind()
        via: dict[Key, Key] = {}
        for k in onset:
            for a in self._agg[k].members:
                for k2 in self._acct_keys.get(a, ()):
                    if k2 == k:
                        continue
                    j = via.setdefault(k2, k)
                    if j != k:
                        uf.union(j, k)
        groups: dict[Key, list[Key]] = {}
        for k in onset:
            groups.setdefault(uf.find(k), []).append(k)
        for keys in groups.values():
            self._flag(keys, now)

    def _flag(self, keys: list[Key], now: float) -> None:
        book = self.book
        members = {a for k in keys for a in self._agg[k].members}
        # Join the campaign these suspects already belong to, if any.
        votes = self._vote(members)
        linked = sorted(
            (c for c, nv in votes.items() if nv >= max(3, 0.2 * len(members))),
            key=lambda c: (book.campaigns[c].founded_ts, c),
        )
        cid = None
        if linked:
            # The keys link these campaigns: one operator. Keep the oldest id.
            cid = linked[0]
            for other in linked[1:]:
                book.merge(cid, other)
        if cid is None:
            if not any(k[0] in STRONG_KINDS for k in keys):
                # A busy ASN or a common agent alone names no operator.
                return
            founder = min(key_label(k) for k in keys)
            digest = hashlib.sha1(founder.encode(), usedforsecurity=False).hexdigest()
            cid = f"cmp-{digest[:12]}"
            book.open(cid, now)
        c = book.campaigns[cid]
        for k in keys:
            agg = self._agg[k]
            _, _, z = self._stats(k, agg)
            self._flagged_now.add(k)
            book.key_campaign[k] = cid
            c.keys.setdefault(k, 0)
            c.max_z = max(c.max_z, z)
            self._add_members(c, k, agg)
            st = self._keys.get(k)
            if st is not None and st.recent and k[0] in STRONG_KINDS:
                for acct, (young, org) in st.recent.items():
                    if acct not in c.members:
                        book.add_member(c, acct, young=young, org=org)
                st.recent = {}
        c.last_active = now

    # -- per cluster window close --------------------------------------------------------------

    def _close_cluster_window(self, end: float) -> None:
        fold_baselines(
            self._keys, self._agg, flagged=self._flagged_now,  # type: ignore[arg-type]
            in_campaign=self.book.key_campaign, alpha=self.baseline_alpha, end=end,
        )
        for c in self.book.campaigns.values():
            track_models(c, end, self._span, self.hold_windows)
            c.window_members = 0
            c.window_share = 0.0
            c.regular = 0
        self._tot = {}
        self._agg = {}
        self._touched = set()
        self._flagged_now = set()
        self._acct_keys = {}

    @property
    def tracked_keys(self) -> int:
        return len(self._keys)
