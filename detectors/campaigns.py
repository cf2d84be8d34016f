"""Campaigns: sets of flagged keys and their suspicious members, with running totals.

Keys flagged in the same window that share a strong key are one operator: a
:class:`UnionFind` groups them into one campaign. Two campaigns that turn out to share members
merge (:meth:`CampaignBook.merge`; the surviving id is the oldest, so an alert keeps its id
while it grows) and the merged id forwards to the survivor until it is founded again.

Examples
--------
>>> book = CampaignBook()
>>> a = book.open("cmp-a", 0.0)
>>> b = book.open("cmp-b", 60.0)
>>> book.add_member(a, "x", young=True, org=None)
>>> book.add_member(b, "y", young=False, org="o1")
>>> book.merge("cmp-a", "cmp-b")
>>> book.find("cmp-b"), list(book.campaigns["cmp-a"].members), book.campaign_of("y")
('cmp-a', ['x', 'y'], 'cmp-a')
>>> uf = UnionFind()
>>> uf.union("k1", "k2"); uf.union("k3", "k2")
>>> uf.find("k3") == uf.find("k1"), uf.find("k4")
(True, 'k4')
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Generic, TypeVar

from detectors.keyagg import KeyAgg
from detectors.keys import STRONG_KINDS, Key

__all__ = ["Campaign", "CampaignBook", "UnionFind"]

T = TypeVar("T", bound=Hashable)


class UnionFind(Generic[T]):
    """Disjoint sets with path halving; :meth:`union` keeps the first argument's root, so the
    caller decides which id survives a merge."""

    def __init__(self) -> None:
        self._parent: dict[T, T] = {}

    def find(self, x: T) -> T:
        parent = self._parent
        while (p := parent.get(x, x)) != x:
            gp = parent.get(p, p)
            parent[x] = gp
            x = gp
        return x

    def union(self, a: T, b: T) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[rb] = ra


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
    # Coordination groups folded in (ClusterDetector.fold): group id -> its members then.
    groups: dict[str, int] = field(default_factory=dict)


class CampaignBook:
    """Every campaign, which campaign each key and member belongs to, and merges."""

    def __init__(self) -> None:
        self.campaigns: dict[str, Campaign] = {}
        self.key_campaign: dict[Key, str] = {}
        self.acct_campaign: dict[str, str] = {}
        # Merged campaign id -> the one it joined. A forwarding map, not a union-find: an id
        # that was merged away can be founded again by its key and is then live on its own.
        self._merged: dict[str, str] = {}

    def open(self, cid: str, now: float) -> Campaign:
        """The campaign ``cid``, founded at ``now`` unless it exists."""
        c = self.campaigns.get(cid)
        if c is None:
            c = self.campaigns[cid] = Campaign(cid, now)
        return c

    def find(self, cid: str) -> str:
        """The surviving campaign of ``cid`` after merges."""
        while cid not in self.campaigns:
            cid = self._merged[cid]
        return cid

    def campaign_of(self, account_id: str) -> str | None:
        cid = self.acct_campaign.get(account_id)
        return None if cid is None else self.find(cid)

    def add_member(self, c: Campaign, account_id: str, *, young: bool, org: str | None) -> None:
        """Add ``account_id`` to ``c``; a member of another campaign stays filed there."""
        if account_id in c.members:
            if young:
                c.young.add(account_id)
            if org is not None and c.members[account_id] is None:
                c.members[account_id] = org  # joined where its org was not known
            return
        c.members[account_id] = org
        c.orgs[org] = c.orgs.get(org, 0) + 1
        self.acct_campaign.setdefault(account_id, c.id)
        if young:
            c.young.add(account_id)

    def merge(self, into: str, other: str) -> None:
        """Fold campaign ``other`` into ``into``: the keys link them, one operator."""
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
        for g, n in b.groups.items():
            a.groups[g] = max(n, a.groups.get(g, 0))
        a.last_active = max(a.last_active, b.last_active)
        for m, v in b.models_now.items():
            a.models_now[m] = a.models_now.get(m, 0) + v
        for k in b.keys:
            self.key_campaign[k] = into

    def add_key_members(self, c: Campaign, k: Key, agg: KeyAgg, share: float) -> None:
        """Fold the key's members added since the last call into ``c``; ``share`` is the
        key's suspicious share of traffic this cluster window."""
        # Members are insertion-ordered: only those added since the last call are new here.
        weak = k[0] not in STRONG_KINDS
        for a, (young, org) in islice(agg.members.items(), agg.synced, None):
            # Weak keys (a busy ASN, a common agent) add only accounts another key links.
            if weak and a not in c.members and a not in self.acct_campaign:
                continue
            self.add_member(c, a, young=young, org=org)
        agg.synced = len(agg.members)
        c.keys[k] = max(c.keys.get(k, 0), len(agg.members))
        c.window_members = max(c.window_members, len(agg.members))
        c.window_share = max(c.window_share, share)
        c.regular = max(c.regular, agg.regular)

    def customer(self, c: Campaign) -> bool:
        """Mostly old accounts of one declared organisation: a customer's own keys."""
        n = len(c.members)
        if not n or not c.orgs:
            return False
        org, top = max(c.orgs.items(), key=lambda kv: kv[1])
        return org is not None and top >= 0.6 * n and len(c.young) < 0.3 * n
